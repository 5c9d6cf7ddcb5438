package compute

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClusterPassivePosture(t *testing.T) {
	reason := map[string]any{"code": FailoverReasonCode, "type": ReasonSuccess,
		"parameters": map[string]any{"databricks_error_message": failoverMessage}}
	msg := FailoverReasonCode + ": " + failoverMessage
	cases := []struct {
		name     string
		in, want string
	}{
		{"running becomes terminated by the failover",
			`{"cluster_id":"c1","state":"RUNNING","state_since":5,"spec":{"num_workers":2},"generation":3,"x":1}`,
			`{"cluster_id":"c1","state":"TERMINATED","state_since":5,"terminated_time":5,"spec":{"num_workers":2},"generation":3,"x":1,"state_message":"MSG","termination_reason":REASON}`},
		{"an operation in progress is dropped",
			`{"cluster_id":"c2","state":"PENDING","state_since":7,"op":"start","op_request":"r","op_user":"u","waiting":"pool full","release_first":["i1"]}`,
			`{"cluster_id":"c2","state":"TERMINATED","state_since":7,"terminated_time":7,"state_message":"MSG","termination_reason":REASON}`},
		{"terminating and resizing too",
			`{"cluster_id":"c3","state":"RESIZING","state_since":9,"terminated_time":1}`,
			`{"cluster_id":"c3","state":"TERMINATED","state_since":9,"terminated_time":9,"state_message":"MSG","termination_reason":REASON}`},
		{"terminated is left as it is",
			`{"cluster_id":"c4","state":"TERMINATED","termination_reason":{"code":"USER_REQUEST"}}`,
			`{"cluster_id":"c4","state":"TERMINATED","termination_reason":{"code":"USER_REQUEST"}}`},
		{"error is left as it is",
			`{"cluster_id":"c5","state":"ERROR"}`,
			`{"cluster_id":"c5","state":"ERROR"}`},
	}
	rb, _ := json.Marshal(reason)
	mb, _ := json.Marshal(msg)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.want
			for _, r := range [][2]string{{`"MSG"`, string(mb)}, {"REASON", string(rb)}} {
				want = strings.ReplaceAll(want, r[0], r[1])
			}
			got, err := ClusterPassivePosture(json.RawMessage(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(decode(t, want), decode(t, string(got))); d != "" {
				t.Errorf("posture (-want +got):\n%s", d)
			}
			again, err := ClusterPassivePosture(got)
			if err != nil || string(again) != string(got) {
				t.Errorf("not idempotent: %s then %s", got, again)
			}
		})
	}
	if _, err := ClusterPassivePosture(json.RawMessage(`[1]`)); err == nil {
		t.Error("a non-object document was accepted")
	}
}

func TestPoolPassivePostureKeepsNoIdleInstances(t *testing.T) {
	for _, in := range []string{`{"instance_pool_id":"p","min_idle_instances":2,"max_capacity":4}`, `{"instance_pool_id":"p"}`} {
		got, err := PoolPassivePosture(json.RawMessage(in))
		if err != nil {
			t.Fatal(err)
		}
		var p Pool
		json.Unmarshal(got, &p)
		if m := decode(t, string(got)); m["min_idle_instances"] != 0.0 || p.ID != "p" {
			t.Errorf("%s -> %s", in, got)
		}
	}
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return m
}
