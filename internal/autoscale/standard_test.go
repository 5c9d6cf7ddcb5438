package autoscale

import (
	"testing"
	"time"
)

func TestStandardDecide(t *testing.T) {
	spec := Spec{Policy: Standard, MinWorkers: 2, MaxWorkers: 40, Kind: AllPurpose, WorkerSlots: 4}
	now := sec(3600)
	old := idleSince(now.Add(-11 * time.Minute))
	tenIdle := func(n int) []Worker {
		var ws []Worker
		for i := range n {
			ws = append(ws, wk(string(rune('a'+i)), 0, old))
		}
		return ws
	}
	upAt0 := Record{Snapshot: snap(sec(0), 100, wk("a", 4), wk("b", 4)), Decision: Decision{Target: 10}}
	tenBusy := func(t time.Time) Snapshot {
		s := snap(t, 100)
		for _, w := range tenIdle(10) {
			w.ActiveTasks, w.IdleSince = 4, time.Time{}
			s.Workers = append(s.Workers, w)
		}
		return s
	}
	cases := []policyCase{
		{name: "first step is 8", spec: spec, s: snap(sec(0), 100, wk("a", 4), wk("b", 4)), now: sec(0), want: Decision{Target: 10}},
		{name: "first step follows standardFirstStepUp", spec: Spec{Policy: Standard, MinWorkers: 2, MaxWorkers: 40, WorkerSlots: 4, FirstStepUp: 3},
			s: snap(sec(0), 100, wk("a", 4), wk("b", 4)), now: sec(0), want: Decision{Target: 5}},
		{name: "first step of 8 even when one worker would do", spec: spec, s: snap(sec(0), 1, wk("a", 4), wk("b", 4)), now: sec(0), want: Decision{Target: 10}},
		{name: "second step doubles while the backlog lasts", spec: spec, s: tenBusy(sec(30)), h: History{upAt0, held(tenBusy(sec(20)))}, now: sec(30), want: Decision{Target: 26}},
		{name: "a cleared backlog restarts at 8", spec: spec, s: tenBusy(sec(30)), h: History{upAt0, held(snap(sec(20), 0, tenBusy(sec(20)).Workers...))}, now: sec(30), want: Decision{Target: 18}},
		{name: "no step while workers start", spec: spec, s: snap(sec(1), 100, wk("a", 4), wk("b", 4), wk("c", 0, starting)), now: sec(1), want: Decision{Target: 3}},
		{name: "ten idle workers: remove 1", spec: spec, s: snap(now, 0, tenIdle(10)...), now: now, want: Decision{Target: 9, Remove: []WorkerID{"a"}}},
		{name: "not before 10 minutes", spec: spec, s: snap(now, 0, wk("a", 0, idleSince(now.Add(-9*time.Minute))), wk("b", 0, old), wk("c", 0, old)), now: now, want: Decision{Target: 3}},
		{name: "not while a task waits", spec: spec, s: snap(now, 1, tenIdle(10)...), now: now, want: Decision{Target: 10}},
		{name: "not at min", spec: spec, s: snap(now, 0, tenIdle(2)...), now: now, want: Decision{Target: 2}},
		{name: "not while workers are being removed", spec: spec, s: snap(now, 0, append(tenIdle(4), wk("z", 0, leaving))...), now: now, want: Decision{Target: 4}},
		{name: "a down streak doubles", spec: spec, s: snap(now, 0, tenIdle(9)...),
			h: History{{Snapshot: snap(now.Add(-10*time.Second), 0, tenIdle(10)...), Decision: Decision{Target: 9, Remove: []WorkerID{"j"}}}}, now: now,
			want: Decision{Target: 7, Remove: []WorkerID{"a", "b"}}},
		{name: "a down streak broken by work restarts at 1", spec: spec, s: snap(now, 0, tenIdle(9)...),
			h: History{{Snapshot: snap(now.Add(-20*time.Minute), 0, tenIdle(10)...), Decision: Decision{Target: 9, Remove: []WorkerID{"j"}}}}, now: now,
			want: Decision{Target: 8, Remove: []WorkerID{"a"}}},
	}
	runPolicyCases(t, cases)
}
