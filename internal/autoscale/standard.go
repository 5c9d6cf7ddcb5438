package autoscale

import (
	"fmt"
	"time"
)

// The standard policy's thresholds, from Databricks' compute configuration
// reference (docs/autoscaling.md gives the reasoning).
const (
	// standardNotBusyShare of the running workers must not have been busy
	// for standardNotBusyFor before the cluster shrinks.
	standardNotBusyShare = 0.9
	standardNotBusyFor   = 10 * time.Minute
	// standardClusterIdle is how long the whole cluster must have run and
	// queued nothing before it shrinks.
	standardClusterIdle = 30 * time.Second
)

// standard is Databricks' standard autoscaling: it grows by a fixed first
// step (8 workers) and then exponentially (each step twice the last) while
// tasks keep waiting; it shrinks only when 90% of the workers have not been
// busy for 10 minutes and the cluster has been idle for 30 seconds, by 1
// worker and then exponentially. Each step waits for the previous one to
// land (new workers ready, removed workers gone).
type standard struct{ spec Spec }

func (standard) Name() string { return Standard }

// Lookback covers a scale-up streak: steps land within a minute of each
// other, so a quarter of an hour is ample.
func (standard) Lookback() time.Duration { return 15 * time.Minute }

func (p standard) Decide(s Snapshot, h History, now time.Time) Decision {
	if d, ok := enforceBounds(p.spec, s, now); ok {
		return d
	}
	if s.Count(Starting) > 0 {
		return hold(s)
	}
	size := s.Size()
	if need := s.WorkersNeeded(p.spec.slots()); s.PendingTasks > 0 && need > size && size < p.spec.MaxWorkers {
		step := p.spec.firstStepUp()
		if prev, ok := upStreak(h); ok {
			step = 2 * prev
		}
		target := min(p.spec.MaxWorkers, size+step)
		return Decision{Target: target, Reason: fmt.Sprintf("standard: %d tasks waiting; adding %s", s.PendingTasks, workers(target-size))}
	}
	if s.Count(Decommissioning) > 0 || size <= p.spec.MinWorkers {
		return hold(s)
	}
	idleFor := s.ClusterIdleFor(now)
	if idleFor < standardClusterIdle {
		return hold(s)
	}
	var notBusy []Worker
	running := 0
	for _, w := range s.Workers {
		if w.State != Running {
			continue
		}
		running++
		if w.IdleFor(now) >= standardNotBusyFor {
			notBusy = append(notBusy, w)
		}
	}
	if float64(len(notBusy)) < standardNotBusyShare*float64(running) {
		return hold(s)
	}
	step := 1
	if prev, ok := downStreak(h, now, idleFor); ok {
		step = 2 * prev
	}
	step = min(step, size-p.spec.MinWorkers, len(notBusy))
	removalOrder(notBusy, now)
	remove := make([]WorkerID, 0, step)
	for _, w := range notBusy[:step] {
		remove = append(remove, w.ID)
	}
	return Decision{Target: size - step, Remove: remove,
		Reason: fmt.Sprintf("standard: %d of %d workers not busy for %s and the cluster idle for %s; removing %s", len(notBusy), running, standardNotBusyFor, idleFor.Round(time.Second), workers(step))}
}

// upStreak returns the size of the last scale-up step if tasks have waited
// at every tick since it: the backlog that caused it has not been cleared,
// so the next step doubles it.
func upStreak(h History) (int, bool) {
	i := h.lastResize()
	if i < 0 {
		return 0, false
	}
	step := h[i].Decision.Step(h[i].Snapshot)
	if step <= 0 {
		return 0, false
	}
	for _, r := range h[i:] {
		if r.Snapshot.PendingTasks == 0 {
			return 0, false
		}
	}
	return step, true
}

// downStreak returns the size of the last scale-down step if the cluster
// has stayed idle since it (idleFor reaches back before it) and nothing
// grew in between; the next step doubles it.
func downStreak(h History, now time.Time, idleFor time.Duration) (int, bool) {
	i := h.lastResize()
	if i < 0 {
		return 0, false
	}
	step := h[i].Decision.Step(h[i].Snapshot)
	if step >= 0 || now.Sub(h[i].Snapshot.Time) > idleFor {
		return 0, false
	}
	return -step, true
}
