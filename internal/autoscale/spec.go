package autoscale

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/api"
)

// Kind is the kind of cluster: its windows differ.
type Kind int

const (
	// JobCluster is a cluster made for one job run (job compute).
	JobCluster Kind = iota
	// AllPurpose is an interactive, shared cluster (all-purpose compute).
	AllPurpose
)

func (k Kind) String() string {
	if k == AllPurpose {
		return "all-purpose"
	}
	return "job"
}

// ParseKind reads "job" or "all-purpose".
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(s) {
	case "job", "jobs":
		return JobCluster, nil
	case "all-purpose", "all_purpose", "allpurpose":
		return AllPurpose, nil
	}
	return 0, fmt.Errorf("unknown cluster type %q (want job or all-purpose)", s)
}

// Policy names.
const (
	Optimized              = "optimized"
	Standard               = "standard"
	Static                 = "static"
	SparkDynamicAllocation = "spark-dynamic-allocation"
	ClusterAutoscaler      = "cluster-autoscaler"
)

// Names lists every policy New knows, the live ones first.
var Names = []string{Optimized, Standard, Static, SparkDynamicAllocation, ClusterAutoscaler}

// Spark configuration keys a cluster spec sets to tune autoscaling.
const (
	// ConfWindowDown is Databricks' key for the optimized policy's
	// scale-down window, in seconds (at most 600).
	ConfWindowDown = "spark.databricks.aggressiveWindowDownS"
	// ConfFirstStepUp is Databricks' (older, documented) key for the
	// standard policy's first scale-up step.
	ConfFirstStepUp = "spark.databricks.autoscaling.standardFirstStepUp"
	// ConfPolicy is Tandem's key choosing the policy: "optimized" (the
	// default) or "standard". Databricks chooses by pricing plan; Tandem has
	// no plans, so the cluster says.
	ConfPolicy = "spark.tandem.autoscaling.policy"
)

// Limits and defaults of the tunables.
const (
	MaxWindowDown               = 600 * time.Second
	DefaultJobWindowDown        = 40 * time.Second
	DefaultAllPurposeWindowDown = 150 * time.Second
	DefaultFirstStepUp          = 8
	DefaultSlotsPerWorker       = 4
	maxFirstStepUpAccepted      = 10000
)

// Spec is what a policy needs to know about the cluster.
type Spec struct {
	// Policy is one of Names; empty means Optimized.
	Policy string
	// MinWorkers and MaxWorkers bound the size. A fixed-size cluster has
	// both equal to num_workers.
	MinWorkers, MaxWorkers int
	Kind                   Kind
	// WorkerSlots is the task slots of one worker (its cores divided by
	// spark.task.cpus); zero means DefaultSlotsPerWorker. Policies use it to
	// turn tasks into workers before a worker exists to report its slots.
	WorkerSlots int
	// WindowDown is the optimized policy's scale-down window; zero means
	// the kind's default (40 s for job clusters, 150 s for all-purpose).
	WindowDown time.Duration
	// FirstStepUp is the standard policy's first scale-up step; zero
	// means 8.
	FirstStepUp int
}

func (s Spec) slots() int {
	if s.WorkerSlots > 0 {
		return s.WorkerSlots
	}
	return DefaultSlotsPerWorker
}

func (s Spec) windowDown() time.Duration {
	if s.WindowDown > 0 {
		return s.WindowDown
	}
	if s.Kind == AllPurpose {
		return DefaultAllPurposeWindowDown
	}
	return DefaultJobWindowDown
}

func (s Spec) firstStepUp() int {
	if s.FirstStepUp > 0 {
		return s.FirstStepUp
	}
	return DefaultFirstStepUp
}

// Validate checks the bounds and tunables; its errors are Databricks
// INVALID_PARAMETER_VALUE errors naming the field.
func (s Spec) Validate() error {
	if s.MinWorkers < 0 {
		return api.InvalidParam("autoscale.min_workers must not be negative; it is %d.", s.MinWorkers)
	}
	if s.MaxWorkers < 1 {
		return api.InvalidParam("autoscale.max_workers must be at least 1; it is %d.", s.MaxWorkers)
	}
	if s.MinWorkers > s.MaxWorkers {
		return api.InvalidParam("autoscale.min_workers (%d) must not be greater than autoscale.max_workers (%d).", s.MinWorkers, s.MaxWorkers)
	}
	if s.WorkerSlots < 0 {
		return api.InvalidParam("a worker must have at least one task slot.")
	}
	if s.WindowDown < 0 || s.WindowDown > MaxWindowDown {
		return api.InvalidParam("%s must be between 1 and %d seconds.", ConfWindowDown, int(MaxWindowDown/time.Second))
	}
	if s.FirstStepUp < 0 {
		return api.InvalidParam("%s must be a positive number of workers.", ConfFirstStepUp)
	}
	return nil
}

// New makes the policy the spec names.
func New(s Spec) (Policy, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	switch s.Policy {
	case "", Optimized:
		return optimized{spec: s}, nil
	case Standard:
		return standard{spec: s}, nil
	case Static:
		return NewStatic(s.MaxWorkers), nil
	case SparkDynamicAllocation:
		return sparkDynamicAllocation{spec: s}, nil
	case ClusterAutoscaler:
		return clusterAutoscaler{spec: s}, nil
	}
	return nil, api.InvalidParam("unknown autoscaling policy %q; the policies are %s.", s.Policy, strings.Join(Names, ", "))
}

// SpecFromCluster reads an autoscaling cluster's spec the way the compute
// service holds it: its autoscale bounds, its kind, its workers' task slots
// and its spark_conf, which may choose the policy (ConfPolicy), the
// optimized window (ConfWindowDown) and standard's first step
// (ConfFirstStepUp). Only the two Databricks policies can be chosen for a
// live cluster; the others are the simulator's points of comparison.
func SpecFromCluster(minWorkers, maxWorkers int, kind Kind, slots int, sparkConf map[string]string) (Spec, error) {
	s := Spec{Policy: Optimized, MinWorkers: minWorkers, MaxWorkers: maxWorkers, Kind: kind, WorkerSlots: slots}
	if v, ok := sparkConf[ConfPolicy]; ok {
		switch p := strings.ToLower(strings.TrimSpace(v)); p {
		case Optimized, Standard:
			s.Policy = p
		default:
			return Spec{}, api.InvalidParam("spark_conf %s must be %q or %q, not %q.", ConfPolicy, Optimized, Standard, v)
		}
	}
	if v, ok := sparkConf[ConfWindowDown]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || time.Duration(n)*time.Second > MaxWindowDown {
			return Spec{}, api.InvalidParam("spark_conf %s must be a whole number of seconds between 1 and %d, not %q.", ConfWindowDown, int(MaxWindowDown/time.Second), v)
		}
		s.WindowDown = time.Duration(n) * time.Second
	}
	if v, ok := sparkConf[ConfFirstStepUp]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > maxFirstStepUpAccepted {
			return Spec{}, api.InvalidParam("spark_conf %s must be a whole number of workers between 1 and %d, not %q.", ConfFirstStepUp, maxFirstStepUpAccepted, v)
		}
		s.FirstStepUp = n
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}
