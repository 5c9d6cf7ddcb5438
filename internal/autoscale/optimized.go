package autoscale

import (
	"fmt"
	"sort"
	"time"
)

// optimized is Databricks' optimized autoscaling, as the seed article and
// Databricks' compute reference describe it:
//
//   - Scale-up goes from min to max in two steps: a step adds at most half
//     the range (rounded up), and never more than the waiting and running
//     tasks need.
//   - Scale-down is decided at most once per window (40 s on job clusters,
//     150 s on all-purpose ones, spark.databricks.aggressiveWindowDownS up
//     to 600 s), and only if the whole last window was underused: no task
//     waited at any tick. It shrinks by the share of nodes working: the
//     cluster keeps as many workers as the busiest tick of the window kept
//     working (ceil(running tasks / slots per worker)), never fewer than min.
//   - It scales down a cluster that is not idle, choosing workers by the
//     shuffle state they hold (shuffleFirstOrder): workers without shuffle
//     data first (idle ones, then those running the fewest tasks), then
//     those holding the least, idle or busy. The kept workers have slots
//     for every task that ran at the window's busiest tick, so removing a
//     busy worker takes no capacity the work used. The caller
//     decommissions them gracefully, as Spark does with
//     spark.decommission.enabled: a decommissioning worker takes no new
//     task, finishes those it runs (no deadline applies to running tasks:
//     Spark's forceKillTimeout is unset by default), migrates its shuffle
//     blocks to the others meanwhile and stops once both are done, so
//     nothing is recomputed and no task fails. It is billed until then,
//     which is why the workers holding the most shuffle data stay: theirs
//     is the longest migration.
type optimized struct{ spec Spec }

func (optimized) Name() string { return Optimized }

// Lookback is the window plus a margin, so that a record at or before the
// window's start survives the caller's trimming whatever its tick.
func (p optimized) Lookback() time.Duration { return p.spec.windowDown() + 30*time.Second }

func (p optimized) Decide(s Snapshot, h History, now time.Time) Decision {
	if d, ok := enforceBounds(p.spec, s, now); ok {
		return d
	}
	size, slots := s.Size(), p.spec.slots()
	if s.Count(Starting) > 0 {
		return hold(s)
	}
	if s.PendingTasks > 0 {
		need := s.WorkersNeeded(slots)
		if need <= size || size >= p.spec.MaxWorkers {
			return hold(s)
		}
		half := max(1, ceilDiv(p.spec.MaxWorkers-p.spec.MinWorkers, 2))
		target := min(p.spec.MaxWorkers, need, size+half)
		return Decision{Target: target, Reason: fmt.Sprintf("optimized: %d tasks waiting, %d workers' worth of work; adding %s", s.PendingTasks, need, workers(target-size))}
	}
	if size <= p.spec.MinWorkers {
		return hold(s)
	}
	window := p.spec.windowDown()
	start := now.Add(-window)
	if !h.Covers(start) {
		return hold(s)
	}
	peak := ceilDiv(s.ActiveTasks(), slots)
	for _, r := range h.Since(start) {
		if r.Snapshot.PendingTasks > 0 || r.Decision.Step(r.Snapshot) != 0 {
			// Tasks waited, or the cluster was resized within the window:
			// it has not been underused for a whole window.
			return hold(s)
		}
		peak = max(peak, ceilDiv(r.Snapshot.ActiveTasks(), slots))
	}
	target := max(p.spec.MinWorkers, peak)
	if target >= size {
		return hold(s)
	}
	var cands []Worker
	for _, w := range s.Workers {
		if w.State == Running {
			cands = append(cands, w)
		}
	}
	shuffleFirstOrder(cands, now)
	n := size - target
	nIdle := 0
	remove := make([]WorkerID, 0, n)
	for _, w := range cands[:n] {
		remove = append(remove, w.ID)
		if w.Idle() {
			nIdle++
		}
	}
	what := plural(nIdle, "idle worker")
	if nBusy := n - nIdle; nBusy > 0 {
		what = fmt.Sprintf("%s and %s (they finish their tasks first)", what, plural(nBusy, "busy worker"))
	}
	return Decision{Target: target, Remove: remove,
		Reason: fmt.Sprintf("optimized: at most %d of %d workers' worth of tasks ran over the last %s (%d%% working); removing %s",
			peak, size, window, 100*peak/size, what)}
}

// shuffleFirstOrder sorts candidates by the shuffle data they hold
// (none first, then the least), then idle before busy, then fewest running
// tasks, longest idle and the id.
func shuffleFirstOrder(ws []Worker, now time.Time) {
	sort.SliceStable(ws, func(i, j int) bool {
		a, b := ws[i], ws[j]
		if a.ShuffleBytes != b.ShuffleBytes {
			return a.ShuffleBytes < b.ShuffleBytes
		}
		return lessBusy(a, b, now)
	})
}
