package jobs

import (
	"testing"
)

// harness drives plan() the way the executor does: clusters come up when
// asked, and tasks finish as the test says.
type harness struct {
	t   *testing.T
	rec *record
	now int64
	obs Observed
}

func newHarness(t *testing.T, tasks ...Task) *harness {
	rec := &record{Exec: map[string]*TaskExec{}, Clusters: map[string]RunCluster{}}
	rec.Run = Run{RunID: 100, State: RunState{LifeCycleState: Pending}}
	for i, tk := range tasks {
		rec.Run.Tasks = append(rec.Run.Tasks, RunTask{Task: tk, RunID: int64(101 + i), State: RunState{LifeCycleState: Pending}})
	}
	return &harness{t: t, rec: rec, now: 1_000_000, obs: Observed{Clusters: map[string]ClusterObs{}, Tasks: map[string]TaskObs{}}}
}

// step plans once and applies the actions as a cooperative world would:
// clusters asked for become ready at the next step.
func (h *harness) step() []Action {
	acts := plan(h.rec, h.obs, h.now)
	for _, a := range acts {
		switch a.Kind {
		case EnsureCluster:
			h.rec.Clusters[a.Ref] = RunCluster{ClusterID: "c-" + a.Ref, Owned: a.Ref[:5] != "exist"}
			h.obs.Clusters[a.Ref] = ClusterObs{Known: true, Ready: true}
		case StartTask:
			delete(h.obs.Tasks, a.TaskKey)
		case ReleaseClusters:
			h.rec.Released = true
		}
	}
	h.now += 1000
	return acts
}

func (h *harness) finish(key string, ok bool) {
	h.obs.Tasks[key] = TaskObs{Done: true, Success: ok, Message: map[bool]string{true: "", false: "boom"}[ok]}
}

func (h *harness) task(key string) RunTask {
	for _, t := range h.rec.Run.Tasks {
		if t.TaskKey == key {
			return t
		}
	}
	h.t.Fatalf("no task %s", key)
	return RunTask{}
}

func (h *harness) wantTask(key, life, result string) {
	h.t.Helper()
	got := h.task(key).State
	if got.LifeCycleState != life || got.ResultState != result {
		h.t.Fatalf("task %s = %s/%s (%s), want %s/%s", key, got.LifeCycleState, got.ResultState, got.StateMessage, life, result)
	}
}

func (h *harness) wantRun(life, result string) {
	h.t.Helper()
	got := h.rec.Run.State
	if got.LifeCycleState != life || got.ResultState != result {
		h.t.Fatalf("run = %s/%s (%s), want %s/%s", got.LifeCycleState, got.ResultState, got.StateMessage, life, result)
	}
}

func kinds(acts []Action) map[ActionKind]int {
	m := map[ActionKind]int{}
	for _, a := range acts {
		m[a.Kind]++
	}
	return m
}

func pyTask(key string, deps ...string) Task {
	t := Task{TaskKey: key, SparkPythonTask: &SparkPythonTask{PythonFile: "/x.py"}, NewCluster: []byte(`{}`)}
	for _, d := range deps {
		t.DependsOn = append(t.DependsOn, Dependency{TaskKey: d})
	}
	return t
}

func TestPlanSingleTaskSucceeds(t *testing.T) {
	h := newHarness(t, pyTask("a"))
	acts := h.step()
	if k := kinds(acts); k[EnsureCluster] != 1 || k[StartTask] != 0 {
		t.Fatalf("first step = %v", acts)
	}
	h.wantTask("a", Pending, "")
	acts = h.step()
	if k := kinds(acts); k[StartTask] != 1 || k[Notify] != 1 {
		t.Fatalf("second step = %v", acts)
	}
	h.wantTask("a", Running, "")
	h.wantRun(Running, "")
	if h.rec.Exec["a"].Handle != "run-101-attempt-0" {
		t.Errorf("handle = %q", h.rec.Exec["a"].Handle)
	}
	// Nothing happens while the task runs; planning again is a no-op.
	if acts := h.step(); len(acts) != 0 {
		t.Fatalf("idle step = %v", acts)
	}
	h.finish("a", true)
	acts = h.step()
	h.wantTask("a", Terminated, Success)
	h.wantRun(Terminated, Success)
	if k := kinds(acts); k[Notify] != 1 || k[ReleaseClusters] != 1 {
		t.Fatalf("final step = %v", acts)
	}
	if acts := h.step(); len(acts) != 0 {
		t.Fatalf("step after the end = %v", acts)
	}
	if h.rec.Run.EndTime == 0 || h.rec.Run.RunDuration <= 0 || h.rec.Run.SetupDuration <= 0 {
		t.Errorf("durations: %+v", h.rec.Run)
	}
}

