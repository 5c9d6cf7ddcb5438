package autoscale

import (
	"testing"
	"time"
)

func TestSparkDynamicAllocationDecide(t *testing.T) {
	spec := Spec{Policy: SparkDynamicAllocation, MinWorkers: 1, MaxWorkers: 50, WorkerSlots: 4}
	busy := snap(sec(0), 200, wk("a", 4))
	pend := func(t time.Time, ws ...Worker) Snapshot { return snap(t, 200, ws...) }
	add := func(t time.Time, size, target int) Record {
		s := pend(t)
		for i := range size {
			s.Workers = append(s.Workers, wk(string(rune('a'+i)), 4))
		}
		return Record{Snapshot: s, Decision: Decision{Target: target}}
	}
	cases := []policyCase{
		{name: "waits out the 1 s backlog timeout", spec: spec, s: busy, now: sec(0), want: Decision{Target: 1}},
		{name: "backlog under 1 s", spec: spec, s: pend(sec(0.5), wk("a", 4)), h: History{held(busy)}, now: sec(0.5), want: Decision{Target: 1}},
		{name: "first request is 1", spec: spec, s: pend(sec(1), wk("a", 4)), h: History{held(busy)}, now: sec(1), want: Decision{Target: 2}},
		{name: "then 2", spec: spec, s: pend(sec(2), wk("a", 4), wk("b", 0, starting)), h: History{held(busy), add(sec(1), 1, 2)}, now: sec(2), want: Decision{Target: 4}},
		{name: "then 4", spec: spec, s: pend(sec(3), wk("a", 4), wk("b", 4), wk("c", 0, starting), wk("d", 0, starting)),
			h: History{held(busy), add(sec(1), 1, 2), add(sec(2), 2, 4)}, now: sec(3), want: Decision{Target: 8}},
		{name: "a partial grant resets the step to 1", spec: spec, s: pend(sec(3), wk("a", 4), wk("b", 4), wk("c", 4)),
			h: History{held(busy), add(sec(1), 1, 2), add(sec(2), 2, 3)}, now: sec(3), want: Decision{Target: 4}},
		{name: "sustained timeout is 1 s", spec: spec, s: pend(sec(1.5), wk("a", 4), wk("b", 0, starting)), h: History{held(busy), add(sec(1), 1, 2)}, now: sec(1.5), want: Decision{Target: 2}},
		{name: "never beyond the tasks' need", spec: spec, s: snap(sec(1), 3, wk("a", 4)), h: History{held(snap(sec(0), 3, wk("a", 4)))}, now: sec(1), want: Decision{Target: 2}},
		{name: "idle 60 s without shuffle: removed", spec: spec, s: snap(sec(60), 0, wk("a", 0), wk("b", 0, idleSince(sec(1))), wk("c", 1)), now: sec(60),
			want: Decision{Target: 2, Remove: []WorkerID{"a"}}},
		{name: "idle with shuffle data: kept", spec: spec, s: snap(sec(600), 0, wk("a", 0, shuffleMB(1)), wk("b", 1)), now: sec(600), want: Decision{Target: 2}},
		{name: "down to min", spec: spec, s: snap(sec(600), 0, wk("a", 0), wk("b", 0)), now: sec(600), want: Decision{Target: 1, Remove: []WorkerID{"a"}}},
	}
	runPolicyCases(t, cases)
}
