package compute

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/api"
)

func TestStepTransitions(t *testing.T) {
	running := []NodeView{
		{ID: "d", Role: wire.RoleDriver, ClusterGen: 1, Phase: wire.PhaseRunning, MasterURL: "spark://h:1"},
		{ID: "w", Role: wire.RoleWorker, ClusterGen: 1, Phase: wire.PhaseRunning, Registered: true},
	}
	cases := []struct {
		name       string
		c          Cluster
		nodes      []NodeView
		in         Input
		wantState  string
		wantEvents []string
		wantReason string
	}{
		{"pending waits for its driver", Cluster{State: Pending, Generation: 1, TargetWorkers: 1}, running[1:], Input{}, Pending, nil, ""},
		{"pending becomes running", Cluster{State: Pending, Generation: 1, TargetWorkers: 1}, running, Input{}, Running,
			[]string{EvDriverHealthy, EvRunning}, ""},
		{"an unregistered worker is not ready", Cluster{State: Pending, Generation: 1, TargetWorkers: 1},
			[]NodeView{running[0], {ID: "w", Role: wire.RoleWorker, ClusterGen: 1, Phase: wire.PhaseRunning}}, Input{}, Pending, nil, ""},
		{"nodes of an older generation are not ready", Cluster{State: Restarting, Generation: 2, TargetWorkers: 1}, running, Input{},
			Restarting, nil, ""},
		{"terminating lets go and terminates", Cluster{State: Terminating, Generation: 1, Reason: &TerminationReason{Code: "USER_REQUEST"}},
			running, Input{}, Terminated, nil, "USER_REQUEST"},
		{"a missing pool ends a start", Cluster{State: Pending, Generation: 1, TargetWorkers: 1}, nil, Input{PoolMissing: "p1"},
			Terminating, []string{EvTerminating}, "INSTANCE_POOL_NOT_FOUND"},
		{"a running cluster does not need its pool", Cluster{State: Running, Generation: 1, TargetWorkers: 1}, running,
			Input{PoolMissing: "p1"}, Running, nil, ""},
		{"spark failing to start on the driver ends a start", Cluster{State: Pending, Generation: 1},
			[]NodeView{{ID: "d", Role: wire.RoleDriver, ClusterGen: 1, Phase: wire.PhaseFailed, FailureCode: "SPARK_STARTUP_FAILURE"}},
			Input{}, Terminating, []string{EvTerminating}, "SPARK_STARTUP_FAILURE"},
		{"a global init script failure", Cluster{State: Pending, Generation: 1},
			[]NodeView{{ID: "d", Role: wire.RoleDriver, ClusterGen: 1, Phase: wire.PhaseFailed, FailureCode: "GLOBAL_INIT_SCRIPT_FAILURE"}},
			Input{}, Error, []string{EvInitScriptsStarted, EvInitScriptsFinished, EvTerminating}, "GLOBAL_INIT_SCRIPT_FAILURE"},
		{"autotermination off keeps an idle cluster", Cluster{State: Running, Generation: 1, TargetWorkers: 1, StateSince: 0},
			running, Input{Now: 1 << 40}, Running, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := step(tc.c, tc.nodes, tc.in)
			if st.Cluster.State != tc.wantState {
				t.Errorf("state %s, want %s (%s)", st.Cluster.State, tc.wantState, st.Cluster.StateMessage)
			}
			var evs []string
			for _, e := range st.Events {
				evs = append(evs, e.Type)
			}
			if diff := cmp.Diff(tc.wantEvents, evs); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			reason := ""
			if st.Cluster.Reason != nil {
				reason = st.Cluster.Reason.Code
			}
			if reason != tc.wantReason {
				t.Errorf("reason %q, want %q", reason, tc.wantReason)
			}
		})
	}
}