func TestPlanDependenciesAndRunIf(t *testing.T) {
	cases := []struct {
		name   string
		runIf  string
		aOK    bool
		bLife  string
		bRes   string
		runRes string
	}{
		{"all success after success", "", true, Terminated, Success, Success},
		{"all success after failure", "ALL_SUCCESS", false, Skipped, UpstreamFailed, Failed},
		{"all done after failure", "ALL_DONE", false, Terminated, Success, SuccessWithFailures},
		{"none failed after failure", "NONE_FAILED", false, Skipped, UpstreamFailed, Failed},
		{"at least one failed after success", "AT_LEAST_ONE_FAILED", true, Skipped, Excluded, Success},
		{"all failed after failure", "ALL_FAILED", false, Terminated, Success, SuccessWithFailures},
		{"at least one success after failure", "AT_LEAST_ONE_SUCCESS", false, Skipped, Excluded, Failed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := pyTask("b", "a")
			b.RunIf = c.runIf
			h := newHarness(t, pyTask("a"), b)
			h.step()
			h.step()
			h.wantTask("b", Blocked, "")
			h.finish("a", c.aOK)
			h.step() // a ends; b is decided in the same step
			if h.task("b").State.LifeCycleState == Pending {
				h.step()
			}
			if h.task("b").State.LifeCycleState == Running {
				h.finish("b", true)
				h.step()
			}
			h.wantTask("b", c.bLife, c.bRes)
			h.wantRun(Terminated, c.runRes)
		})
	}
}

func TestPlanRetriesAfterTheMinimumInterval(t *testing.T) {
	a := pyTask("a")
	a.MaxRetries = 2
	a.MinRetryIntervalMillis = 5000
	h := newHarness(t, a)
	h.step()
	h.step()
	h.finish("a", false)
	h.step()
	h.wantTask("a", WaitingForRetry, "")
	// Too early for the retry.
	if acts := h.step(); kinds(acts)[StartTask] != 0 {
		t.Fatalf("retried before the interval: %v", acts)
	}
	h.now += 5000
	acts := h.step()
	if kinds(acts)[StartTask] != 1 || h.task("a").AttemptNumber != 1 || h.rec.Exec["a"].Handle != "run-101-attempt-1" {
		t.Fatalf("retry = %v attempt %d", acts, h.task("a").AttemptNumber)
	}
	h.finish("a", false)
	h.step()
	h.now += 5000
	h.step()
	h.finish("a", true)
	h.step()
	h.wantTask("a", Terminated, Success)
	h.wantRun(Terminated, Success)
	if n := len(h.rec.Exec["a"].Attempts); n != 3 {
		t.Errorf("%d attempts recorded", n)
	}
}

func TestPlanGivesUpAfterMaxRetries(t *testing.T) {
	a := pyTask("a")
	a.MaxRetries = 1
	h := newHarness(t, a)
	h.step()
	h.step()
	h.finish("a", false)
	h.step()
	h.step()
	h.finish("a", false)
	h.step()
	h.wantTask("a", Terminated, Failed)
	h.wantRun(Terminated, Failed)
}

