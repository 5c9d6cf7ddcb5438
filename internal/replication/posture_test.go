package replication

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/store"
)

// The passive postures of the article's assets, on documents shaped as the
// Databricks API returns them.
var (
	passivePool = SetFields(Field{Path: "min_idle_instances", Value: 0, Create: true})
	passiveJob  = SetFields(
		Field{Path: "settings.max_concurrent_runs", Value: 0, Create: true},
		Field{Path: "settings.schedule.pause_status", Value: "PAUSED"},
		Field{Path: "settings.continuous.pause_status", Value: "PAUSED"},
		Field{Path: "settings.trigger.pause_status", Value: "PAUSED"})
	passiveCluster = SetFields(
		Field{Path: "state", Value: "TERMINATED", Create: true},
		Field{Path: "state_message", Value: "Not started: this region is a passive disaster-recovery replica.", Create: true})
)

func TestPostures(t *testing.T) {
	cases := []struct {
		name    string
		posture Posture
		real    string
		want    string
		wantErr bool
	}{
		{"pool with idle instances", passivePool,
			`{"instance_pool_id":"0101-120000-pool1","min_idle_instances":4,"max_capacity":20,"node_type_id":"local-4"}`,
			`{"instance_pool_id":"0101-120000-pool1","min_idle_instances":0,"max_capacity":20,"node_type_id":"local-4"}`, false},
		{"pool without the field gets it", passivePool,
			`{"instance_pool_id":"p2","max_capacity":5}`,
			`{"instance_pool_id":"p2","max_capacity":5,"min_idle_instances":0}`, false},
		{"scheduled job is paused with no concurrency", passiveJob,
			`{"job_id":123456789012345678,"settings":{"name":"etl","max_concurrent_runs":3,"schedule":{"quartz_cron_expression":"0 0 * * * ?","timezone_id":"UTC","pause_status":"UNPAUSED"}}}`,
			`{"job_id":123456789012345678,"settings":{"name":"etl","max_concurrent_runs":0,"schedule":{"quartz_cron_expression":"0 0 * * * ?","timezone_id":"UTC","pause_status":"PAUSED"}}}`, false},
		{"job without a schedule gets none", passiveJob,
			`{"job_id":7,"settings":{"name":"adhoc"}}`,
			`{"job_id":7,"settings":{"name":"adhoc","max_concurrent_runs":0}}`, false},
		{"continuous and file-arrival triggers are paused", passiveJob,
			`{"job_id":8,"settings":{"continuous":{"pause_status":"UNPAUSED"},"trigger":{"file_arrival":{"url":"dbfs:/in"}}}}`,
			`{"job_id":8,"settings":{"continuous":{"pause_status":"PAUSED"},"max_concurrent_runs":0,"trigger":{"file_arrival":{"url":"dbfs:/in"},"pause_status":"PAUSED"}}}`, false},
		{"running cluster is recorded as not started", passiveCluster,
			`{"cluster_id":"0101-120000-abc","state":"RUNNING","num_workers":2}`,
			`{"cluster_id":"0101-120000-abc","state":"TERMINATED","state_message":"Not started: this region is a passive disaster-recovery replica.","num_workers":2}`, false},
		{"not an object", passivePool, `[1,2]`, ``, true},
		{"null", passivePool, `null`, ``, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.posture(json.RawMessage(c.real))
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if c.wantErr {
				return
			}
			if diff := cmp.Diff(decode(t, c.want), decode(t, string(got))); diff != "" {
				t.Errorf("posture (-want +got):\n%s", diff)
			}
			// A posture is idempotent.
			again, err := c.posture(got)
			if err != nil || string(again) != string(got) {
				t.Errorf("posture of its own output = %s, %v; want %s", again, err, got)
			}
		})
	}
}

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	return v
}

const (
	testPostureKind store.Kind = "test.pool"
	testLocalKind   store.Kind = "test.agent"
)

func init() {
	RegisterPosture(testPostureKind, passivePool)
	store.RegisterLocal(testLocalKind)
}

func TestPassiveOps(t *testing.T) {
	in := []store.Op{
		{Kind: "test.notebook", Key: "n1", Value: json.RawMessage(`{"path":"/a"}`)},
		{Kind: testPostureKind, Key: "p1", Value: json.RawMessage(`{"min_idle_instances":3}`)},
		{Kind: testLocalKind, Key: "i-1", Value: json.RawMessage(`{"host":"h"}`)},
		{Kind: testPostureKind, Key: "p2"},
		{Kind: testPostureKind, Key: "p3", Value: json.RawMessage(`"not an object"`)},
		{Kind: "test.notebook", Key: "n2"},
	}
	want := []store.Op{
		{Kind: "test.notebook", Key: "n1", Value: json.RawMessage(`{"path":"/a"}`)},
		{Kind: testPostureKind, Key: "p1", Value: json.RawMessage(`{"min_idle_instances":0}`)},
		{Kind: PostureKind, Key: "test.pool\x1fp1", Value: json.RawMessage(`{"min_idle_instances":3}`)},
		{Kind: testPostureKind, Key: "p2"},
		{Kind: PostureKind, Key: "test.pool\x1fp2"},
		{Kind: testPostureKind, Key: "p3", Value: json.RawMessage(`"not an object"`)},
		{Kind: PostureKind, Key: "test.pool\x1fp3"},
		{Kind: "test.notebook", Key: "n2"},
	}
	got, errs := passiveOps(in)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("passiveOps (-want +got):\n%s", diff)
	}
	if len(errs) != 1 {
		t.Errorf("errors = %v, want one for p3", errs)
	}
}
