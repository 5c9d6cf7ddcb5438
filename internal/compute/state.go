package compute

import (
	"fmt"
	"slices"
	"sort"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// NodeView is what the planner knows of one instance serving a cluster:
// its stored assignment and what its agent last reported about it.
type NodeView struct {
	ID         string
	Role       string
	ClusterGen int64
	Cores      float64
	Assigned   int64 // when it joined the cluster (ms)
	// Mismatch: the instance is not of the node type or pool the spec now
	// asks for its role.
	Mismatch bool
	// Lost: heartbeats stopped, or its Spark process died.
	Lost bool
	// LaunchFailed: the provider could not make it, or it never reported.
	LaunchFailed bool
	LaunchError  string
	// What the agent reports for the current assignment ("" while it
	// still carries out an older one).
	Phase       string
	FailureCode string
	Message     string
	InitScripts []wire.ScriptResult
	MasterURL   string
	// Registered: a worker the driver's master lists as ALIVE.
	Registered bool
}

// Input is everything one planning step of a cluster sees besides the
// cluster and its nodes.
type Input struct {
	Now int64
	// Busy: the cluster runs work now (tasks, Spark applications).
	Busy bool
	// ContextID is a fresh Spark context id, used when Spark (re)starts.
	ContextID int64
	// MaxLaunchFailures ends a start after so many failed instances.
	MaxLaunchFailures int
	// PoolMissing names a pool the cluster needs that no longer exists.
	PoolMissing string
}

// Step is the outcome of planning one cluster: its new record, the events
// to log, and what to do with instances.
type Step struct {
	Cluster Cluster
	Events  []Event
	// Release takes instances off the cluster (back to their pool, or
	// deleted); Lost ones are deleted whatever their pool.
	Release []string
	Lost    []string
	// Reassign moves instances to the cluster's current generation.
	Reassign []string
	// NeedDriver and NeedWorkers are instances to acquire.
	NeedDriver  bool
	NeedWorkers int
	// Result is the outcome of the cluster's asynchronous operation, when
	// it ended in this step (its ...Result audit record).
	Result *OpResult
}

// OpResult is the outcome of an asynchronous cluster operation.
type OpResult struct {
	Action    string // createResult, startResult, ...
	RequestID string
	User      string
	OK        bool
	Message   string
}

// step plans one cluster: it is the cluster state machine, a pure function
// of the cluster, its nodes and the input. The caller stores the new
// record and events and carries out the instance changes in one
// transaction, and plans again on the next tick: every step is safe to
// repeat.
func step(c Cluster, nodes []NodeView, in Input) Step {
	s := Step{Cluster: c}
	cl := &s.Cluster
	now := in.Now
	emit := func(typ string, d EventDetails) {
		s.Events = append(s.Events, Event{ClusterID: c.ID, Timestamp: now, Type: typ, Details: d})
	}
	setState := func(state, msg string) {
		if cl.State != state {
			cl.StateSince = now
		}
		cl.State, cl.StateMessage = state, msg
	}
	finish := func(ok bool, msg string) {
		if cl.Op == "" {
			return
		}
		s.Result = &OpResult{Action: cl.Op + "Result", RequestID: cl.OpRequest, User: cl.OpUser, OK: ok, Message: msg}
		cl.Op, cl.OpRequest, cl.OpUser = "", "", ""
	}
	terminate := func(reason TerminationReason, state string) {
		if state == "" {
			state = Terminating
		}
		r := reason
		cl.Reason = &r
		emit(EvTerminating, EventDetails{Reason: &r})
		setState(state, reasonMessage(r))
		for _, n := range nodes {
			s.Release = append(s.Release, n.ID)
		}
		if cl.Op != "delete" {
			finish(false, reasonMessage(r))
		}
		if state == Error {
			cl.TerminatedTime = now
		}
	}

	switch c.State {
	case Terminated, Error:
		for _, n := range nodes {
			s.Release = append(s.Release, n.ID)
		}
		return s
	case Terminating:
		for _, n := range nodes {
			s.Release = append(s.Release, n.ID)
		}
		msg := "Terminated."
		if cl.Reason != nil {
			msg = reasonMessage(*cl.Reason)
		}
		setState(Terminated, msg)
		cl.TerminatedTime = now
		if cl.Op == "delete" {
			finish(true, "")
		} else {
			finish(false, msg)
		}
		return s
	}

	// Lost and failed nodes first: they leave the cluster whatever its
	// state.
	var driver *NodeView
	var workers []NodeView
	driverLost := false
	for i := range nodes {
		n := nodes[i]
		switch {
		case n.Lost:
			s.Lost = append(s.Lost, n.ID)
			emit(EvNodesLost, EventDetails{InstanceID: n.ID})
			if n.Role == wire.RoleDriver {
				driverLost = true
			}
			continue
		case n.LaunchFailed:
			s.Lost = append(s.Lost, n.ID)
			cl.LaunchFailures++
			emit(EvAddNodesFailed, EventDetails{InstanceID: n.ID, Reason: &TerminationReason{Code: "CLOUD_PROVIDER_LAUNCH_FAILURE",
				Type: ReasonCloudFailure, Parameters: map[string]string{"instance_id": n.ID, "databricks_error_message": n.LaunchError}}})
			continue
		case n.Mismatch && n.ClusterGen != c.Generation:
			s.Release = append(s.Release, n.ID)
			continue
		}
		if n.ClusterGen == c.Generation && n.Phase == wire.PhaseFailed {
			switch n.FailureCode {
			case "INIT_SCRIPT_FAILURE", "GLOBAL_INIT_SCRIPT_FAILURE":
				if cl.ScriptsStarted < cl.Generation {
					emit(EvInitScriptsStarted, EventDetails{InstanceID: n.ID})
					cl.ScriptsStarted = cl.Generation
				}
				reportScripts(cl, n, emit)
				terminate(TerminationReason{Code: n.FailureCode, Type: ReasonClientError,
					Parameters: map[string]string{"instance_id": n.ID, "databricks_error_message": n.Message}}, Error)
				return s
			case "SPARK_STARTUP_FAILURE", "LOCAL_DISK_ENCRYPTION_FAILURE":
				if c.State == Pending || c.State == Restarting || n.Role == wire.RoleDriver {
					terminate(TerminationReason{Code: "SPARK_STARTUP_FAILURE", Type: ReasonServiceFault,
						Parameters: map[string]string{"instance_id": n.ID, "databricks_error_message": n.Message}}, "")
					return s
				}
			}
			// A Spark process that died on a running cluster: the node is
			// lost, and replaced.
			s.Lost = append(s.Lost, n.ID)
			emit(EvNodesLost, EventDetails{InstanceID: n.ID, DriverStateMessage: n.Message})
			if n.Role == wire.RoleDriver {
				driverLost = true
			}
			continue
		}
		if n.Role == wire.RoleDriver {
			if driver == nil {
				d := n
				driver = &d
			} else {
				s.Release = append(s.Release, n.ID)
			}
			continue
		}
		workers = append(workers, n)
	}
	if in.MaxLaunchFailures > 0 && cl.LaunchFailures >= in.MaxLaunchFailures {
		terminate(TerminationReason{Code: "CLOUD_PROVIDER_LAUNCH_FAILURE", Type: ReasonCloudFailure,
			Parameters: map[string]string{"databricks_error_message": fmt.Sprintf("%d instances failed to start.", cl.LaunchFailures)}}, "")
		return s
	}
	if driverLost && (c.State == Running || c.State == Resizing) {
		// The driver held the master and the cluster's Spark state: start
		// the cluster over on a new driver, keeping the workers.
		cl.Generation++
		cl.LastStateLossTime = now
		emit(EvDriverUnavailable, EventDetails{DriverStateMessage: "The driver's instance was lost."})
		emit(EvRestarting, EventDetails{Cause: CauseAutorecovery})
		setState(Restarting, "Restarting on a new driver: the driver was lost.")
	}

	// Keep the newest workers up to the target; release the rest, those
	// not yet useful first.
	target := cl.TargetWorkers
	if len(workers) > target {
		// Keep useful workers: not marked to go first, registered, oldest.
		sort.SliceStable(workers, func(i, j int) bool {
			fi, fj := slices.Contains(cl.ReleaseFirst, workers[i].ID), slices.Contains(cl.ReleaseFirst, workers[j].ID)
			if fi != fj {
				return fj
			}
			ri, rj := workers[i].Registered && workers[i].ClusterGen == cl.Generation, workers[j].Registered && workers[j].ClusterGen == cl.Generation
			if ri != rj {
				return ri
			}
			return workers[i].Assigned < workers[j].Assigned
		})
		for _, w := range workers[target:] {
			s.Release = append(s.Release, w.ID)
		}
		workers = workers[:target]
	}
	if len(cl.ReleaseFirst) > 0 && len(workers) <= target {
		cl.ReleaseFirst = nil
	}
	s.NeedDriver = driver == nil
	s.NeedWorkers = target - len(workers)
	if in.PoolMissing != "" && (s.NeedDriver || s.NeedWorkers > 0) {
		terminate(TerminationReason{Code: "INSTANCE_POOL_NOT_FOUND", Type: ReasonClientError,
			Parameters: map[string]string{"instance_pool_id": in.PoolMissing, "databricks_error_message": "Instance pool " + in.PoolMissing + " does not exist."}}, "")
		return s
	}
	if driver != nil && driver.ClusterGen != cl.Generation {
		s.Reassign = append(s.Reassign, driver.ID)
	}
	ready := 0
	for _, w := range workers {
		if w.ClusterGen != cl.Generation {
			s.Reassign = append(s.Reassign, w.ID)
			continue
		}
		if w.Phase == wire.PhaseRunning && w.Registered {
			ready++
		}
	}
	driverReady := driver != nil && driver.ClusterGen == cl.Generation && driver.Phase == wire.PhaseRunning && driver.MasterURL != ""

	// Init scripts: report when the first node starts them and when the
	// driver has run them (one node reports for all, as in Databricks).
	for _, n := range nodes {
		if n.ClusterGen == cl.Generation && (n.Phase == wire.PhaseInitScripts || len(n.InitScripts) > 0) && cl.ScriptsStarted < cl.Generation {
			emit(EvInitScriptsStarted, EventDetails{InstanceID: n.ID})
			cl.ScriptsStarted = cl.Generation
		}
	}
	if driver != nil && driver.ClusterGen == cl.Generation && len(driver.InitScripts) > 0 &&
		(driver.Phase == wire.PhaseStarting || driver.Phase == wire.PhaseRunning) && cl.ScriptsReported < cl.Generation {
		reportScripts(cl, *driver, emit)
	}

	busyNow := in.Busy
	switch cl.State {
	case Pending, Restarting:
		if driverReady && ready >= target {
			wasRestart := cl.State == Restarting
			cl.SparkContextID = in.ContextID
			cl.LaunchFailures = 0
			cl.LastActivity = now
			if wasRestart {
				cl.LastRestartedTime = now
			}
			emit(EvDriverHealthy, EventDetails{})
			emit(EvRunning, EventDetails{CurrentNumWorkers: ready, TargetNumWorkers: target})
			setState(Running, "")
			cl.Waiting = ""
			finish(true, "")
			return s
		}
		cl.StateMessage = pendingMessage(cl, driver, driverReady, ready, target)
	case Running, Resizing:
		if ready < target {
			if cl.State == Running {
				emit(EvResizing, EventDetails{Cause: CauseAutorecovery, CurrentNumWorkers: ready, TargetNumWorkers: target})
				setState(Resizing, fmt.Sprintf("Replacing lost nodes: %d of %s.", ready, fmtWorkers(target)))
			} else {
				cl.StateMessage = fmt.Sprintf("Adding nodes: %d of %s.", ready, fmtWorkers(target))
				if cl.Waiting != "" {
					cl.StateMessage += " " + cl.Waiting
				}
			}
		} else if cl.State == Resizing {
			emit(EvUpsizeCompleted, EventDetails{CurrentNumWorkers: ready, TargetNumWorkers: target})
			setState(Running, "")
			cl.Waiting = ""
			finish(true, "")
		}
		if cl.State == Running && cl.Spec.AutoterminationMinutes > 0 && !busyNow {
			idle := now - max(cl.LastActivity, cl.StateSince)
			if idle >= int64(cl.Spec.AutoterminationMinutes)*60_000 {
				terminate(TerminationReason{Code: "INACTIVITY", Type: ReasonSuccess,
					Parameters: map[string]string{"inactivity_duration_min": fmt.Sprint(cl.Spec.AutoterminationMinutes)}}, "")
				return s
			}
		}
	}
	// Activity moves the auto-termination clock; stored at most once a
	// minute so a busy cluster does not write on every tick.
	if busyNow && now-cl.LastActivity >= 60_000 {
		cl.LastActivity = now
	}
	return s
}

// reportScripts logs INIT_SCRIPTS_FINISHED with a node's script results.
func reportScripts(cl *Cluster, n NodeView, emit func(string, EventDetails)) {
	d := &InitScriptDetails{ReportedForNode: n.ID}
	for _, r := range n.InitScripts {
		ex := InitScriptExecution{Status: r.Status, ExecutionDurationSeconds: int((r.DurationMs + 999) / 1000), ErrorMessage: r.ErrorMessage}
		if r.Source == "global" {
			ex.Workspace = &StorageInfo{Destination: r.Name}
			d.Global = append(d.Global, ex)
			continue
		}
		setDestination(&ex, r.Kind, r.Name)
		d.Cluster = append(d.Cluster, ex)
	}
	emit(EvInitScriptsFinished, EventDetails{InitScripts: d, InstanceID: n.ID})
	cl.ScriptsReported = cl.Generation
}

// setDestination puts a script's destination in the field of its kind.
func setDestination(ex *InitScriptExecution, kind, dest string) {
	si := &StorageInfo{Destination: dest}
	switch kind {
	case "dbfs":
		ex.Dbfs = si
	case "volumes":
		ex.Volumes = si
	case "file":
		ex.File = si
	default:
		ex.Workspace = si
	}
}

func pendingMessage(cl *Cluster, driver *NodeView, driverReady bool, ready, target int) string {
	if cl.Waiting != "" {
		return cl.Waiting
	}
	switch {
	case driver == nil:
		return "Acquiring instances."
	case driver.Phase == wire.PhaseInitScripts:
		return "Running init scripts."
	case !driverReady:
		return "Starting Spark on the driver."
	default:
		return fmt.Sprintf("Waiting for workers to join the driver: %d of %d.", ready, target)
	}
}

// reasonMessage is the state message of a terminated cluster.
func reasonMessage(r TerminationReason) string {
	switch r.Code {
	case "USER_REQUEST":
		if u := r.Parameters["username"]; u != "" {
			return "Terminated by " + u + "."
		}
		return "Terminated by the user."
	case "INACTIVITY":
		return fmt.Sprintf("Inactive cluster terminated (inactive for %s minutes).", r.Parameters["inactivity_duration_min"])
	case "JOB_FINISHED":
		return "Terminated when its job run finished."
	case "INIT_SCRIPT_FAILURE", "GLOBAL_INIT_SCRIPT_FAILURE":
		return "Init script failure: " + r.Parameters["databricks_error_message"]
	}
	if m := r.Parameters["databricks_error_message"]; m != "" {
		return r.Code + ": " + m
	}
	return r.Code
}
