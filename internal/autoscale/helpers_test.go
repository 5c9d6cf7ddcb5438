package autoscale

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// t0 is the time table tests count from.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sec(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Second))) }

type workerOpt func(*Worker)

// wk is a running worker of 4 slots with tasks running; an idle one has been
// idle since t0 unless an option says otherwise.
func wk(id string, tasks int, opts ...workerOpt) Worker {
	w := Worker{ID: WorkerID(id), State: Running, Slots: 4, ActiveTasks: tasks}
	if tasks == 0 {
		w.IdleSince = t0
	}
	for _, o := range opts {
		o(&w)
	}
	return w
}

func idleSince(t time.Time) workerOpt { return func(w *Worker) { w.IdleSince = t } }
func shuffleMB(mb int64) workerOpt    { return func(w *Worker) { w.ShuffleBytes = mb << 20 } }
func starting(w *Worker)              { w.State, w.IdleSince = Starting, time.Time{} }
func leaving(w *Worker)               { w.State = Decommissioning }

func snap(now time.Time, pending int, ws ...Worker) Snapshot {
	return Snapshot{Time: now, PendingTasks: pending, Workers: ws}
}

// steady is a history of the same snapshot every step from `from` up to
// (not including) `to`, with no decision taken.
func steady(from, to time.Time, step time.Duration, s Snapshot) History {
	var h History
	for t := from; t.Before(to); t = t.Add(step) {
		c := s
		c.Time = t
		h = append(h, Record{Snapshot: c, Decision: hold(c)})
	}
	return h
}

// held is a record of s with no decision taken.
func held(s Snapshot) Record { return Record{Snapshot: s, Decision: hold(s)} }

type policyCase struct {
	name string
	spec Spec
	s    Snapshot
	h    History
	now  time.Time
	want Decision
}

// runPolicyCases checks each case's decision (reason aside: only its
// presence on a resize) and that the decision can be carried out.
func runPolicyCases(t *testing.T, cases []policyCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := New(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			got := p.Decide(c.s, c.h, c.now)
			if err := got.Check(c.s); err != nil {
				t.Fatalf("decision cannot be carried out: %v", err)
			}
			if diff := cmp.Diff(c.want, got, cmpopts.IgnoreFields(Decision{}, "Reason"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("decision (-want +got):\n%s\nreason: %q", diff, got.Reason)
			}
			if got.Step(c.s) != 0 && got.Reason == "" {
				t.Error("a resize without a reason")
			}
		})
	}
}
