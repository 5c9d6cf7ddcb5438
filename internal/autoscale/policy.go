package autoscale

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Policy decides a cluster's size. Decide reads the signals now (s), the
// earlier ticks (h, oldest first, each with the decision taken then) and the
// time; it returns what the cluster should do. It is pure: the same inputs
// give the same decision, so the live loop and the simulator agree.
type Policy interface {
	// Name is the policy's name as the cluster spec and the simulator
	// spell it ("optimized", "standard", ...).
	Name() string
	Decide(s Snapshot, h History, now time.Time) Decision
	// Lookback is how much history Decide reads: callers may drop records
	// older than now minus Lookback.
	Lookback() time.Duration
}

// Decision is what a policy wants done.
type Decision struct {
	// Target is the size the cluster should have: running plus starting
	// workers. Above the current size, the caller starts the difference.
	Target int
	// Remove are the workers to decommission now, in order of preference.
	// When Target is below the current size, it names exactly the
	// difference; otherwise it is empty.
	Remove []WorkerID
	// Reason says why, for the cluster's event log; empty when nothing
	// changes.
	Reason string
}

// Step is the change the decision makes to s: positive to scale up,
// negative to scale down, zero to hold.
func (d Decision) Step(s Snapshot) int { return d.Target - s.Size() }

// ErrBadDecision is wrapped by Check's errors: a decision the caller must
// not carry out (a bug in a policy).
var ErrBadDecision = errors.New("autoscale: bad decision")

// Check verifies that d can be carried out on s: a non-negative target and,
// when scaling down, exactly the right number of distinct running workers
// to remove. The live loop and the simulator call it before acting.
func (d Decision) Check(s Snapshot) error {
	if d.Target < 0 {
		return fmt.Errorf("%w: target %d is negative", ErrBadDecision, d.Target)
	}
	size := s.Size()
	if d.Target >= size {
		if len(d.Remove) > 0 {
			return fmt.Errorf("%w: target %d is not below the size %d, yet %d workers are to be removed", ErrBadDecision, d.Target, size, len(d.Remove))
		}
		return nil
	}
	if len(d.Remove) != size-d.Target {
		return fmt.Errorf("%w: going from %d to %d workers needs %d removals, the decision names %d", ErrBadDecision, size, d.Target, size-d.Target, len(d.Remove))
	}
	seen := map[WorkerID]bool{}
	for _, id := range d.Remove {
		w, ok := s.Worker(id)
		if !ok {
			return fmt.Errorf("%w: worker %s is not in the cluster", ErrBadDecision, id)
		}
		if w.State != Running {
			return fmt.Errorf("%w: worker %s is %s; only running workers are removed", ErrBadDecision, id, w.State)
		}
		if seen[id] {
			return fmt.Errorf("%w: worker %s is named twice", ErrBadDecision, id)
		}
		seen[id] = true
	}
	return nil
}

// Record is one earlier tick: the signals seen and the decision taken.
type Record struct {
	Snapshot Snapshot
	Decision Decision
}

// History is the earlier ticks, oldest first.
type History []Record

// Since returns the records at or after t.
func (h History) Since(t time.Time) History {
	i := sort.Search(len(h), func(i int) bool { return !h[i].Snapshot.Time.Before(t) })
	return h[i:]
}

// Covers reports whether the history reaches back to t: its oldest record is
// at or before t. A policy that judges a window waits until it has seen all
// of it.
func (h History) Covers(t time.Time) bool {
	return len(h) > 0 && !h[0].Snapshot.Time.After(t)
}

// lastResize returns the index of the newest record whose decision changed
// the cluster's size, or -1.
func (h History) lastResize() int {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Decision.Step(h[i].Snapshot) != 0 {
			return i
		}
	}
	return -1
}

// workers says "1 worker" or "n workers", for reasons.
func workers(n int) string { return plural(n, "worker") }

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// hold is the decision that changes nothing.
func hold(s Snapshot) Decision { return Decision{Target: s.Size()} }

// enforceBounds brings a cluster outside [min, max] back inside, before any
// policy logic runs: below min (instances lost, or bounds edited) it starts
// workers; above max (bounds edited) it removes the cheapest workers to lose.
func enforceBounds(spec Spec, s Snapshot, now time.Time) (Decision, bool) {
	size := s.Size()
	switch {
	case size < spec.MinWorkers:
		return Decision{Target: spec.MinWorkers, Reason: fmt.Sprintf("below the minimum of %s", workers(spec.MinWorkers))}, true
	case size > spec.MaxWorkers:
		remove := pickForRemoval(s, now, size-spec.MaxWorkers)
		if len(remove) == 0 {
			return hold(s), true
		}
		return Decision{Target: size - len(remove), Remove: remove, Reason: fmt.Sprintf("above the maximum of %s", workers(spec.MaxWorkers))}, true
	}
	return Decision{}, false
}

// removalOrder sorts candidates so that the cheapest to lose come first:
// workers holding no live shuffle data before those that do (their blocks
// must be migrated, or recomputed if migration fails), idle before busy
// (a busy worker must finish its tasks first), then fewer shuffle bytes,
// fewer tasks, longest idle, and the id so that the order is total.
func removalOrder(ws []Worker, now time.Time) {
	sort.SliceStable(ws, func(i, j int) bool {
		a, b := ws[i], ws[j]
		if (a.ShuffleBytes > 0) != (b.ShuffleBytes > 0) {
			return a.ShuffleBytes == 0
		}
		if a.Idle() != b.Idle() {
			return a.Idle()
		}
		if a.ShuffleBytes != b.ShuffleBytes {
			return a.ShuffleBytes < b.ShuffleBytes
		}
		return lessBusy(a, b, now)
	})
}

// lessBusy is the last word of both removal orders: fewest running tasks
// first, then the longest idle, then the id.
func lessBusy(a, b Worker, now time.Time) bool {
	if a.ActiveTasks != b.ActiveTasks {
		return a.ActiveTasks < b.ActiveTasks
	}
	if ai, bi := a.IdleFor(now), b.IdleFor(now); ai != bi {
		return ai > bi
	}
	return lessID(a.ID, b.ID)
}

// lessID orders ids naturally, numbers by value ("w2" before "w10"), so
// that ties break the way a reader expects.
func lessID(a, b WorkerID) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if isDigit(a[i]) && isDigit(b[j]) {
			ei, ej := i, j
			for ei < len(a) && isDigit(a[ei]) {
				ei++
			}
			for ej < len(b) && isDigit(b[ej]) {
				ej++
			}
			na, nb := strings.TrimLeft(string(a[i:ei]), "0"), strings.TrimLeft(string(b[j:ej]), "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			i, j = ei, ej
			continue
		}
		if a[i] != b[j] {
			return a[i] < b[j]
		}
		i++
		j++
	}
	if len(a)-i != len(b)-j {
		return len(a)-i < len(b)-j
	}
	return a < b
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// pickForRemoval names up to n running workers in removalOrder.
func pickForRemoval(s Snapshot, now time.Time, n int) []WorkerID {
	var cands []Worker
	for _, w := range s.Workers {
		if w.State == Running {
			cands = append(cands, w)
		}
	}
	removalOrder(cands, now)
	if n > len(cands) {
		n = len(cands)
	}
	ids := make([]WorkerID, 0, n)
	for _, w := range cands[:n] {
		ids = append(ids, w.ID)
	}
	return ids
}
