package sim

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/autoscale"
)

func TestCompare(t *testing.T) {
	tr := loadTrace(t, "../../../bench/traces/bursty.trace")
	tr.Jobs = tr.Jobs[:30]
	spec := autoscale.Spec{MinWorkers: 1, MaxWorkers: 6, WorkerSlots: 8, Kind: autoscale.AllPurpose}
	c, err := Compare(tr, spec, DefaultEnv())
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, r := range c.Results {
		labels = append(labels, r.Label)
		if r.TasksFailed != 0 {
			t.Errorf("%s: %d tasks failed", r.Label, r.TasksFailed)
		}
		if r.Tasks != tr.Tasks() || len(r.JobTimes) != len(tr.Jobs) {
			t.Errorf("%s: %d tasks, %d job times", r.Label, r.Tasks, len(r.JobTimes))
		}
		if r.NodeSeconds <= r.WorkerSeconds || r.Cost <= 0 {
			t.Errorf("%s: node-seconds %v, worker-seconds %v, cost %v", r.Label, r.NodeSeconds, r.WorkerSeconds, r.Cost)
		}
	}
	want := []string{StaticMax, StaticMin, BestStatic, autoscale.Standard, autoscale.Optimized, autoscale.SparkDynamicAllocation, autoscale.ClusterAutoscaler}
	if strings.Join(labels, ",") != strings.Join(want, ",") {
		t.Fatalf("rows %v, want %v", labels, want)
	}
	maxR, _ := c.Result(StaticMax)
	minR, _ := c.Result(StaticMin)
	best, _ := c.Result(BestStatic)
	if best.Cost > maxR.Cost || best.Cost > minR.Cost && minR.P95Slowdown <= bestStaticSlowdown || c.BestStaticSize < 1 || c.BestStaticSize > 6 {
		t.Errorf("static costs: min %v, best %v (size %d), max %v", minR.Cost, best.Cost, c.BestStaticSize, maxR.Cost)
	}
	if best.P95Slowdown > bestStaticSlowdown || float64(best.Makespan) > bestStaticMakespan*float64(maxR.Makespan) {
		t.Errorf("best static breaks its own bar: slowdown %v, makespan %s vs %s", best.P95Slowdown, best.Makespan, maxR.Makespan)
	}
	if maxR.P95Slowdown != 1 {
		t.Errorf("static-max slowdown against itself: %v", maxR.P95Slowdown)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, c); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2+len(want) || !strings.HasPrefix(lines[0], "| policy") || !strings.HasPrefix(lines[1], "| ---") || !strings.Contains(lines[2], "+0.0%") {
		t.Errorf("table:\n%s", buf.String())
	}
}

func TestSlowdownIsBounded(t *testing.T) {
	s := time.Second
	cases := []struct {
		times, base []time.Duration
		want        float64
	}{
		{[]time.Duration{2 * s, 20 * s}, []time.Duration{1 * s, 10 * s}, 2},   // the 1-s job counts as 10 s
		{[]time.Duration{1 * s, 5 * s}, []time.Duration{1 * s, 5 * s}, 1},     // all short
		{[]time.Duration{30 * s, 10 * s}, []time.Duration{10 * s, 20 * s}, 3}, // p95 of two is the larger
		{nil, nil, 0},
	}
	for _, c := range cases {
		if got := slowdown(c.times, c.base); got != c.want {
			t.Errorf("slowdown(%v, %v) = %v, want %v", c.times, c.base, got, c.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{1200 * time.Millisecond: "1.2s", 245 * time.Second: "4m05s", 24*time.Hour + 61*time.Second: "24h01m"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