// TestStepIsIdempotent: planning again from the plan's own result does
// not log the same events twice.
func TestStepIsIdempotent(t *testing.T) {
	c := Cluster{State: Pending, Generation: 1}
	nodes := []NodeView{{ID: "d", Role: wire.RoleDriver, ClusterGen: 1, Phase: wire.PhaseRunning, MasterURL: "spark://h:1",
		InitScripts: []wire.ScriptResult{{Source: "cluster", Kind: "dbfs", Name: "dbfs:/a.sh", Status: wire.ScriptSucceeded}}}}
	first := step(c, nodes, Input{Now: 10})
	if len(first.Events) != 4 {
		t.Fatalf("first step events %v", first.Events)
	}
	d := first.Events[1].Details.InitScripts
	if d == nil || len(d.Cluster) != 1 || d.Cluster[0].Dbfs == nil || d.Cluster[0].Dbfs.Destination != "dbfs:/a.sh" {
		t.Fatalf("init script details %+v", d)
	}
	second := step(first.Cluster, nodes, Input{Now: 20})
	if len(second.Events) != 0 || second.Cluster.State != Running {
		t.Fatalf("second step: %s %v", second.Cluster.State, second.Events)
	}
}

func TestAssignTakesIdleFirstThenMakesUpToCapacity(t *testing.T) {
	pools := func() map[string]*poolState {
		return map[string]*poolState{
			"p": {Pool: Pool{ID: "p", Name: "small", NodeTypeID: "tandem.small", State: PoolActive, MaxCapacity: 4, MinIdle: 1},
				Idle: []string{"i1", "i2"}, Total: 2},
		}
	}
	cases := []struct {
		name        string
		demands     []demand
		wantTaken   []string
		wantNew     int // new instances for clusters
		wantRefill  int // new idle instances for the pool
		wantWaiting bool
	}{
		{"from idle", []demand{{ClusterID: "c", Role: "driver", PoolID: "p", Count: 1}}, []string{"i1"}, 0, 0, false},
		{"idle then new", []demand{{ClusterID: "c", Role: "worker", PoolID: "p", Count: 3}}, []string{"i1", "i2"}, 1, 1, false},
		{"beyond capacity waits", []demand{{ClusterID: "c", Role: "worker", PoolID: "p", Count: 5}}, []string{"i1", "i2"}, 2, 0, true},
		{"no pool: always new", []demand{{ClusterID: "c", Role: "worker", Count: 2, NodeType: "tandem.small"}}, nil, 2, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := assign(tc.demands, pools())
			var taken []string
			newFor, refill := 0, 0
			for _, g := range a.Grants {
				switch {
				case g.InstanceID != "":
					taken = append(taken, g.InstanceID)
				case g.ClusterID != "":
					newFor++
				default:
					refill++
				}
			}
			if diff := cmp.Diff(tc.wantTaken, taken); diff != "" {
				t.Errorf("taken (-want +got):\n%s", diff)
			}
			if newFor != tc.wantNew || refill != tc.wantRefill {
				t.Errorf("new %d refill %d, want %d and %d", newFor, refill, tc.wantNew, tc.wantRefill)
			}
			if w := a.Waiting["c"]; (w != "") != tc.wantWaiting || (tc.wantWaiting && !strings.Contains(w, "max capacity of 4")) {
				t.Errorf("waiting %q", w)
			}
		})
	}
}

func TestAssignServesOlderClustersFirstAndDriversFirst(t *testing.T) {
	pools := map[string]*poolState{"p": {Pool: Pool{ID: "p", State: PoolActive, MaxCapacity: 1}, Total: 0}}
	a := assign([]demand{
		{ClusterID: "new", Role: "driver", PoolID: "p", Count: 1, Since: 20},
		{ClusterID: "old", Role: "worker", PoolID: "p", Count: 1, Since: 10},
		{ClusterID: "old", Role: "driver", PoolID: "p", Count: 1, Since: 10},
	}, pools)
	if len(a.Grants) != 1 || a.Grants[0].ClusterID != "old" || a.Grants[0].Role != "driver" {
		t.Fatalf("grants %+v", a.Grants)
	}
	if a.Waiting["new"] == "" || a.Waiting["old"] == "" {
		t.Fatalf("waiting %v", a.Waiting)
	}
	a = assign([]demand{{ClusterID: "c", PoolID: "gone", Count: 1}}, pools)
	if a.PoolMissing["c"] != "gone" {
		t.Fatalf("missing pool not reported: %+v", a)
	}
}

