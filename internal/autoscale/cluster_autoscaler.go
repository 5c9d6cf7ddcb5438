package autoscale

import (
	"fmt"
	"time"
)

// The Kubernetes cluster autoscaler's defaults (its FAQ, "What are the
// parameters to CA?").
const (
	caScanInterval         = 10 * time.Second // --scan-interval
	caUnneededTime         = 10 * time.Minute // --scale-down-unneeded-time
	caUtilizationThreshold = 0.5              // --scale-down-utilization-threshold
	caDelayAfterAdd        = 10 * time.Minute // --scale-down-delay-after-add
	caMaxEmptyBulkDelete   = 10               // --max-empty-bulk-delete
)

// clusterAutoscaler is a rule in the manner of the Kubernetes cluster
// autoscaler, with task slots in place of pod requests: every 10 s it adds
// the workers the waiting tasks need beyond those already starting; it
// removes a worker whose utilisation (running tasks / slots) has stayed
// below 0.5 for 10 minutes, no sooner than 10 minutes after a scale-up: up
// to 10 empty workers at once, otherwise one busy worker whose tasks fit in
// the others' free slots. It knows nothing of shuffle data. It is a point
// of comparison, not a live policy.
type clusterAutoscaler struct{ spec Spec }

func (clusterAutoscaler) Name() string { return ClusterAutoscaler }

func (clusterAutoscaler) Lookback() time.Duration { return caUnneededTime + caScanInterval }

func (p clusterAutoscaler) Decide(s Snapshot, h History, now time.Time) Decision {
	if d, ok := enforceBounds(p.spec, s, now); ok {
		return d
	}
	// The autoscaler looks once per scan interval: at the first tick of
	// each 10-second period.
	if len(h) > 0 && h[len(h)-1].Snapshot.Time.Truncate(caScanInterval).Equal(now.Truncate(caScanInterval)) {
		return hold(s)
	}
	size, slots := s.Size(), p.spec.slots()
	starting := s.Count(Starting)
	if s.PendingTasks > 0 {
		extra := ceilDiv(s.PendingTasks-starting*slots, slots)
		if extra > 0 && size < p.spec.MaxWorkers {
			target := min(p.spec.MaxWorkers, size+extra)
			return Decision{Target: target, Reason: fmt.Sprintf("cluster-autoscaler: %d tasks cannot be placed; adding %s", s.PendingTasks, workers(target-size))}
		}
		return hold(s)
	}
	if starting > 0 || size <= p.spec.MinWorkers || !h.Covers(now.Add(-caUnneededTime)) {
		return hold(s)
	}
	for i := len(h) - 1; i >= 0 && now.Sub(h[i].Snapshot.Time) < caDelayAfterAdd; i-- {
		if h[i].Decision.Step(h[i].Snapshot) > 0 {
			return hold(s)
		}
	}
	unneeded := p.unneeded(s, h, now)
	if len(unneeded) == 0 {
		return hold(s)
	}
	removalOrder(unneeded, now)
	var remove []WorkerID
	for _, w := range unneeded {
		if w.Idle() && len(remove) < caMaxEmptyBulkDelete && len(remove) < size-p.spec.MinWorkers {
			remove = append(remove, w.ID)
		}
	}
	if len(remove) == 0 {
		// No empty worker: drain one busy worker whose tasks fit elsewhere.
		for _, w := range unneeded {
			free := 0
			for _, o := range s.Workers {
				if o.State == Running && o.ID != w.ID {
					free += max(0, o.Slots-o.ActiveTasks)
				}
			}
			if free >= w.ActiveTasks {
				remove = []WorkerID{w.ID}
				break
			}
		}
	}
	if len(remove) == 0 {
		return hold(s)
	}
	return Decision{Target: size - len(remove), Remove: remove,
		Reason: fmt.Sprintf("cluster-autoscaler: %d workers below %.0f%% utilisation for %s; removing %s", len(unneeded), 100*caUtilizationThreshold, caUnneededTime, workers(len(remove)))}
}

// unneeded returns the running workers below the utilisation threshold now
// and at every scan of the last caUnneededTime.
func (p clusterAutoscaler) unneeded(s Snapshot, h History, now time.Time) []Worker {
	low := func(w Worker) bool {
		return w.State == Running && w.Slots > 0 && float64(w.ActiveTasks) < caUtilizationThreshold*float64(w.Slots)
	}
	cands := map[WorkerID]bool{}
	for _, w := range s.Workers {
		if low(w) {
			cands[w.ID] = true
		}
	}
	start := now.Add(-caUnneededTime)
	lastScan := now.Truncate(caScanInterval)
	for i := len(h) - 1; i >= 0 && len(cands) > 0; i-- {
		r := h[i].Snapshot
		// The autoscaler saw the cluster once per scan period: judge by one
		// tick of each period, as it would have.
		scan := r.Time.Truncate(caScanInterval)
		if scan.Equal(lastScan) {
			continue
		}
		lastScan = scan
		seen := map[WorkerID]bool{}
		for _, w := range r.Workers {
			if cands[w.ID] && low(w) {
				seen[w.ID] = true
			}
		}
		for id := range cands {
			if !seen[id] {
				delete(cands, id)
			}
		}
		if !r.Time.After(start) {
			break
		}
	}
	var out []Worker
	for _, w := range s.Workers {
		if cands[w.ID] {
			out = append(out, w)
		}
	}
	return out
}
