package autoscale

import (
	"fmt"
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
//   - It scales down a cluster that is not idle: the cluster may be busy,
//     but only idle workers go (a busy worker's task may run for longer than
//     any decommission deadline), chosen by the shuffle state they hold
//     (removalOrder: workers without live shuffle data first, then those
//     holding the least). The caller decommissions them gracefully: a
//     worker's shuffle blocks are migrated to the others before it stops,
//     so nothing is recomputed and no task fails.
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
	var idle []Worker
	for _, w := range s.Workers {
		if w.State == Running && w.Idle() {
			idle = append(idle, w)
		}
	}
	n := min(size-target, len(idle))
	if n == 0 {
		return hold(s)
	}
	removalOrder(idle, now)
	remove := make([]WorkerID, 0, n)
	for _, w := range idle[:n] {
		remove = append(remove, w.ID)
	}
	return Decision{Target: size - n, Remove: remove,
		Reason: fmt.Sprintf("optimized: at most %d of %d workers' worth of tasks ran over the last %s (%d%% working); removing %s",
			peak, size, window, 100*peak/size, plural(n, "idle worker"))}
}
