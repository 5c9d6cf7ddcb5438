package usage

import (
	"errors"
	"fmt"
	"sort"
)

// Groupings of a report's lines.
const (
	ByCluster     = "cluster"      // per cluster (and the job run it served)
	ByComputeType = "compute_type" // per compute type
	ByNodeType    = "node_type"    // per node type
)

// ErrBadGrouping is returned for a grouping Group does not know.
var ErrBadGrouping = errors.New("unknown grouping")

// Group sums a report's lines by cluster, compute type or node type; ""
// keeps the report's lines as they are (per cluster, run, compute type and
// node type). Fields the grouping drops are left empty; Instances is the
// sum of the lines' instance counts (an instance that served two clusters
// counts twice).
func Group(r Report, by string) (Report, error) {
	if by == "" {
		return r, nil
	}
	type key struct {
		cluster  string
		run      int64
		compute  ComputeType
		nodeType string
	}
	keyOf := map[string]func(Line) key{
		ByCluster:     func(l Line) key { return key{cluster: l.ClusterID, run: l.RunID} },
		ByComputeType: func(l Line) key { return key{compute: l.ComputeType} },
		ByNodeType:    func(l Line) key { return key{nodeType: l.NodeTypeID} },
	}[by]
	if keyOf == nil {
		return Report{}, fmt.Errorf("%w %q (want %s, %s or %s)", ErrBadGrouping, by, ByCluster, ByComputeType, ByNodeType)
	}
	sums := map[key]*Line{}
	var order []key
	for _, l := range r.Usage {
		k := keyOf(l)
		s := sums[k]
		if s == nil {
			s = &Line{ClusterID: k.cluster, RunID: k.run, ComputeType: k.compute, NodeTypeID: k.nodeType}
			sums[k] = s
			order = append(order, k)
		}
		if by == ByCluster {
			// A cluster bills as one compute type.
			s.ComputeType = l.ComputeType
		}
		s.Instances += l.Instances
		s.NodeSeconds += l.NodeSeconds
		s.DBUs += l.DBUs
		s.Cost += l.Cost
		s.Unpriced = s.Unpriced || l.Unpriced
	}
	out := r
	out.GroupBy = by
	out.Usage = make([]Line, 0, len(order))
	for _, k := range order {
		out.Usage = append(out.Usage, *sums[k])
	}
	sort.SliceStable(out.Usage, func(i, j int) bool {
		a, b := out.Usage[i], out.Usage[j]
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
	return out, nil
}

// WithUnknownNodeTypes returns rates that price every node type of the
// intervals: those without a DBU rate get 0 DBUs per hour, and are
// returned sorted, so that one unknown node type does not fail a whole
// report. Mark the report's lines with MarkUnpriced.
func WithUnknownNodeTypes(intervals []Interval, r Rates) (Rates, []string) {
	var unknown []string
	seen := map[string]bool{}
	for _, iv := range intervals {
		if _, ok := r.DBUPerHour[iv.NodeTypeID]; !ok && !seen[iv.NodeTypeID] {
			seen[iv.NodeTypeID] = true
			unknown = append(unknown, iv.NodeTypeID)
		}
	}
	if len(unknown) == 0 {
		return r, nil
	}
	out := r
	out.DBUPerHour = make(map[string]float64, len(r.DBUPerHour)+len(unknown))
	for k, v := range r.DBUPerHour {
		out.DBUPerHour[k] = v
	}
	for _, nt := range unknown {
		out.DBUPerHour[nt] = 0
	}
	sort.Strings(unknown)
	return out, unknown
}

// MarkUnpriced flags the report's lines of the unpriced node types and
// lists those that appear in it.
func MarkUnpriced(r Report, unpriced []string) Report {
	if len(unpriced) == 0 {
		return r
	}
	set := map[string]bool{}
	for _, nt := range unpriced {
		set[nt] = true
	}
	used := map[string]bool{}
	for i := range r.Usage {
		if set[r.Usage[i].NodeTypeID] {
			r.Usage[i].Unpriced = true
			used[r.Usage[i].NodeTypeID] = true
		}
	}
	r.UnpricedNodeTypes = nil
	for _, nt := range unpriced {
		if used[nt] {
			r.UnpricedNodeTypes = append(r.UnpricedNodeTypes, nt)
		}
	}
	return r
}
