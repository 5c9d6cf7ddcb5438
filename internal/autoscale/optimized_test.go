package autoscale

import (
	"testing"
	"time"
)

func TestOptimizedDecide(t *testing.T) {
	job := Spec{Policy: Optimized, MinWorkers: 2, MaxWorkers: 10, Kind: JobCluster, WorkerSlots: 4}
	ap := job
	ap.Kind = AllPurpose
	wide := Spec{Policy: Optimized, MinWorkers: 1, MaxWorkers: 100, Kind: JobCluster, WorkerSlots: 4}
	busy2 := []Worker{wk("a", 4), wk("b", 4)}
	// Four workers, one worker's worth of tasks, steady for a minute.
	under := snap(sec(60), 0, wk("a", 2), wk("b", 1), wk("c", 0), wk("d", 0))
	underHist := steady(sec(0), sec(60), 10*time.Second, under)
	cases := []policyCase{
		{name: "first step is half the range", spec: job, s: snap(sec(0), 100, busy2...), now: sec(0), want: Decision{Target: 6}},
		{name: "a step never exceeds the work", spec: job, s: snap(sec(0), 3, busy2...), now: sec(0), want: Decision{Target: 3}},
		{name: "a step never exceeds max", spec: job, s: snap(sec(0), 100, wk("a", 4), wk("b", 4), wk("c", 4), wk("d", 4), wk("e", 4), wk("f", 4), wk("g", 4), wk("h", 4)), now: sec(0), want: Decision{Target: 10}},
		{name: "odd range rounds the half up", spec: Spec{Policy: Optimized, MinWorkers: 1, MaxWorkers: 4, WorkerSlots: 4}, s: snap(sec(0), 100, wk("a", 4)), now: sec(0), want: Decision{Target: 3}},
		{name: "two steps reach max from min on a wide range", spec: wide, s: snap(sec(0), 1000, wk("a", 4)), now: sec(0), want: Decision{Target: 51}},
		{name: "no step while workers start", spec: job, s: snap(sec(0), 100, wk("a", 4), wk("b", 4), wk("c", 0, starting)), now: sec(0), want: Decision{Target: 3}},
		{name: "waiting tasks that fit in the current size need nothing", spec: job, s: snap(sec(0), 1, wk("a", 4), wk("b", 2)), now: sec(0), want: Decision{Target: 2}},
		{name: "underused over the whole job window: the idle workers go, then the least busy", spec: Spec{Policy: Optimized, MinWorkers: 0, MaxWorkers: 10, WorkerSlots: 4}, s: under, h: underHist, now: sec(60),
			want: Decision{Target: 1, Remove: []WorkerID{"c", "d", "b"}}},
		{name: "never below min", spec: Spec{Policy: Optimized, MinWorkers: 3, MaxWorkers: 10, WorkerSlots: 4}, s: under, h: underHist, now: sec(60), want: Decision{Target: 3, Remove: []WorkerID{"c"}}},
		{name: "under-used busy workers go when too few are idle", spec: Spec{Policy: Optimized, MinWorkers: 0, MaxWorkers: 10, WorkerSlots: 4}, s: snap(sec(60), 0, wk("a", 1), wk("b", 1), wk("c", 1)),
			h: steady(sec(0), sec(60), 10*time.Second, snap(sec(0), 0, wk("a", 1), wk("b", 1), wk("c", 1))), now: sec(60), want: Decision{Target: 1, Remove: []WorkerID{"a", "b"}}},
		{name: "no shuffle data first (idle, then fewest tasks), then the least, busy or idle", spec: Spec{Policy: Optimized, MinWorkers: 0, MaxWorkers: 10, WorkerSlots: 4},
			s: snap(sec(60), 0, wk("a", 2), wk("b", 1, shuffleMB(10)), wk("c", 1), wk("d", 0, shuffleMB(50)), wk("e", 0)),
			h: steady(sec(0), sec(60), 10*time.Second, snap(sec(0), 0, wk("a", 2), wk("b", 1), wk("c", 1), wk("d", 0), wk("e", 0))), now: sec(60),
			want: Decision{Target: 1, Remove: []WorkerID{"e", "c", "a", "b"}}},
		{name: "full workers stay: the window's peak needs their slots", spec: Spec{Policy: Optimized, MinWorkers: 0, MaxWorkers: 10, WorkerSlots: 4}, s: snap(sec(60), 0, wk("a", 4), wk("b", 4), wk("c", 4)),
			h: steady(sec(0), sec(60), 10*time.Second, snap(sec(0), 0, wk("a", 4), wk("b", 4), wk("c", 4))), now: sec(60), want: Decision{Target: 3}},
		{name: "one slot per worker: a busy worker is never under-used", spec: Spec{Policy: Optimized, MinWorkers: 1, MaxWorkers: 4, WorkerSlots: 1},
			s: snap(sec(60), 0, wk("a", 1), wk("b", 1), wk("c", 0)),
			h: steady(sec(0), sec(60), 10*time.Second, snap(sec(0), 0, wk("a", 1), wk("b", 1), wk("c", 0))), now: sec(60), want: Decision{Target: 2, Remove: []WorkerID{"c"}}},
		{name: "history shorter than the window", spec: job, s: under, h: steady(sec(30), sec(60), 10*time.Second, under), now: sec(60), want: Decision{Target: 4}},
		{name: "all-purpose window is 150 s", spec: ap, s: under, h: underHist, now: sec(60), want: Decision{Target: 4}},
		{name: "all-purpose after 150 s", spec: ap, s: snap(sec(150), 0, under.Workers...), h: steady(sec(0), sec(150), 10*time.Second, under), now: sec(150),
			want: Decision{Target: 2, Remove: []WorkerID{"c", "d"}}},
		{name: "a peak inside the window is kept", spec: Spec{Policy: Optimized, MinWorkers: 0, MaxWorkers: 10, WorkerSlots: 4}, s: under,
			h: append(steady(sec(0), sec(30), 10*time.Second, under), held(snap(sec(30), 0, wk("a", 4), wk("b", 4), wk("c", 1), wk("d", 0)))), now: sec(60),
			want: Decision{Target: 3, Remove: []WorkerID{"c"}}},
		{name: "workers with shuffle data go last", spec: Spec{Policy: Optimized, MinWorkers: 0, MaxWorkers: 10, WorkerSlots: 4},
			s: snap(sec(60), 0, wk("a", 0, shuffleMB(10)), wk("b", 1), wk("c", 0, shuffleMB(5)), wk("d", 0)),
			h: steady(sec(0), sec(60), 10*time.Second, snap(sec(0), 0, wk("a", 0), wk("b", 1), wk("c", 0), wk("d", 0))), now: sec(60),
			want: Decision{Target: 1, Remove: []WorkerID{"d", "b", "c"}}},
		{name: "decommissioning workers are not counted", spec: job, s: snap(sec(0), 0, wk("a", 0), wk("b", 0), wk("c", 2, leaving)), now: sec(0), want: Decision{Target: 2}},
	}
	runPolicyCases(t, cases)
}

func TestOptimizedLookbackCoversItsWindow(t *testing.T) {
	for _, spec := range []Spec{{MaxWorkers: 1}, {MaxWorkers: 1, Kind: AllPurpose}, {MaxWorkers: 1, WindowDown: 600 * time.Second}} {
		p, _ := New(spec)
		if p.Lookback() <= spec.windowDown() {
			t.Errorf("%+v: lookback %s does not cover the window %s", spec, p.Lookback(), spec.windowDown())
		}
	}
}
