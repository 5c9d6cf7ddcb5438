package sim

import (
	"errors"
	"math"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tandemdata/tandem/internal/autoscale"
)

// exactEnv is an environment where everything takes exactly as long as
// stated: no jitter, no pool, no idle tail.
func exactEnv() Env {
	e := DefaultEnv()
	e.TaskJitter = 0
	e.IdleTail = 0
	return e
}

func oneJob(stages ...Stage) Trace {
	return Trace{Name: "test", Jobs: []Job{{ID: "j", Submit: 0, Stages: stages}}}
}

func jobSpec(min, max, slots int) autoscale.Spec {
	return autoscale.Spec{MinWorkers: min, MaxWorkers: max, WorkerSlots: slots, Kind: autoscale.JobCluster}
}

func TestRunStaticTiming(t *testing.T) {
	cases := []struct {
		name      string
		trace     Trace
		workers   int
		makespan  time.Duration
		waitP95   time.Duration
		nodeHours float64
	}{
		{"one wave", oneJob(Stage{Tasks: 16, TaskSeconds: 10}), 2, 10 * time.Second, 0, 3 * 10.0 / 3600},
		{"two waves", oneJob(Stage{Tasks: 32, TaskSeconds: 10}), 2, 20 * time.Second, 10 * time.Second, 3 * 20.0 / 3600},
		{"two stages", oneJob(Stage{Tasks: 16, TaskSeconds: 10, ShuffleMiB: 1}, Stage{Tasks: 1, TaskSeconds: 5}), 2, 15 * time.Second, 0, 3 * 15.0 / 3600},
		{"a late job", Trace{Name: "t", Jobs: []Job{{ID: "a", Submit: 0, Stages: []Stage{{Tasks: 1, TaskSeconds: 5}}}, {ID: "b", Submit: 60 * time.Second, Stages: []Stage{{Tasks: 1, TaskSeconds: 5}}}}},
			1, 65 * time.Second, 0, 2 * 65.0 / 3600},
	}
	for _, c := range cases {
		r, err := Run(c.trace, Config{Spec: jobSpec(c.workers, c.workers, 8), Policy: autoscale.NewStatic(c.workers), InitialWorkers: c.workers, Env: exactEnv()})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.Makespan != c.makespan || r.TaskWaitP95 != c.waitP95 || math.Abs(r.NodeSeconds/3600-c.nodeHours) > 1e-9 {
			t.Errorf("%s: makespan %s, p95 wait %s, node-hours %v; want %s, %s, %v", c.name, r.Makespan, r.TaskWaitP95, r.NodeSeconds/3600, c.makespan, c.waitP95, c.nodeHours)
		}
		if r.TasksFailed != 0 || r.ScaleUps != 0 || r.ScaleDowns != 0 {
			t.Errorf("%s: a static cluster resized or failed tasks: %+v", c.name, r)
		}
		// Cost follows node-hours: Standard_DS4_v2 is 1.5 DBU/h, Jobs $0.30.
		if want := c.nodeHours * 1.5 * 0.30; math.Abs(r.Cost-want) > 1e-9 || r.Currency != "USD" {
			t.Errorf("%s: cost %v %s, want %v USD", c.name, r.Cost, r.Currency, want)
		}
	}
}

func TestRunStartsWorkersColdOrFromThePool(t *testing.T) {
	// 16 tasks of 100 s on one 8-slot worker: the optimized policy asks for
	// a second at the first tick; the waiting 8 tasks start when it joins.
	tr := oneJob(Stage{Tasks: 16, TaskSeconds: 100})
	cases := []struct {
		name     string
		poolIdle int
		makespan time.Duration
	}{
		{"cold", 0, 120 * time.Second},
		{"from the pool", 1, 105 * time.Second},
	}
	for _, c := range cases {
		env := exactEnv()
		env.PoolMinIdle = c.poolIdle
		spec := jobSpec(1, 2, 8)
		spec.Policy = autoscale.Optimized
		r, err := Run(tr, Config{Spec: spec, Env: env})
		if err != nil {
			t.Fatal(err)
		}
		// Both workers are billed from request to the job's end, as is the driver.
		nodeSeconds := 3 * c.makespan.Seconds()
		if r.Makespan != c.makespan || r.ScaleUps != 1 || math.Abs(r.NodeSeconds-nodeSeconds) > 1e-6 || r.PeakWorkers != 2 {
			t.Errorf("%s: makespan %s, scale-ups %d, node-seconds %v, peak %d; want %s, 1, %v, 2", c.name, r.Makespan, r.ScaleUps, r.NodeSeconds, r.PeakWorkers, c.makespan, nodeSeconds)
		}
	}
}

// scripted removes the named workers at the given times: a policy made for
// testing the decommission machinery.
type scripted map[time.Duration][]autoscale.WorkerID

