package autoscale

import (
	"fmt"
	"time"
)

// Spark dynamic allocation's defaults (core/.../internal/config/package.scala).
const (
	daSchedulerBacklogTimeout          = 1 * time.Second  // spark.dynamicAllocation.schedulerBacklogTimeout
	daSustainedSchedulerBacklogTimeout = 1 * time.Second  // spark.dynamicAllocation.sustainedSchedulerBacklogTimeout
	daExecutorIdleTimeout              = 60 * time.Second // spark.dynamicAllocation.executorIdleTimeout
)

// sparkDynamicAllocation is Spark's own dynamic allocation with its default
// settings, one executor per worker so that workers follow executors: after
// tasks have waited 1 s it asks for 1 more, then every further second of
// backlog for 2, 4, 8... (doubling only while each request is granted in
// full), never beyond what the running and waiting tasks need; it removes a
// worker idle for 60 s unless it holds live shuffle data (shuffle tracking,
// on by default since Spark 3.4, with no timeout). It is a point of
// comparison, not a live policy.
type sparkDynamicAllocation struct{ spec Spec }

func (sparkDynamicAllocation) Name() string { return SparkDynamicAllocation }

// Lookback covers a backlog streak's requests; after five minutes of
// backlog the doubling has long reached the needed size.
func (sparkDynamicAllocation) Lookback() time.Duration { return 5 * time.Minute }

func (p sparkDynamicAllocation) Decide(s Snapshot, h History, now time.Time) Decision {
	if d, ok := enforceBounds(p.spec, s, now); ok {
		return d
	}
	size := s.Size()
	if s.PendingTasks > 0 {
		// The backlog started at the oldest of the consecutive ticks with
		// waiting tasks; replay the requests made since, as
		// ExecutorAllocationManager.addExecutors counts them.
		since := now
		first := len(h)
		for first > 0 && h[first-1].Snapshot.PendingTasks > 0 {
			first--
			since = h[first].Snapshot.Time
		}
		toAdd, lastAdd := 1, time.Time{}
		for _, r := range h[first:] {
			if step := r.Decision.Step(r.Snapshot); step > 0 {
				if step == toAdd {
					toAdd *= 2
				} else {
					toAdd = 1
				}
				lastAdd = r.Snapshot.Time
			}
		}
		due := now.Sub(since) >= daSchedulerBacklogTimeout
		if !lastAdd.IsZero() {
			due = now.Sub(lastAdd) >= daSustainedSchedulerBacklogTimeout
		}
		needed := min(p.spec.MaxWorkers, s.WorkersNeeded(p.spec.slots()))
		if target := min(size+toAdd, needed); due && target > size {
			return Decision{Target: target, Reason: fmt.Sprintf("spark-dynamic-allocation: tasks waiting for %s; adding %s", now.Sub(since).Round(time.Second), plural(target-size, "executor"))}
		}
		return hold(s)
	}
	var idle []Worker
	for _, w := range s.Workers {
		if w.State == Running && w.ShuffleBytes == 0 && w.IdleFor(now) >= daExecutorIdleTimeout {
			idle = append(idle, w)
		}
	}
	n := min(len(idle), size-p.spec.MinWorkers)
	if n <= 0 {
		return hold(s)
	}
	removalOrder(idle, now)
	remove := make([]WorkerID, 0, n)
	for _, w := range idle[:n] {
		remove = append(remove, w.ID)
	}
	return Decision{Target: size - n, Remove: remove, Reason: fmt.Sprintf("spark-dynamic-allocation: %d executors idle for %s without shuffle data; removing %s", len(idle), daExecutorIdleTimeout, plural(n, "executor"))}
}
