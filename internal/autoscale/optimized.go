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
//   - It scales down a cluster that is not idle: it picks the workers that
//     are cheapest to lose by their shuffle state (removalOrder: no live
//     shuffle data first, then idle before busy). The caller decommissions
//     them gracefully: they finish their tasks and migrate their shuffle
//     blocks before they go, so no task fails.
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
		return Decision{Target: target, Reason: fmt.Sprintf("optimized: %d tasks waiting, %d workers' worth of work; adding %d workers", s.PendingTasks, need, target-size)}
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
	remove := pickForRemoval(s, now, size-target)
	if len(remove) == 0 {
		return hold(s)
	}
	return Decision{Target: size - len(remove), Remove: remove,
		Reason: fmt.Sprintf("optimized: at most %d of %d workers' worth of tasks ran over the last %s (%d%% working); removing %d",
			peak, size, window, 100*peak/size, len(remove))}
}
