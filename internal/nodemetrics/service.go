package nodemetrics

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/principal"
)

// Defaults of a Service.
const (
	DefaultRetention = time.Hour
	DefaultStep      = 5 * time.Second
	DefaultStale     = 30 * time.Second
)

// Node says which instance figures belong to, and what it was doing.
type Node struct {
	InstanceID string
	ClusterID  string // empty for an idle pooled instance
	Role       string // driver, worker; empty when idle
	NodeType   string
}

// role is the node's role label: idle when it serves no cluster.
func (n Node) role() string {
	if n.ClusterID == "" || n.Role == "" {
		return "idle"
	}
	return n.Role
}

// ClusterAccess checks that a caller may read a cluster's figures (the
// compute service: CAN_ATTACH_TO on the cluster).
type ClusterAccess interface {
	CheckClusterMetrics(ctx context.Context, p principal.Principal, clusterID string) error
}

// Service keeps the nodes' latest figures and their history.
//
// Memory is bounded: each node has a ring of Retention/Step entries (720
// for an hour at 5 s), each a vector of len(historyNames) float64 (27, so
// about 290 bytes with its header): about 207 KiB per node (measured by
// bench/nodemetrics). A node's ring is dropped once it has not reported
// for Retention, so the nodes held are those that reported in the last
// hour. The latest figures keep at
// most maxSparkSamples Spark samples per node.
type Service struct {
	// Retention is how long history is kept; Step the spacing of its
	// entries; Stale how long after its last report a node stops being
	// listed and exposed. Zero values take the defaults.
	Retention time.Duration
	Step      time.Duration
	Stale     time.Duration
	// Access checks a non-admin's right to a cluster's history; nil
	// leaves the history to admins.
	Access ClusterAccess
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time

	mu        sync.Mutex
	nodes     map[string]*nodeState
	lastPrune time.Time
}

type nodeState struct {
	node   Node
	seen   time.Time
	latest wire.Metrics
	spark  []Sample
	hist   *ring
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) retention() time.Duration { return orDefault(s.Retention, DefaultRetention) }
func (s *Service) step() time.Duration      { return orDefault(s.Step, DefaultStep) }
func (s *Service) stale() time.Duration     { return orDefault(s.Stale, DefaultStale) }

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Observe records a node's figures as they arrive.
func (s *Service) Observe(n Node, m wire.Metrics) {
	if n.InstanceID == "" {
		return
	}
	now := s.now()
	spark := cleanSpark(m.Spark)
	m.Spark = nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes == nil {
		s.nodes = map[string]*nodeState{}
	}
	st, ok := s.nodes[n.InstanceID]
	if !ok {
		capacity := int(s.retention() / s.step())
		st = &nodeState{hist: newRing(max(capacity, 1), s.step().Milliseconds())}
		s.nodes[n.InstanceID] = st
	}
	st.node, st.seen, st.latest, st.spark = n, now, m, spark
	st.hist.add(entry{at: now.UnixMilli(), cluster: n.ClusterID, role: n.role(), values: historyValues(m, spark)})
	s.pruneLocked(now)
}

// pruneLocked drops the nodes silent for longer than the retention, at
// most once per step (it walks every node).
func (s *Service) pruneLocked(now time.Time) {
	if now.Sub(s.lastPrune) < s.step() && now.After(s.lastPrune) {
		return
	}
	s.lastPrune = now
	for id, st := range s.nodes {
		if now.Sub(st.seen) > s.retention() {
			delete(s.nodes, id)
		}
	}
}

// current is a node's latest figures, copied out of the lock.
type current struct {
	node   Node
	age    time.Duration
	latest wire.Metrics
	spark  []Sample
}

// fresh returns the nodes that reported within the staleness bound,
// sorted by instance id, optionally only one cluster's or one instance's.
func (s *Service) fresh(clusterID, instanceID string) []current {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []current
	for id, st := range s.nodes {
		age := now.Sub(st.seen)
		if age > s.stale() || (clusterID != "" && st.node.ClusterID != clusterID) || (instanceID != "" && id != instanceID) {
			continue
		}
		out = append(out, current{node: st.node, age: age, latest: st.latest, spark: st.spark})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].node.InstanceID < out[j].node.InstanceID })
	return out
}

// Point is one value of a history series.
type Point struct {
	Timestamp int64   `json:"timestamp"`
	Value     float64 `json:"value"`
}

// Series is one node's history of one metric; Role is the node's role at
// its newest point.
type Series struct {
	InstanceID string  `json:"instance_id"`
	ClusterID  string  `json:"cluster_id,omitempty"`
	Role       string  `json:"role"`
	NodeType   string  `json:"node_type,omitempty"`
	Points     []Point `json:"points"`
}

// history returns metric's points in [start, end] (ms), one series per
// node that has any, sorted by instance id. With clusterID set, only the
// points taken while the node served that cluster.
func (s *Service) history(metric, clusterID, instanceID string, start, end int64) []Series {
	idx := historyIndex[metric]
	s.pruneAt(s.now())
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Series
	for id, st := range s.nodes {
		if instanceID != "" && id != instanceID {
			continue
		}
		se := Series{InstanceID: id, ClusterID: clusterID, NodeType: st.node.NodeType}
		st.hist.each(func(e entry) {
			if e.at < start || e.at > end || (clusterID != "" && e.cluster != clusterID) || e.values[idx] != e.values[idx] {
				return
			}
			se.Points = append(se.Points, Point{Timestamp: e.at, Value: e.values[idx]})
			se.Role = e.role // the role in the newest point
		})
		if len(se.Points) > 0 {
			out = append(out, se)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].InstanceID < out[j].InstanceID })
	return out
}

func (s *Service) pruneAt(now time.Time) {
	s.mu.Lock()
	s.pruneLocked(now)
	s.mu.Unlock()
}
