package autoscale

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/api"
)

func TestDecisionCheck(t *testing.T) {
	s := snap(sec(0), 0, wk("a", 0), wk("b", 1), wk("c", 0, starting), wk("d", 0, leaving))
	cases := []struct {
		name string
		d    Decision
		ok   bool
	}{
		{"hold", Decision{Target: 3}, true},
		{"grow", Decision{Target: 7}, true},
		{"shrink by one", Decision{Target: 2, Remove: []WorkerID{"b"}}, true},
		{"negative", Decision{Target: -1}, false},
		{"grow and remove", Decision{Target: 4, Remove: []WorkerID{"a"}}, false},
		{"too few removals", Decision{Target: 1, Remove: []WorkerID{"a"}}, false},
		{"unknown worker", Decision{Target: 2, Remove: []WorkerID{"zz"}}, false},
		{"starting worker", Decision{Target: 2, Remove: []WorkerID{"c"}}, false},
		{"decommissioning worker", Decision{Target: 2, Remove: []WorkerID{"d"}}, false},
		{"twice", Decision{Target: 1, Remove: []WorkerID{"a", "a"}}, false},
	}
	for _, c := range cases {
		err := c.d.Check(s)
		if (err == nil) != c.ok {
			t.Errorf("%s: Check = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrBadDecision) {
			t.Errorf("%s: %v does not wrap ErrBadDecision", c.name, err)
		}
	}
}

func TestSnapshotSignals(t *testing.T) {
	now := sec(100)
	cases := []struct {
		name     string
		s        Snapshot
		idleFor  time.Duration
		needed   int
		size     int
		starting int
	}{
		{"idle since the last worker went idle", snap(now, 0, wk("a", 0, idleSince(sec(10))), wk("b", 0, idleSince(sec(40))), wk("c", 0, starting)), 60 * time.Second, 0, 3, 1},
		{"a running task", snap(now, 0, wk("a", 0), wk("b", 3)), 0, 1, 2, 0},
		{"a waiting task", snap(now, 5, wk("a", 0)), 0, 2, 1, 0},
		{"no worker", snap(now, 0), 0, 0, 0, 0},
		{"tasks on leaving workers are not demand", snap(now, 0, wk("a", 0), wk("b", 4, leaving)), 0, 0, 1, 0},
	}
	for _, c := range cases {
		if got := c.s.ClusterIdleFor(now); got != c.idleFor {
			t.Errorf("%s: ClusterIdleFor = %s, want %s", c.name, got, c.idleFor)
		}
		if got := c.s.WorkersNeeded(4); got != c.needed {
			t.Errorf("%s: WorkersNeeded = %d, want %d", c.name, got, c.needed)
		}
		if got := c.s.Size(); got != c.size {
			t.Errorf("%s: Size = %d, want %d", c.name, got, c.size)
		}
		if got := c.s.Count(Starting); got != c.starting {
			t.Errorf("%s: starting = %d, want %d", c.name, got, c.starting)
		}
	}
}

func TestSpecFromCluster(t *testing.T) {
	cases := []struct {
		name string
		conf map[string]string
		min  int
		max  int
		kind Kind
		want Spec
		err  string
	}{
		{name: "optimized by default", min: 2, max: 8, want: Spec{Policy: Optimized, MinWorkers: 2, MaxWorkers: 8, WorkerSlots: 4}},
		{name: "standard on request", min: 2, max: 8, conf: map[string]string{ConfPolicy: "Standard", ConfFirstStepUp: "4"},
			want: Spec{Policy: Standard, MinWorkers: 2, MaxWorkers: 8, WorkerSlots: 4, FirstStepUp: 4}},
		{name: "window from spark conf", min: 0, max: 8, kind: AllPurpose, conf: map[string]string{ConfWindowDown: "600"},
			want: Spec{Policy: Optimized, MaxWorkers: 8, Kind: AllPurpose, WorkerSlots: 4, WindowDown: 600 * time.Second}},
		{name: "window over 600 s", min: 0, max: 8, conf: map[string]string{ConfWindowDown: "601"}, err: "between 1 and 600"},
		{name: "window not a number", min: 0, max: 8, conf: map[string]string{ConfWindowDown: "40s"}, err: "whole number"},
		{name: "window zero", min: 0, max: 8, conf: map[string]string{ConfWindowDown: "0"}, err: "between 1 and 600"},
		{name: "peer policies are not live policies", min: 0, max: 8, conf: map[string]string{ConfPolicy: SparkDynamicAllocation}, err: "must be"},
		{name: "min above max", min: 9, max: 8, err: "must not be greater"},
		{name: "negative min", min: -1, max: 8, err: "must not be negative"},
		{name: "max zero", min: 0, max: 0, err: "at least 1"},
		{name: "bad first step", min: 0, max: 8, conf: map[string]string{ConfFirstStepUp: "0"}, err: "standardFirstStepUp"},
	}
	for _, c := range cases {
		got, err := SpecFromCluster(c.min, c.max, c.kind, 4, c.conf)
		if c.err != "" {
			var apiErr *api.Error
			if !errors.As(err, &apiErr) || apiErr.Code != api.InvalidParameterValue || !strings.Contains(apiErr.Message, c.err) {
				t.Errorf("%s: error %v, want INVALID_PARAMETER_VALUE mentioning %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: spec (-want +got):\n%s", c.name, diff)
		}
		if _, err := New(got); err != nil {
			t.Errorf("%s: New: %v", c.name, err)
		}
	}
}

func TestNewRejectsUnknownPolicy(t *testing.T) {
	if _, err := New(Spec{Policy: "aggressive", MaxWorkers: 2}); err == nil {
		t.Fatal("New accepted an unknown policy")
	}
	for _, n := range Names {
		p, err := New(Spec{Policy: n, MaxWorkers: 2})
		if err != nil || p.Name() != n {
			t.Errorf("New(%q) = %v, %v", n, p, err)
		}
	}
}

func TestLessIDIsNatural(t *testing.T) {
	ordered := []WorkerID{"", "a", "w1", "w2", "w02x", "w10", "w10a", "w11", "x"}
	for i := range ordered {
		for j := range ordered {
			if got, want := lessID(ordered[i], ordered[j]), i < j; got != want {
				t.Errorf("lessID(%q, %q) = %v, want %v", ordered[i], ordered[j], got, want)
			}
		}
	}
}