func TestPlanTaskTimeoutCancelsAndRetriesOnTimeout(t *testing.T) {
	a := pyTask("a")
	a.TimeoutSeconds = 10
	a.MaxRetries = 1
	a.RetryOnTimeout = true
	h := newHarness(t, a)
	h.step()
	h.step()
	h.now += 10_000
	acts := h.step()
	if kinds(acts)[CancelTask] != 1 {
		t.Fatalf("no cancel at the deadline: %v", acts)
	}
	if acts := h.step(); kinds(acts)[CancelTask] != 0 {
		t.Fatalf("cancel sent twice: %v", acts)
	}
	h.finish("a", false) // the runner reports the killed attempt
	h.step()
	h.wantTask("a", WaitingForRetry, "")
	h.step()
	h.finish("a", true)
	h.step()
	h.wantRun(Terminated, Success)

	// Without retry_on_timeout, a timeout is final.
	b := pyTask("b")
	b.TimeoutSeconds = 1
	b.MaxRetries = 3
	h = newHarness(t, b)
	h.step()
	h.step()
	h.now += 1000
	h.step()
	h.finish("b", false)
	h.step()
	h.wantTask("b", Terminated, TimedOut)
	h.wantRun(Terminated, Failed)
}

func TestPlanCancelStopsRunningAndSkipsPendingTasks(t *testing.T) {
	h := newHarness(t, pyTask("a"), pyTask("b", "a"))
	h.step()
	h.step()
	h.rec.CancelRequested = true
	acts := h.step()
	if kinds(acts)[CancelTask] != 1 {
		t.Fatalf("cancel = %v", acts)
	}
	h.wantTask("b", Skipped, Canceled)
	h.wantRun(Terminating, "")
	h.finish("a", false)
	h.step()
	h.wantTask("a", Terminated, Canceled)
	h.wantRun(Terminated, Canceled)
	if !h.rec.Run.State.UserCancelledOrTimedout {
		t.Error("user_cancelled_or_timedout not set")
	}
}

func TestPlanRunTimeout(t *testing.T) {
	h := newHarness(t, pyTask("a"))
	h.rec.Deadline = h.now + 3000
	h.step()
	h.step()
	h.now += 5000
	if acts := h.step(); kinds(acts)[CancelTask] != 1 {
		t.Fatalf("no cancel at the run deadline: %v", acts)
	}
	h.finish("a", false)
	h.step()
	h.wantRun(Terminated, TimedOut)
}

func TestPlanClusterFailureFailsTheTask(t *testing.T) {
	h := newHarness(t, pyTask("a"), pyTask("b", "a"))
	h.obs.Clusters["task:a"] = ClusterObs{Known: true, Failed: true, Message: "INIT_SCRIPT_FAILURE: script exited 1"}
	h.step()
	h.wantTask("a", InternalError, Failed)
	h.step()
	h.wantTask("b", Skipped, UpstreamFailed)
	h.wantRun(Terminated, Failed)
}

func TestPlanWaitsForQueuedRunsToBeAdmitted(t *testing.T) {
	h := newHarness(t, pyTask("a"))
	h.rec.Run.State = RunState{LifeCycleState: Queued}
	if acts := h.step(); len(acts) != 0 {
		t.Fatalf("queued run planned: %v", acts)
	}
}

func TestAdmitOldestFirstUpToTheLimit(t *testing.T) {
	cases := []struct {
		queued        []int64
		active, limit int
		want          []int64
	}{
		{[]int64{5, 3, 9}, 0, 1, []int64{3}},
		{[]int64{5, 3, 9}, 1, 1, nil},
		{[]int64{5, 3, 9}, 1, 3, []int64{3, 5}},
		{[]int64{5, 3, 9}, 0, 10, []int64{3, 5, 9}},
		{nil, 0, 1, nil},
		{[]int64{1}, 0, 0, nil}, // max_concurrent_runs 0: nothing runs
	}
	for _, c := range cases {
		got := admit(append([]int64(nil), c.queued...), c.active, c.limit)
		if len(got) != len(c.want) {
			t.Errorf("admit(%v, %d, %d) = %v, want %v", c.queued, c.active, c.limit, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("admit(%v, %d, %d) = %v, want %v", c.queued, c.active, c.limit, got, c.want)
			}
		}
	}
}