func (scripted) Name() string            { return "scripted" }
func (scripted) Lookback() time.Duration { return 0 }
func (p scripted) Decide(s autoscale.Snapshot, _ autoscale.History, now time.Time) autoscale.Decision {
	ids := p[now.Sub(Epoch)]
	var remove []autoscale.WorkerID
	for _, id := range ids {
		if w, ok := s.Worker(id); ok && w.State == autoscale.Running {
			remove = append(remove, id)
		}
	}
	return autoscale.Decision{Target: s.Size() - len(remove), Remove: remove, Reason: "scripted"}
}

func TestRunDecommissionsGracefully(t *testing.T) {
	// Stage 1 leaves 800 MiB of shuffle data on each worker; stage 2 runs
	// one task, on w1 or w2. At 15 s the idle one is removed: it migrates
	// its 800 MiB at 100 MiB/s (8 s), stops (5 s) and is billed until 28 s.
	tr := oneJob(Stage{Tasks: 16, TaskSeconds: 10, ShuffleMiB: 100}, Stage{Tasks: 1, TaskSeconds: 100})
	var idle autoscale.WorkerID
	var sawDecommissioning bool
	cfg := Config{Spec: jobSpec(2, 2, 8), InitialWorkers: 2, Env: exactEnv(), Observe: func(s autoscale.Snapshot, d autoscale.Decision) {
		if s.Time.Equal(Epoch.Add(14 * time.Second)) {
			for _, w := range s.Workers {
				if w.Idle() {
					idle = w.ID
				}
			}
		}
		for _, w := range s.Workers {
			if w.State == autoscale.Decommissioning {
				sawDecommissioning = true
				if w.ShuffleBytes != 800<<20 {
					t.Errorf("decommissioning %s holds %d bytes, want 800 MiB", w.ID, w.ShuffleBytes)
				}
			}
		}
	}}
	// Find which worker is idle by a first run, then remove it.
	if _, err := Run(tr, Config{Spec: cfg.Spec, Policy: scripted{}, InitialWorkers: 2, Env: cfg.Env, Observe: cfg.Observe}); err != nil {
		t.Fatal(err)
	}
	cfg.Policy = scripted{15 * time.Second: {idle}}
	r, err := Run(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !sawDecommissioning || r.TasksFailed != 0 || r.ShuffleLostBytes != 0 || r.ShuffleMigratedBytes != 800<<20 || r.Makespan != 110*time.Second {
		t.Errorf("decommissioned=%v failed=%d lost=%d migrated=%d makespan=%s", sawDecommissioning, r.TasksFailed, r.ShuffleLostBytes, r.ShuffleMigratedBytes, r.Makespan)
	}
	// Driver and the staying worker for 110 s, the removed one for 28 s.
	if want := 2*110.0 + 28; math.Abs(r.NodeSeconds-want) > 1e-6 {
		t.Errorf("node-seconds %v, want %v", r.NodeSeconds, want)
	}
}

func TestRunDecommissionTiming(t *testing.T) {
	// Two workers of one slot; w2 is removed at 15 s while it runs a
	// stage-2 task (w1 runs the other). As in Spark with
	// spark.decommission.enabled and no forceKillTimeout: the task is
	// never killed, shuffle files migrate while it runs (100 MiB/s), what
	// it writes afterwards migrates after it, and the worker stops 5 s
	// after both are done. The deadline only bounds the migration left
	// once the worker runs no task.
	cases := []struct {
		name     string
		trace    Trace
		deadline time.Duration
		// want: makespan, w2's release, failed tasks, lost and migrated MiB
		makespan, released time.Duration
		failed             int
		lostMiB, migMiB    int64
	}{
		{name: "a task longer than the deadline finishes",
			trace: oneJob(Stage{Tasks: 2, TaskSeconds: 10}, Stage{Tasks: 2, TaskSeconds: 100}, Stage{Tasks: 1, TaskSeconds: 50}), deadline: 30 * time.Second,
			makespan: 160 * time.Second, released: 115 * time.Second},
		{name: "shuffle held at the decommission migrates while the task runs",
			trace:    oneJob(Stage{Tasks: 2, TaskSeconds: 10, ShuffleMiB: 1000}, Stage{Tasks: 2, TaskSeconds: 100}, Stage{Tasks: 1, TaskSeconds: 50}),
			makespan: 160 * time.Second, released: 115 * time.Second, migMiB: 1000},
		{name: "shuffle written after the decommission migrates after the task",
			trace:    oneJob(Stage{Tasks: 2, TaskSeconds: 10}, Stage{Tasks: 2, TaskSeconds: 100, ShuffleMiB: 1000}, Stage{Tasks: 1, TaskSeconds: 50}),
			makespan: 160 * time.Second, released: 125 * time.Second, migMiB: 1000},
		{name: "the deadline, from the last task, bounds the migration",
			trace:    oneJob(Stage{Tasks: 2, TaskSeconds: 10}, Stage{Tasks: 2, TaskSeconds: 100, ShuffleMiB: 1000}, Stage{Tasks: 1, TaskSeconds: 50}),
			deadline: 5 * time.Second, makespan: 160 * time.Second, released: 115 * time.Second, lostMiB: 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := exactEnv()
			env.ForceKillAfter = c.deadline
			r, err := Run(c.trace, Config{Spec: jobSpec(2, 2, 1), Policy: scripted{15 * time.Second: {"w2"}}, InitialWorkers: 2, Env: env})
			if err != nil {
				t.Fatal(err)
			}
			if r.Makespan != c.makespan || r.TasksFailed != c.failed || r.ShuffleLostBytes != c.lostMiB<<20 || r.ShuffleMigratedBytes != c.migMiB<<20 {
				t.Errorf("makespan %s failed %d lost %d MiB migrated %d MiB; want %s %d %d %d", r.Makespan, r.TasksFailed,
					r.ShuffleLostBytes>>20, r.ShuffleMigratedBytes>>20, c.makespan, c.failed, c.lostMiB, c.migMiB)
			}
			// The driver and w1 for the makespan, w2 until its release.
			if want := 2*c.makespan.Seconds() + c.released.Seconds(); math.Abs(r.NodeSeconds-want) > 1e-6 {
				t.Errorf("node-seconds %v, want %v (w2 released at %s)", r.NodeSeconds, want, c.released)
			}
		})
	}
}

