package agent

import (
	"testing"
	"time"
)

func TestAttachable(t *testing.T) {
	const master = "spark://127.0.1.2:7077"
	cases := []struct {
		name string
		spec map[string]any
		want bool
	}{
		{"no configuration", map[string]any{}, true},
		{"the agent's own keys", map[string]any{"spark_conf": map[string]any{"spark.master": master, "spark.app.name": "run-1-a"}}, true},
		{"another master (single node: local mode)", map[string]any{"spark_conf": map[string]any{"spark.master": "local[2]"}}, false},
		{"a configuration of its own", map[string]any{"spark_conf": map[string]any{"spark.master": master, "spark.sql.shuffle.partitions": "4"}}, false},
		{"jars", map[string]any{"jars": []any{"lib/a.jar"}}, false},
		{"an empty jar list", map[string]any{"jars": []any{}}, true},
		{"wheels attach (their executors' copy is named by content)", map[string]any{"wheels": []any{"lib/a.whl"}}, true},
	}
	for _, c := range cases {
		if got := attachable(c.spec, master); got != c.want {
			t.Errorf("%s: attachable = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPlanDriver(t *testing.T) {
	cases := []struct {
		name string
		s    driverState
		want driverAction
	}{
		{"none, wanted: start", driverState{want: true}, driverStart},
		{"none, wanted, the last one failed to start not long ago: wait", driverState{want: true, backoff: true}, driverKeep},
		{"none, not wanted (a worker, a job cluster, turned off, a cold task runs)", driverState{}, driverKeep},
		{"running and wanted", driverState{want: true, have: true, current: true}, driverKeep},
		{"running with tasks and wanted", driverState{want: true, have: true, current: true, attached: 3}, driverKeep},
		{"a cold task runs, none attached: stop so it gets the cores", driverState{have: true, current: true}, driverStop},
		{"a cold task runs, tasks attached: drain", driverState{have: true, current: true, attached: 1}, driverKeep},
		{"the cluster restarted: stop even with tasks (their JVM's master is gone)", driverState{want: true, have: true, attached: 2}, driverStop},
		{"the node left the cluster", driverState{have: true}, driverStop},
	}
	for _, c := range cases {
		if got := planDriver(c.s); got != c.want {
			t.Errorf("%s: planDriver = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDriverBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second,
		5: 80 * time.Second, 6: 2 * time.Minute, 50: 2 * time.Minute} {
		if got := driverBackoff(n); got != want {
			t.Errorf("driverBackoff(%d) = %s, want %s", n, got, want)
		}
	}
}
