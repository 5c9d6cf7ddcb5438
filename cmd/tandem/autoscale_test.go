package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runSimulate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := autoscaleCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"simulate"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestSimulateCommand(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "small.trace")
	// Two bursts of work an hour apart on a job cluster of 1 to 4 workers.
	err := os.WriteFile(trace, []byte("cluster type=job min=1 max=4 slots=4\njob a 0 64x10:1 4x5\njob b 3600 64x10\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runSimulate(t, "--trace", trace, "--policy", "optimized", "--events")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"1 -> 3 workers  optimized: 60 tasks waiting, 16 workers' worth of work; adding 2 workers", "policy          optimized", "cluster         job, 1-4 workers of 4 slots", "failed tasks    0", "cost  "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = runSimulate(t, "--trace", trace, "--policy", "all", "--max", "3")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"1-3 workers", "| static-max ", "| best-static ", "| optimized ", "| spark-dynamic-allocation ", "| cluster-autoscaler "} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--policy", "optimized"}, "--trace is required"},
		{[]string{"--trace", trace, "--policy", "greedy"}, "unknown policy"},
		{[]string{"--trace", trace, "--window", "601"}, "between 1 and 600"},
		{[]string{"--trace", trace, "--min", "5"}, "min_workers (5) must not be greater"},
		{[]string{"--trace", trace, "--compute-type", "serverless"}, "unknown compute type"},
		{[]string{"--trace", filepath.Join(t.TempDir(), "missing.trace")}, "no such file"},
	} {
		if _, err := runSimulate(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("simulate %v: error %v, want one mentioning %q", c.args, err, c.want)
		}
	}
}
