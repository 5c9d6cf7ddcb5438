package autoscale

import (
	"testing"
	"time"
)

func TestClusterAutoscalerDecide(t *testing.T) {
	spec := Spec{Policy: ClusterAutoscaler, MinWorkers: 1, MaxWorkers: 20, WorkerSlots: 4}
	low := snap(sec(0), 0, wk("a", 1), wk("b", 2), wk("c", 0))
	tenMin := steady(sec(0), sec(600), 10*time.Second, low)
	at := func(t time.Time, s Snapshot) Snapshot { s.Time = t; return s }
	cases := []policyCase{
		{name: "adds for waiting tasks", spec: spec, s: snap(sec(0), 9, wk("a", 4)), now: sec(0), want: Decision{Target: 4}},
		{name: "counts starting capacity", spec: spec, s: snap(sec(0), 9, wk("a", 4), wk("b", 0, starting)), now: sec(0), want: Decision{Target: 4}},
		{name: "capped at max", spec: Spec{Policy: ClusterAutoscaler, MinWorkers: 1, MaxWorkers: 3, WorkerSlots: 4}, s: snap(sec(0), 90, wk("a", 4)), now: sec(0), want: Decision{Target: 3}},
		{name: "looks once per scan period", spec: spec, s: snap(sec(5), 9, wk("a", 4)), h: History{held(snap(sec(1), 0, wk("a", 4)))}, now: sec(5), want: Decision{Target: 1}},
		{name: "empty worker unneeded for 10 minutes goes first", spec: spec, s: at(sec(600), low), h: tenMin, now: sec(600), want: Decision{Target: 2, Remove: []WorkerID{"c"}}},
		{name: "not before 10 minutes", spec: spec, s: at(sec(590), low), h: tenMin[:59], now: sec(590), want: Decision{Target: 3}},
		{name: "a busy spell resets the clock", spec: spec, s: at(sec(600), low), h: append(tenMin[:30:30], held(snap(sec(300), 0, wk("a", 3), wk("b", 3), wk("c", 3)))), now: sec(600),
			want: Decision{Target: 3}},
		{name: "one busy worker whose tasks fit elsewhere", spec: spec, s: snap(sec(600), 0, wk("a", 1), wk("b", 1)),
			h: steady(sec(0), sec(600), 10*time.Second, snap(sec(0), 0, wk("a", 1), wk("b", 1))), now: sec(600), want: Decision{Target: 1, Remove: []WorkerID{"a"}}},
		{name: "waits 10 minutes after a scale-up", spec: spec, s: at(sec(600), low),
			h: append(History{{Snapshot: snap(sec(0), 4, wk("a", 4), wk("b", 4)), Decision: Decision{Target: 3}}}, tenMin[1:]...), now: sec(600), want: Decision{Target: 3}},
	}
	runPolicyCases(t, cases)
}
