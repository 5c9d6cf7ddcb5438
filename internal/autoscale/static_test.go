package autoscale

import "testing"

func TestStaticDecide(t *testing.T) {
	spec := Spec{Policy: Static, MinWorkers: 3, MaxWorkers: 3, WorkerSlots: 4}
	cases := []policyCase{
		{name: "holds under load", spec: spec, s: snap(sec(0), 500, wk("a", 4), wk("b", 4), wk("c", 4)), now: sec(0), want: Decision{Target: 3}},
		{name: "holds when idle", spec: spec, s: snap(sec(9999), 0, wk("a", 0), wk("b", 0), wk("c", 0)), now: sec(9999), want: Decision{Target: 3}},
		{name: "replaces a lost worker", spec: spec, s: snap(sec(0), 0, wk("a", 0), wk("b", 0)), now: sec(0), want: Decision{Target: 3}},
		{name: "counts starting workers", spec: spec, s: snap(sec(0), 0, wk("a", 0), wk("b", 0), wk("c", 0, starting)), now: sec(0), want: Decision{Target: 3}},
	}
	runPolicyCases(t, cases)
	// Above its size (the simulator's static-min starting from more).
	p := NewStatic(1)
	s := snap(sec(0), 0, wk("a", 2), wk("b", 0, shuffleMB(1)), wk("c", 0))
	d := p.Decide(s, nil, sec(0))
	if d.Target != 1 || len(d.Remove) != 2 || d.Remove[0] != "c" || d.Remove[1] != "a" {
		t.Errorf("NewStatic(1) on 3 workers: %+v, want target 1 removing c then a", d)
	}
}
