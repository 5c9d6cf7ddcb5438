package autoscale

import (
	"fmt"
	"time"
)

// WorkerID names a worker of one cluster (the instance id of its node).
type WorkerID string

// WorkerState is where a worker is in its life, as far as scaling goes.
type WorkerState int

const (
	// Running workers accept tasks.
	Running WorkerState = iota
	// Starting workers have been asked for and are not ready yet; they
	// count toward the cluster's size so that a policy does not ask twice.
	Starting
	// Decommissioning workers take no new tasks; they finish the tasks they
	// run, hand their shuffle blocks to peers, then go. They no longer count
	// toward the cluster's size.
	Decommissioning
)

var workerStateNames = map[WorkerState]string{Running: "running", Starting: "starting", Decommissioning: "decommissioning"}

func (s WorkerState) String() string {
	if n, ok := workerStateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("WorkerState(%d)", int(s))
}

// ParseWorkerState reads the name String gives.
func ParseWorkerState(name string) (WorkerState, error) {
	for s, n := range workerStateNames {
		if n == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown worker state %q (want running, starting or decommissioning)", name)
}

// Worker is one worker's signals at a tick.
type Worker struct {
	ID    WorkerID
	State WorkerState
	// Slots is how many tasks the worker runs at once (its executor's
	// cores divided by spark.task.cpus).
	Slots int
	// ActiveTasks is how many tasks run on it now.
	ActiveTasks int
	// ShuffleBytes is the live shuffle data the worker holds: map outputs
	// that a running or later stage of an unfinished job may still read.
	// Removing the worker without migrating them makes Spark recompute them.
	ShuffleBytes int64
	// IdleSince is when the worker last became idle (no active task), or
	// when it became ready if it never ran one; zero while it runs a task.
	IdleSince time.Time
	// CPU, Memory and Disk are the node's use of each, from 0 to 1 (Disk is
	// the scratch disk where Spark keeps shuffle files and spills).
	CPU, Memory, Disk float64
}

// Idle reports whether the worker runs no task.
func (w Worker) Idle() bool { return w.ActiveTasks == 0 }

// IdleFor is how long the worker has been idle at now (zero if busy).
func (w Worker) IdleFor(now time.Time) time.Duration {
	if !w.Idle() || w.IdleSince.IsZero() || now.Before(w.IdleSince) {
		return 0
	}
	return now.Sub(w.IdleSince)
}

// Snapshot is the cluster's signals at one tick.
type Snapshot struct {
	Time    time.Time
	Workers []Worker
	// PendingTasks are runnable tasks waiting for a free slot.
	PendingTasks int
	// StageBacklog are tasks of stages that cannot run yet because they
	// wait for parent stages: work that is coming but not yet asking.
	StageBacklog int
	// ShuffleWrittenBytes and ShuffleReadBytes are cumulative totals since
	// the cluster started.
	ShuffleWrittenBytes, ShuffleReadBytes int64
}

// Size is the number of workers that count toward the cluster's size:
// running and starting, not decommissioning.
func (s Snapshot) Size() int {
	n := 0
	for _, w := range s.Workers {
		if w.State != Decommissioning {
			n++
		}
	}
	return n
}

// Count is the number of workers in state st.
func (s Snapshot) Count(st WorkerState) int {
	n := 0
	for _, w := range s.Workers {
		if w.State == st {
			n++
		}
	}
	return n
}

// ActiveTasks is the number of tasks running on workers that stay (running
// workers); tasks finishing on decommissioning workers are not demand.
func (s Snapshot) ActiveTasks() int {
	n := 0
	for _, w := range s.Workers {
		if w.State == Running {
			n += w.ActiveTasks
		}
	}
	return n
}

// Worker returns the worker with id, if the snapshot has it.
func (s Snapshot) Worker(id WorkerID) (Worker, bool) {
	for _, w := range s.Workers {
		if w.ID == id {
			return w, true
		}
	}
	return Worker{}, false
}

// ClusterIdleFor is how long at now no task has run and none has waited:
// zero if a task runs or waits, or if no worker is running.
func (s Snapshot) ClusterIdleFor(now time.Time) time.Duration {
	if s.PendingTasks > 0 {
		return 0
	}
	var latest time.Time
	running := 0
	for _, w := range s.Workers {
		if w.ActiveTasks > 0 {
			return 0
		}
		if w.State != Running {
			continue
		}
		running++
		if w.IdleSince.IsZero() {
			return 0
		}
		if w.IdleSince.After(latest) {
			latest = w.IdleSince
		}
	}
	if running == 0 || now.Before(latest) {
		return 0
	}
	return now.Sub(latest)
}

// WorkersNeeded is how many workers of slots task slots each would run the
// tasks that run and wait now: ceil((active + pending) / slots), the same
// estimate as Spark's ExecutorAllocationManager.maxNumExecutorsNeeded.
func (s Snapshot) WorkersNeeded(slots int) int {
	if slots < 1 {
		slots = 1
	}
	return ceilDiv(s.ActiveTasks()+s.PendingTasks, slots)
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
