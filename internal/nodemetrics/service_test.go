package nodemetrics

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// clock is a hand-set time for the service.
type clock struct{ t time.Time }

func (c *clock) now() time.Time           { return c.t }
func (c *clock) advance(d time.Duration)  { c.t = c.t.Add(d) }
func (c *clock) ms(d time.Duration) int64 { return c.t.Add(d).UnixMilli() }
func newClock() *clock                    { return &clock{t: time.UnixMilli(1_000_000)} }
func rss(v int64) wire.Metrics            { return wire.Metrics{MemoryRSSBytes: v} }
func ids(cs []current) (out []string) {
	for _, c := range cs {
		out = append(out, c.node.InstanceID)
	}
	return out
}

func TestFreshListsNodesThatReportedWithinTheStalenessBound(t *testing.T) {
	c := newClock()
	s := &Service{Now: c.now, Stale: 30 * time.Second}
	s.Observe(Node{InstanceID: "i-a", ClusterID: "c1", Role: "driver"}, rss(1))
	s.Observe(Node{InstanceID: "i-b", ClusterID: "c2", Role: "worker"}, rss(2))
	c.advance(20 * time.Second)
	s.Observe(Node{InstanceID: "i-c", ClusterID: "c1", Role: "worker"}, rss(3))
	tests := []struct {
		name              string
		after             time.Duration
		cluster, instance string
		want              []string
	}{
		{"all", 0, "", "", []string{"i-a", "i-b", "i-c"}},
		{"one cluster", 0, "c1", "", []string{"i-a", "i-c"}},
		{"one instance", 0, "", "i-b", []string{"i-b"}},
		{"instance of another cluster", 0, "c1", "i-b", nil},
		{"old reports are stale", 15 * time.Second, "", "", []string{"i-c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.advance(tt.after)
			defer c.advance(-tt.after)
			if d := cmp.Diff(tt.want, ids(s.fresh(tt.cluster, tt.instance))); d != "" {
				t.Fatalf("fresh (-want +got):\n%s", d)
			}
		})
	}
}

func TestHistoryFiltersByClusterTimeAndMetric(t *testing.T) {
	c := newClock()
	s := &Service{Now: c.now, Step: 5 * time.Second, Retention: time.Minute}
	t0 := c.t.UnixMilli()
	// i-a serves c1 for three reports, then goes back to its pool and
	// joins c2; i-b serves c1 as its driver with Spark figures.
	for i, cl := range []string{"c1", "c1", "c1", "", "c2"} {
		role := "worker"
		if cl == "" {
			role = ""
		}
		s.Observe(Node{InstanceID: "i-a", ClusterID: cl, Role: role}, rss(int64(100+i)))
		m := rss(int64(200 + i))
		m.Spark = []wire.Sample{
			{Name: "spark_executor_active_tasks", Labels: map[string]string{"app_id": "app-1", "executor_id": "0"}, Value: 2},
			{Name: "spark_executor_active_tasks", Labels: map[string]string{"app_id": "app-1", "executor_id": "1"}, Value: 3},
		}
		s.Observe(Node{InstanceID: "i-b", ClusterID: "c1", Role: "driver"}, m)
		c.advance(5 * time.Second)
	}
	at := func(i int) int64 { return t0 + int64(i)*5000 }
	end := c.t.UnixMilli()
	tests := []struct {
		name, metric, cluster, instance string
		start, end                      int64
		want                            []Series
	}{
		{"a cluster's nodes, only while they served it", "tandem_node_memory_rss_bytes", "c1", "", t0, end, []Series{
			{InstanceID: "i-a", ClusterID: "c1", Role: "worker", Points: []Point{{at(0), 100}, {at(1), 101}, {at(2), 102}}},
			{InstanceID: "i-b", ClusterID: "c1", Role: "driver", Points: []Point{{at(0), 200}, {at(1), 201}, {at(2), 202}, {at(3), 203}, {at(4), 204}}},
		}},
		{"one node across clusters", "tandem_node_memory_rss_bytes", "", "i-a", t0, end, []Series{
			{InstanceID: "i-a", Role: "worker", Points: []Point{{at(0), 100}, {at(1), 101}, {at(2), 102}, {at(3), 103}, {at(4), 104}}},
		}},
		{"the role the node had then", "tandem_node_memory_rss_bytes", "", "i-a", t0, at(3), []Series{
			{InstanceID: "i-a", Role: "idle", Points: []Point{{at(0), 100}, {at(1), 101}, {at(2), 102}, {at(3), 103}}},
		}},
		{"a time window", "tandem_node_memory_rss_bytes", "", "i-b", at(1), at(2), []Series{
			{InstanceID: "i-b", Role: "driver", Points: []Point{{at(1), 201}, {at(2), 202}}},
		}},
		{"spark figures summed over executors, absent on workers", "tandem_spark_executor_active_tasks", "c1", "", t0, at(0), []Series{
			{InstanceID: "i-b", ClusterID: "c1", Role: "driver", Points: []Point{{at(0), 5}}},
		}},
		{"another cluster", "tandem_node_memory_rss_bytes", "c2", "", t0, end, []Series{
			{InstanceID: "i-a", ClusterID: "c2", Role: "worker", Points: []Point{{at(4), 104}}},
		}},
		{"nothing in the window", "tandem_node_memory_rss_bytes", "", "", end + 1, end + 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.history(tt.metric, tt.cluster, tt.instance, tt.start, tt.end)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("history (-want +got):\n%s", d)
			}
		})
	}
}

func TestHistoryIsBoundedAndForgetsSilentNodes(t *testing.T) {
	c := newClock()
	s := &Service{Now: c.now, Step: time.Second, Retention: 10 * time.Second}
	for i := 0; i < 100; i++ {
		s.Observe(Node{InstanceID: "i-a", ClusterID: "c1", Role: "driver"}, rss(int64(i)))
		c.advance(time.Second)
	}
	got := s.history("tandem_node_memory_rss_bytes", "", "", 0, c.ms(0))
	if len(got) != 1 || len(got[0].Points) != 10 || got[0].Points[9].Value != 99 {
		t.Fatalf("history after 100 reports in a 10-entry ring: %+v", got)
	}
	s.Observe(Node{InstanceID: "i-b"}, rss(1))
	c.advance(11 * time.Second)
	s.Observe(Node{InstanceID: "i-c"}, rss(1))
	s.mu.Lock()
	n := len(s.nodes)
	_, hasA := s.nodes["i-a"]
	s.mu.Unlock()
	if n != 1 || hasA {
		t.Fatalf("nodes silent for longer than the retention are kept: %d nodes", n)
	}
}
