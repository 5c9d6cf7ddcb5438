package autoscale

import (
	"errors"
	"testing"
	"time"
)

func TestDeciderKeepsWhatThePolicyReads(t *testing.T) {
	p, _ := New(Spec{Policy: Optimized, MinWorkers: 1, MaxWorkers: 4, WorkerSlots: 4})
	d := NewDecider(p)
	busy := func(at time.Time) Snapshot { return snap(at, 0, wk("a", 4), wk("b", 0)) }
	for i := range 200 {
		now := sec(float64(i))
		dec, err := d.Tick(busy(now), now)
		if err != nil {
			t.Fatal(err)
		}
		if i == 40 && (dec.Target != 1 || len(dec.Remove) != 1 || dec.Remove[0] != "b") {
			t.Errorf("at 40s: %+v, want b removed after a 40-second window", dec)
		}
	}
	h := d.History()
	if oldest := sec(199).Sub(h[0].Snapshot.Time); oldest > p.Lookback() {
		t.Errorf("history reaches %s back, the policy reads %s", oldest, p.Lookback())
	}
	if !h.Covers(sec(199).Add(-DefaultJobWindowDown)) {
		t.Error("history no longer covers the window")
	}
}

func TestDeciderRefusesBadDecisionsAndTimeTravel(t *testing.T) {
	d := NewDecider(badRemover{})
	if _, err := d.Tick(snap(sec(0), 0, wk("a", 0)), sec(0)); !errors.Is(err, ErrBadDecision) {
		t.Errorf("bad decision: %v", err)
	}
	if len(d.History()) != 0 {
		t.Error("a refused decision was recorded")
	}
	d.SetPolicy(NewStatic(1))
	if _, err := d.Tick(snap(sec(10), 0, wk("a", 0)), sec(10)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Tick(snap(sec(5), 0, wk("a", 0)), sec(5)); !errors.Is(err, ErrBadDecision) {
		t.Errorf("a tick before the last one: %v", err)
	}
}

type badRemover struct{}

func (badRemover) Name() string            { return "bad" }
func (badRemover) Lookback() time.Duration { return time.Minute }
func (badRemover) Decide(s Snapshot, _ History, _ time.Time) Decision {
	return Decision{Target: 0, Remove: []WorkerID{"nobody"}}
}