// badPolicy removes a worker while claiming to grow.
type badPolicy struct{}

func (badPolicy) Name() string            { return "bad" }
func (badPolicy) Lookback() time.Duration { return 0 }
func (badPolicy) Decide(s autoscale.Snapshot, _ autoscale.History, _ time.Time) autoscale.Decision {
	return autoscale.Decision{Target: s.Size() + 1, Remove: []autoscale.WorkerID{s.Workers[0].ID}}
}

func TestRunRejectsABadDecision(t *testing.T) {
	_, err := Run(oneJob(Stage{Tasks: 1, TaskSeconds: 1}), Config{Spec: jobSpec(1, 2, 1), Policy: badPolicy{}, Env: exactEnv()})
	if !errors.Is(err, autoscale.ErrBadDecision) {
		t.Fatalf("err = %v, want ErrBadDecision", err)
	}
}

func TestRunEndsAllPurposeClustersAfterTheirTail(t *testing.T) {
	env := exactEnv()
	env.IdleTail = 15 * time.Minute
	spec := jobSpec(1, 1, 8)
	spec.Kind = autoscale.AllPurpose
	r, err := Run(oneJob(Stage{Tasks: 1, TaskSeconds: 60}), Config{Spec: spec, Policy: autoscale.NewStatic(1), InitialWorkers: 1, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	if r.End != 16*time.Minute || math.Abs(r.NodeSeconds-2*16*60) > 1e-6 || r.Makespan != time.Minute {
		t.Errorf("end %s, node-seconds %v, makespan %s", r.End, r.NodeSeconds, r.Makespan)
	}
	// All-Purpose compute: $0.55 a DBU.
	if want := 2 * 16.0 / 60 * 1.5 * 0.55; math.Abs(r.Cost-want) > 1e-9 {
		t.Errorf("cost %v, want %v", r.Cost, want)
	}
}

func TestRunReportsAClusterThatNeverFinishes(t *testing.T) {
	// A job whose tasks never fit: min 0, and a policy that never grows.
	_, err := Run(oneJob(Stage{Tasks: 1, TaskSeconds: 1}), Config{Spec: jobSpec(0, 1, 1), Policy: autoscale.NewStatic(0), Env: exactEnv()})
	if err == nil {
		t.Fatal("a cluster without workers finished a job")
	}
}

func TestRunIsDeterministic(t *testing.T) {
	tr := loadTrace(t, "../../../bench/traces/bursty.trace")
	tr.Jobs = tr.Jobs[:40]
	spec := autoscale.Spec{Policy: autoscale.Optimized, MinWorkers: 2, MaxWorkers: 16, WorkerSlots: 8, Kind: autoscale.AllPurpose}
	run := func(seed uint64) Result {
		env := DefaultEnv()
		env.Seed = seed
		r, err := Run(tr, Config{Spec: spec, Env: env})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b, c := run(1), run(1), run(2)
	if diff := cmp.Diff(a, b, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("same seed, different runs (-first +second):\n%s", diff)
	}
	if a.NodeSeconds == c.NodeSeconds && a.TaskWaitP95 == c.TaskWaitP95 {
		t.Error("another seed gave the very same run: the seed is not used")
	}
}

func loadTrace(t *testing.T, path string) Trace {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := ParseTrace(f, path)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
