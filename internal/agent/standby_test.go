package agent

import (
	"bytes"
	"strings"
	"testing"
)

func TestStandbyEligible(t *testing.T) {
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
	}
	for _, c := range cases {
		if got := standbyEligible(c.spec, master); got != c.want {
			t.Errorf("%s: standbyEligible = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestHandoffWriterKeepsABoundedPrefixUntilAttached: what a standby prints
// before its task (Spark's start-up lines) opens the task's stream, bounded.
func TestHandoffWriterKeepsABoundedPrefixUntilAttached(t *testing.T) {
	var h handoffWriter
	h.Write([]byte("starting\n"))
	h.Write([]byte(strings.Repeat("x", standbyBuffer)))
	var out bytes.Buffer
	h.attach(&out)
	h.Write([]byte("task output\n"))
	got := out.String()
	if !strings.HasPrefix(got, "starting\n") || !strings.HasSuffix(got, "task output\n") || len(got) != standbyBuffer+len("task output\n") {
		t.Fatalf("stream: %d bytes, starts %q, ends %q", len(got), got[:9], got[len(got)-12:])
	}
}

func TestCutEnv(t *testing.T) {
	for _, c := range []struct{ kv, k, v string }{{"A=b", "A", "b"}, {"A=b=c", "A", "b=c"}, {"A=", "A", ""}} {
		if k, v, ok := cutEnv(c.kv); !ok || k != c.k || v != c.v {
			t.Errorf("cutEnv(%q) = %q %q %v", c.kv, k, v, ok)
		}
	}
	if _, _, ok := cutEnv("=x"); ok {
		t.Error("an empty name was accepted")
	}
}
