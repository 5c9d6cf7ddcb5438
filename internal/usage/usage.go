// Package usage is Tandem's DBU-style cost accounting: a rate per node type
// (DBUs per hour) and a price per DBU for each compute type (All-Purpose,
// Jobs, Jobs Light, SQL), and the usage of clusters and job runs computed
// from their instances' uptime intervals.
//
// It is pure: callers hand it the intervals (the compute service from its
// instance records, the autoscaling simulator from its model) and the rates.
// It does not record uptime or serve the usage API itself.
package usage

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ComputeType is the kind of compute usage is billed as.
type ComputeType string

// The compute types, named as Databricks' billing SKUs name them.
const (
	AllPurpose ComputeType = "ALL_PURPOSE"
	Jobs       ComputeType = "JOBS"
	JobsLight  ComputeType = "JOBS_LIGHT"
	SQL        ComputeType = "SQL"
)

// ComputeTypes lists every compute type.
var ComputeTypes = []ComputeType{AllPurpose, Jobs, JobsLight, SQL}

// ParseComputeType reads a compute type in either spelling: the SKU-style
// name (ALL_PURPOSE) or the command-line one (all-purpose, jobs-light).
func ParseComputeType(s string) (ComputeType, error) {
	c := ComputeType(strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_")))
	for _, t := range ComputeTypes {
		if c == t {
			return t, nil
		}
	}
	return "", fmt.Errorf("%w %q (want ALL_PURPOSE, JOBS, JOBS_LIGHT or SQL)", ErrUnknownComputeType, s)
}

// Errors Compute returns for intervals the rates do not cover.
var (
	ErrUnknownNodeType    = errors.New("no DBU rate for node type")
	ErrUnknownComputeType = errors.New("unknown compute type")
	ErrBadInterval        = errors.New("bad uptime interval")
)

// Rates prices usage.
type Rates struct {
	// DBUPerHour is what one instance of each node type consumes in an
	// hour of uptime.
	DBUPerHour map[string]float64
	// PricePerDBU is the price of a DBU for each compute type.
	PricePerDBU map[ComputeType]float64
	// Currency names the unit of PricePerDBU.
	Currency string
}

// DefaultRates are illustrative rates in the spirit of Databricks' published
// ones (Azure, Premium tier list prices; docs/autoscaling.md, "Cost"): DBUs
// per hour grow with the node's size (0.75 for 4 cores, 1.5 for 8, 3 for 16),
// and a DBU of interactive All-Purpose compute costs more than one of
// scheduled Jobs compute. They are not anyone's bill: a deployment sets its
// own.
func DefaultRates() Rates {
	return Rates{
		DBUPerHour: map[string]float64{
			"Standard_DS3_v2": 0.75,
			"Standard_DS4_v2": 1.5,
			"Standard_DS5_v2": 3.0,
		},
		PricePerDBU: map[ComputeType]float64{
			AllPurpose: 0.55,
			Jobs:       0.30,
			JobsLight:  0.22,
			SQL:        0.22,
		},
		Currency: "USD",
	}
}

// Price is the cost of one instance of nodeType up for d as compute, and
// the DBUs it consumed.
func (r Rates) Price(nodeType string, compute ComputeType, d time.Duration) (dbus, cost float64, err error) {
	rate, ok := r.DBUPerHour[nodeType]
	if !ok {
		return 0, 0, fmt.Errorf("%w %q", ErrUnknownNodeType, nodeType)
	}
	price, ok := r.PricePerDBU[compute]
	if !ok {
		return 0, 0, fmt.Errorf("%w %q", ErrUnknownComputeType, compute)
	}
	dbus = d.Hours() * rate
	return dbus, dbus * price, nil
}

// Interval is one instance's uptime in one cluster: from when it was
// acquired for the cluster until it was released. Databricks bills per
// second from the instance's start, driver included.
type Interval struct {
	InstanceID  string
	ClusterID   string
	RunID       int64 // the job run the cluster served, if it is a job cluster
	NodeTypeID  string
	ComputeType ComputeType
	Driver      bool
	Start       time.Time
	End         time.Time // zero while the instance is still up
}

// Line is the usage of one cluster (and job run) on one node type. A
// grouped report (Group) leaves out the fields it does not group by.
type Line struct {
	ClusterID   string      `json:"cluster_id,omitempty"`
	RunID       int64       `json:"run_id,omitempty"`
	ComputeType ComputeType `json:"compute_type,omitempty"`
	NodeTypeID  string      `json:"node_type_id,omitempty"`
	Instances   int         `json:"instances"`
	NodeSeconds float64     `json:"node_seconds"`
	DBUs        float64     `json:"dbus"`
	Cost        float64     `json:"cost"`
	// Unpriced marks a line whose node type has no DBU rate: its uptime
	// is counted, its DBUs and cost are 0 (see WithUnknownNodeTypes).
	Unpriced bool `json:"unpriced,omitempty"`
}

// Total sums lines.
type Total struct {
	NodeSeconds float64 `json:"node_seconds"`
	DBUs        float64 `json:"dbus"`
	Cost        float64 `json:"cost"`
}

// Report is usage over a period, in the shape the usage API answers with:
// times in epoch milliseconds, as Databricks' APIs give them.
type Report struct {
	StartTime int64  `json:"start_time"`
	EndTime   int64  `json:"end_time"`
	Currency  string `json:"currency"`
	Usage     []Line `json:"usage"`
	Total     Total  `json:"total"`
	// GroupBy is the grouping the lines were summed by, if any.
	GroupBy string `json:"group_by,omitempty"`
	// UnpricedNodeTypes lists node types that had uptime but no rate.
	UnpricedNodeTypes []string `json:"unpriced_node_types,omitempty"`
}

// Compute is the usage the intervals add up to between from and to: each
// interval is clipped to the period (one still up counts until to), and
// the uptime is summed per cluster, job run, compute type and node type.
// Lines are sorted by cluster, run, compute type and node type.
func Compute(intervals []Interval, rates Rates, from, to time.Time) (Report, error) {
	if to.Before(from) {
		return Report{}, fmt.Errorf("%w: the period ends (%s) before it starts (%s)", ErrBadInterval, to, from)
	}
	type key struct {
		cluster  string
		run      int64
		compute  ComputeType
		nodeType string
	}
	lines := map[key]*Line{}
	instances := map[key]map[string]bool{}
	for _, iv := range intervals {
		end := iv.End
		if end.IsZero() {
			// Still up: it counts until the period's end. One that
			// started after the period (the clock was read before the
			// record, which a concurrent start wrote) counts nothing.
			end = maxTime(to, iv.Start)
		}
		if end.Before(iv.Start) {
			return Report{}, fmt.Errorf("%w: instance %s of cluster %s ends (%s) before it starts (%s)", ErrBadInterval, iv.InstanceID, iv.ClusterID, end, iv.Start)
		}
		start := maxTime(iv.Start, from)
		end = minTime(end, to)
		if !end.After(start) {
			continue
		}
		d := end.Sub(start)
		dbus, cost, err := rates.Price(iv.NodeTypeID, iv.ComputeType, d)
		if err != nil {
			return Report{}, fmt.Errorf("price instance %s of cluster %s: %w", iv.InstanceID, iv.ClusterID, err)
		}
		k := key{iv.ClusterID, iv.RunID, iv.ComputeType, iv.NodeTypeID}
		l := lines[k]
		if l == nil {
			l = &Line{ClusterID: iv.ClusterID, RunID: iv.RunID, ComputeType: iv.ComputeType, NodeTypeID: iv.NodeTypeID}
			lines[k] = l
			instances[k] = map[string]bool{}
		}
		instances[k][iv.InstanceID] = true
		l.Instances = len(instances[k])
		l.NodeSeconds += d.Seconds()
		l.DBUs += dbus
		l.Cost += cost
	}
	r := Report{StartTime: from.UnixMilli(), EndTime: to.UnixMilli(), Currency: rates.Currency, Usage: []Line{}}
	for _, l := range lines {
		r.Usage = append(r.Usage, *l)
		r.Total.NodeSeconds += l.NodeSeconds
		r.Total.DBUs += l.DBUs
		r.Total.Cost += l.Cost
	}
	sort.Slice(r.Usage, func(i, j int) bool {
		a, b := r.Usage[i], r.Usage[j]
		if a.ClusterID != b.ClusterID {
			return a.ClusterID < b.ClusterID
		}
		if a.RunID != b.RunID {
			return a.RunID < b.RunID
		}
		if a.ComputeType != b.ComputeType {
			return a.ComputeType < b.ComputeType
		}
		return a.NodeTypeID < b.NodeTypeID
	})
	return r, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