func TestExpireIdle(t *testing.T) {
	now := int64(100 * 60_000)
	idle := []idleInstance{{"a", now - 50*60_000}, {"b", now - 5*60_000}, {"c", now - 30*60_000}}
	cases := []struct {
		name string
		pool Pool
		want []string
	}{
		{"within min idle", Pool{State: PoolActive, MinIdle: 3, IdleAutoterminationMinutes: 1}, nil},
		{"timeout reached, longest idle first", Pool{State: PoolActive, MinIdle: 1, IdleAutoterminationMinutes: 20}, []string{"a", "c"}},
		{"timeout not reached", Pool{State: PoolActive, MinIdle: 0, IdleAutoterminationMinutes: 60}, nil},
		{"zero removes extras at once", Pool{State: PoolActive, MinIdle: 2, IdleAutoterminationMinutes: 0}, []string{"a"}},
		{"deleted pool", Pool{State: PoolDeleted, MinIdle: 3}, []string{"a", "b", "c"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, expireIdle(tc.pool, idle, now)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateSpec(t *testing.T) {
	cat := Catalog{NodeTypes: DefaultNodeTypes, SparkVersions: SparkVersions("4.1.4"), MaxWorkers: 10}
	ok := ClusterSpec{SparkVersion: "4.1.x-scala2.13", NodeTypeID: "tandem.small", NumWorkers: 1}
	pool := &Pool{ID: "p", NodeTypeID: "tandem.small", MaxCapacity: 3, State: PoolActive}
	with := func(f func(*ClusterSpec)) ClusterSpec { s := ok; f(&s); return s }
	cases := []struct {
		name string
		spec ClusterSpec
		pool *Pool
		want string // substring of the error; "" for valid
	}{
		{"valid", ok, nil, ""},
		{"no version", with(func(s *ClusterSpec) { s.SparkVersion = "" }), nil, "spark_version"},
		{"unknown version", with(func(s *ClusterSpec) { s.SparkVersion = "15.4.x-scala2.12" }), nil, "Available versions: 4.1.x-scala2.13"},
		{"no node type", with(func(s *ClusterSpec) { s.NodeTypeID = "" }), nil, "node_type_id"},
		{"unknown node type", with(func(s *ClusterSpec) { s.NodeTypeID = "Standard_DS3_v2" }), nil, "tandem.small"},
		{"both sizes", with(func(s *ClusterSpec) { s.Autoscale = &AutoScale{1, 3} }), nil, "either num_workers or autoscale"},
		{"autoscale bounds", with(func(s *ClusterSpec) { s.NumWorkers = 0; s.Autoscale = &AutoScale{3, 3} }), nil, "must be greater"},
		{"too many workers", with(func(s *ClusterSpec) { s.NumWorkers = 11 }), nil, "limit of 10"},
		{"negative", with(func(s *ClusterSpec) { s.NumWorkers = -1 }), nil, "at least 0"},
		{"autotermination too short", with(func(s *ClusterSpec) { s.AutoterminationMinutes = 5 }), nil, "between 10 and 10000"},
		{"secret in spark_conf", with(func(s *ClusterSpec) { s.SparkConf = map[string]string{"spark.authenticate.secret": "x"} }), nil, "made by Tandem"},
		{"master in spark_conf", with(func(s *ClusterSpec) { s.SparkConf = map[string]string{"spark.master": "local"} }), nil, "spark.master"},
		{"pool", with(func(s *ClusterSpec) { s.NodeTypeID = ""; s.InstancePoolID = "p" }), pool, ""},
		{"pool too small", with(func(s *ClusterSpec) { s.NodeTypeID = ""; s.InstancePoolID = "p"; s.NumWorkers = 3 }), pool, "max_capacity of 3"},
		{"pool with another node type", with(func(s *ClusterSpec) { s.NodeTypeID = "tandem.medium"; s.InstancePoolID = "p" }), pool, "differs"},
		{"missing pool", with(func(s *ClusterSpec) { s.NodeTypeID = ""; s.InstancePoolID = "p" }), nil, "does not exist"},
		{"driver pool alone", with(func(s *ClusterSpec) { s.DriverInstancePoolID = "p" }), nil, "needs instance_pool_id"},
		{"init script: workspace", with(func(s *ClusterSpec) {
			s.InitScripts = []InitScriptInfo{{Workspace: &StorageInfo{Destination: "/Users/a/init.sh"}}}
		}), nil, ""},
		{"init script: relative", with(func(s *ClusterSpec) {
			s.InitScripts = []InitScriptInfo{{Workspace: &StorageInfo{Destination: "init.sh"}}}
		}), nil, "absolute"},
		{"init script: two destinations", with(func(s *ClusterSpec) {
			s.InitScripts = []InitScriptInfo{{Workspace: &StorageInfo{Destination: "/a"}, Dbfs: &StorageInfo{Destination: "dbfs:/a"}}}
		}), nil, "exactly one"},
		{"init script: s3", with(func(s *ClusterSpec) {
			s.InitScripts = []InitScriptInfo{{S3: json.RawMessage(`{"destination":"s3://b/a.sh"}`)}}
		}), nil, "not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validateSpec(tc.spec, cat, tc.pool, nil)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if api.ErrorOf(err).Code != api.InvalidParameterValue {
				t.Fatalf("code %s", api.ErrorOf(err).Code)
			}
		})
	}
}

func TestValidatePool(t *testing.T) {
	cat := Catalog{NodeTypes: DefaultNodeTypes, SparkVersions: SparkVersions("4.1.4")}
	neg := -1
	cases := []struct {
		name string
		r    poolRequest
		want string
	}{
		{"valid", poolRequest{InstancePoolName: "p", NodeTypeID: "tandem.small", MinIdleInstances: 1, MaxCapacity: 2}, ""},
		{"no name", poolRequest{NodeTypeID: "tandem.small"}, "instance_pool_name"},
		{"no node type", poolRequest{InstancePoolName: "p"}, "node_type_id"},
		{"min above max", poolRequest{InstancePoolName: "p", NodeTypeID: "tandem.small", MinIdleInstances: 3, MaxCapacity: 2}, "cannot be more"},
		{"idle minutes", poolRequest{InstancePoolName: "p", NodeTypeID: "tandem.small", IdleAutoterminationMinutes: &neg}, "between 0 and 10000"},
		{"two preloaded", poolRequest{InstancePoolName: "p", NodeTypeID: "tandem.small", PreloadedSparkVersions: []string{"4.1.x-scala2.13", "x"}}, "at most one"},
		{"unknown preloaded", poolRequest{InstancePoolName: "p", NodeTypeID: "tandem.small", PreloadedSparkVersions: []string{"x"}}, "Invalid spark version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validatePool(tc.r, cat)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPageEvents(t *testing.T) {
	var all []Event
	for i := 1; i <= 7; i++ {
		typ := EvRunning
		if i%2 == 0 {
			typ = EvResizing
		}
		all = append(all, Event{ClusterID: "c", Timestamp: int64(i * 1000), Type: typ})
	}
	ts := func(es []Event) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.Timestamp/1000)
		}
		return out
	}
	page, next, total, err := pageEvents(all, GetEvents{ClusterID: "c", Limit: 3})
	if err != nil || total != 7 || !cmp.Equal(ts(page), []int64{7, 6, 5}) || next == nil || next.Offset != 3 {
		t.Fatalf("first page %v next %+v total %d err %v", ts(page), next, total, err)
	}
	page, next, _, _ = pageEvents(all, *next)
	if !cmp.Equal(ts(page), []int64{4, 3, 2}) || next == nil {
		t.Fatalf("second page %v", ts(page))
	}
	page, next, _, _ = pageEvents(all, *next)
	if !cmp.Equal(ts(page), []int64{1}) || next != nil {
		t.Fatalf("last page %v next %+v", ts(page), next)
	}
	page, _, total, _ = pageEvents(all, GetEvents{Order: "ASC", EventTypes: []string{EvResizing}, StartTime: 3000, EndTime: 6000})
	if !cmp.Equal(ts(page), []int64{4, 6}) || total != 2 {
		t.Fatalf("filtered %v total %d", ts(page), total)
	}
	for _, bad := range []GetEvents{{Order: "UP"}, {Limit: 501}, {PageSize: -1}, {EventTypes: []string{"NOPE"}}, {StartTime: 5, EndTime: 4}, {PageToken: "x"}} {
		if _, _, _, err := pageEvents(all, bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
