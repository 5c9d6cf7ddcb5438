package jobs

import (
	"fmt"
	"sort"
)

// record is a run as stored: the API's Run plus the executor's private
// state. It is one document, so a step of the run is one transaction.
type record struct {
	Run  Run                  `json:"run"`
	Spec Spec                 `json:"spec"` // the job's settings when the run was triggered
	Exec map[string]*TaskExec `json:"exec"` // by task key
	// Params are the parameters the run was triggered with.
	Params runParams `json:"params"`
	// Clusters are the clusters this run uses, by cluster reference
	// (clusterRef), and whether the run created them (and must terminate them).
	Clusters map[string]RunCluster `json:"clusters,omitempty"`
	// CancelRequested is set by runs/cancel; the planner winds the run down.
	CancelRequested bool  `json:"cancel_requested,omitempty"`
	Deadline        int64 `json:"deadline,omitempty"` // ms, the run's timeout
	TimedOut        bool  `json:"timed_out,omitempty"`
	// Notified records the webhook events already sent (at most once each).
	Notified map[string]bool `json:"notified,omitempty"`
	// Released records the run-owned clusters already terminated.
	Released bool `json:"released,omitempty"`
}

// RunCluster is a cluster a run uses.
type RunCluster struct {
	ClusterID string `json:"cluster_id,omitempty"`
	Owned     bool   `json:"owned"` // created for this run: terminated when it ends
}

// clusterRef names the cluster a task runs on: an existing cluster, a job
// cluster shared by tasks, or the task's own new cluster.
func clusterRef(t Task) string {
	switch {
	case t.ExistingClusterID != "":
		return "existing:" + t.ExistingClusterID
	case t.JobClusterKey != "":
		return "job:" + t.JobClusterKey
	default:
		return "task:" + t.TaskKey
	}
}

// ClusterObs is what the executor observed of a cluster before planning.
type ClusterObs struct {
	Known   bool // the run has a cluster for this reference
	Ready   bool // RUNNING and accepting work
	Failed  bool // cannot run tasks (ERROR, or terminated for good)
	Message string
}

// TaskObs is what the executor observed of a task attempt in progress.
type TaskObs struct {
	Done    bool
	Success bool
	Message string
	Output  TaskOutput
}

// Observed is the executor's view of the world for one planning step.
type Observed struct {
	Clusters map[string]ClusterObs // by cluster reference
	Tasks    map[string]TaskObs    // by task key, for attempts in progress
}

// ActionKind is what the executor must do.
type ActionKind string

const (
	// EnsureCluster: create the run's cluster for Ref (or start an existing
	// one that is terminated).
	EnsureCluster ActionKind = "ensure_cluster"
	// StartTask: start the attempt named by the task's handle on its cluster.
	StartTask ActionKind = "start_task"
	// CancelTask: stop the attempt in progress.
	CancelTask ActionKind = "cancel_task"
	// ReleaseClusters: terminate the clusters the run created.
	ReleaseClusters ActionKind = "release_clusters"
	// Notify: send the run's webhooks for Event (on_start, on_success, on_failure).
	Notify ActionKind = "notify"
)

// Action is one thing the executor does after a planning step.
type Action struct {
	Kind    ActionKind
	TaskKey string
	Ref     string
	Event   string
}

// plan advances a run by one step: it reads the observations, changes the
// run's states (in rec) and returns the actions to carry out. It does no
// I/O and reads no clock: now is epoch milliseconds. Calling it again with
// the same inputs changes nothing more (it is re-entrant).
func plan(rec *record, obs Observed, now int64) []Action {
	r := &rec.Run
	if Terminal(r.State.LifeCycleState) {
		return releaseIfNeeded(rec)
	}
	if r.State.LifeCycleState == Queued || r.State.LifeCycleState == Blocked {
		return nil // admission is decided across runs (admit)
	}
	var acts []Action
	if r.StartTime == 0 {
		r.StartTime = now
	}
	if rec.Deadline > 0 && now >= rec.Deadline && !rec.TimedOut {
		rec.TimedOut = true
	}
	stopping := rec.CancelRequested || rec.TimedOut

	byKey := map[string]*RunTask{}
	for i := range r.Tasks {
		byKey[r.Tasks[i].TaskKey] = &r.Tasks[i]
	}
	keys := make([]string, 0, len(r.Tasks))
	for _, t := range r.Tasks {
		keys = append(keys, t.TaskKey)
	}
	// Tasks in dependency order, so one step carries a result downstream.
	order := topoOrder(r.Tasks)

	for _, key := range order {
		t := byKey[key]
		ex := rec.Exec[key]
		if ex == nil {
			ex = &TaskExec{}
			rec.Exec[key] = ex
		}
		switch t.State.LifeCycleState {
		case Terminated, Skipped, InternalError:
			continue
		case Running, Terminating:
			o, seen := obs.Tasks[key]
			switch {
			case seen && o.Done:
				ex.Output = o.Output
				result, msg := Success, "Task succeeded."
				if !o.Success {
					result, msg = Failed, nonEmpty(o.Message, "Task failed.")
				}
				if ex.TimedOut {
					result, msg = TimedOut, fmt.Sprintf("Task timed out after %d seconds.", t.TimeoutSeconds)
				}
				if stopping && !o.Success && !ex.TimedOut {
					result, msg = Canceled, "Run was canceled."
					if rec.TimedOut && !rec.CancelRequested {
						result, msg = TimedOut, "Run timed out."
					}
				}
				finishAttempt(t, ex, result, msg, now, stopping)
			case stopping || (ex.Deadline > 0 && now >= ex.Deadline):
				if !stopping {
					ex.TimedOut = true
				}
				if !ex.CancelSent {
					ex.CancelSent = true
					t.State.LifeCycleState = Terminating
					acts = append(acts, Action{Kind: CancelTask, TaskKey: key})
				}
			}
		case WaitingForRetry:
			if stopping {
				setTask(t, Terminated, Canceled, "Run was canceled before the retry.", now)
				continue
			}
			if now < ex.NextAttempt {
				continue
			}
			acts = append(acts, startOrWait(rec, t, ex, obs, now)...)
		default: // Pending, Blocked: not started yet
			if stopping {
				result := Canceled
				if rec.TimedOut && !rec.CancelRequested {
					result = TimedOut
				}
				setTask(t, Skipped, result, "The run ended before this task started.", now)
				continue
			}
			ready, run, outcome := evalDeps(*t, byKey)
			if !ready {
				t.State = RunState{LifeCycleState: Blocked, StateMessage: "Waiting for upstream tasks."}
				continue
			}
			if !run {
				setTask(t, Skipped, outcome, runIfMessage(t.RunIf, outcome), now)
				continue
			}
			acts = append(acts, startOrWait(rec, t, ex, obs, now)...)
		}
	}

	// Run-level state.
	started := false
	all := true
	for _, t := range r.Tasks {
		if t.State.LifeCycleState == Running || t.State.LifeCycleState == Terminating || t.StartTime > 0 {
			started = true
		}
		if !Terminal(t.State.LifeCycleState) {
			all = false
		}
	}
	if started && r.State.LifeCycleState == Pending {
		r.State = RunState{LifeCycleState: Running, StateMessage: "In run."}
		r.SetupDuration = now - r.StartTime
		acts = append(acts, notify(rec, "on_start")...)
	}
	if stopping && !all && r.State.LifeCycleState != Terminating {
		r.State = RunState{LifeCycleState: Terminating, StateMessage: "Stopping the run's tasks.", UserCancelledOrTimedout: true}
	}
	if all {
		finishRun(rec, now)
		event := "on_success"
		if r.State.ResultState != Success && r.State.ResultState != SuccessWithFailures {
			event = "on_failure"
		}
		acts = append(acts, notify(rec, event)...)
		acts = append(acts, releaseIfNeeded(rec)...)
	}
	_ = keys
	return acts
}

// startOrWait starts a task's next attempt if its cluster is ready, asks for
// the cluster otherwise, and fails the task if the cluster cannot come up.
func startOrWait(rec *record, t *RunTask, ex *TaskExec, obs Observed, now int64) []Action {
	ref := clusterRef(t.Task)
	c := obs.Clusters[ref]
	switch {
	case c.Failed:
		setTask(t, InternalError, Failed, nonEmpty(c.Message, "The task's cluster could not start."), now)
		return nil
	case !c.Known || !c.Ready:
		t.State = RunState{LifeCycleState: Pending, StateMessage: nonEmpty(c.Message, "Waiting for the cluster.")}
		return []Action{{Kind: EnsureCluster, TaskKey: t.TaskKey, Ref: ref}}
	}
	t.AttemptNumber = len(ex.Attempts)
	ex.Handle = fmt.Sprintf("run-%d-attempt-%d", t.RunID, t.AttemptNumber)
	ex.ClusterID = rec.Clusters[ref].ClusterID
	ex.CancelSent, ex.TimedOut = false, false
	ex.Output = TaskOutput{}
	ex.Deadline = 0
	if t.TimeoutSeconds > 0 {
		ex.Deadline = now + t.TimeoutSeconds*1000
	}
	t.StartTime = now
	t.EndTime = 0
	t.ClusterInstance = &ClusterInstance{ClusterID: ex.ClusterID}
	t.State = RunState{LifeCycleState: Running, StateMessage: "In run."}
	return []Action{{Kind: StartTask, TaskKey: t.TaskKey, Ref: ref}}
}

// finishAttempt records a finished attempt and decides between a retry and
// the task's final state.
func finishAttempt(t *RunTask, ex *TaskExec, result, msg string, now int64, stopping bool) {
	ex.Attempts = append(ex.Attempts, Attempt{Number: t.AttemptNumber, Result: result, Message: msg, StartTime: t.StartTime, EndTime: now})
	ex.Handle = ""
	retryable := (result == Failed) || (result == TimedOut && t.RetryOnTimeout && ex.TimedOut)
	// max_retries -1 retries without end, as in Databricks.
	if retryable && !stopping && (t.MaxRetries < 0 || len(ex.Attempts) <= t.MaxRetries) {
		t.State = RunState{LifeCycleState: WaitingForRetry, StateMessage: fmt.Sprintf("Attempt %d %s: %s Retrying.", t.AttemptNumber+1, lower(result), msg)}
		ex.NextAttempt = now + max(t.MinRetryIntervalMillis, 0)
		t.EndTime = now
		return
	}
	setTask(t, Terminated, result, msg, now)
	t.ExecutionDuration = now - t.StartTime
	t.State.UserCancelledOrTimedout = result == Canceled || result == TimedOut
}

func lower(s string) string {
	switch s {
	case Failed:
		return "failed"
	case TimedOut:
		return "timed out"
	}
	return s
}

func setTask(t *RunTask, life, result, msg string, now int64) {
	t.State = RunState{LifeCycleState: life, ResultState: result, StateMessage: msg}
	if t.EndTime == 0 || life == Terminated || life == Skipped || life == InternalError {
		t.EndTime = now
	}
}

// evalDeps reports whether all upstream tasks are done, and if so whether
// the task runs (its run_if holds) or with which result it is skipped.
func evalDeps(t RunTask, byKey map[string]*RunTask) (ready, run bool, skipResult string) {
	if len(t.DependsOn) == 0 {
		return true, true, ""
	}
	var succeeded, failed, canceled, done int
	for _, d := range t.DependsOn {
		up, ok := byKey[d.TaskKey]
		if !ok || !Terminal(up.State.LifeCycleState) {
			return false, false, ""
		}
		done++
		switch up.State.ResultState {
		case Success, SuccessWithFailures:
			succeeded++
		case Excluded:
			// An excluded task counts as neither success nor failure.
		case Canceled, UpstreamCanceled:
			canceled++
		default:
			failed++
		}
	}
	n := len(t.DependsOn)
	ok := false
	switch t.RunIf {
	case "", "ALL_SUCCESS":
		ok = failed == 0 && canceled == 0 && succeeded+countExcluded(t, byKey) == n
	case "ALL_DONE":
		ok = true
	case "NONE_FAILED":
		ok = failed == 0 && canceled == 0
	case "AT_LEAST_ONE_SUCCESS":
		ok = succeeded > 0
	case "ALL_FAILED":
		ok = failed == n
	case "AT_LEAST_ONE_FAILED":
		ok = failed > 0
	}
	if ok {
		return true, true, ""
	}
	switch {
	case canceled > 0 && (t.RunIf == "" || t.RunIf == "ALL_SUCCESS" || t.RunIf == "NONE_FAILED"):
		return true, false, UpstreamCanceled
	case failed > 0 && (t.RunIf == "" || t.RunIf == "ALL_SUCCESS" || t.RunIf == "NONE_FAILED"):
		return true, false, UpstreamFailed
	}
	return true, false, Excluded
}

func countExcluded(t RunTask, byKey map[string]*RunTask) int {
	n := 0
	for _, d := range t.DependsOn {
		if up := byKey[d.TaskKey]; up != nil && up.State.ResultState == Excluded {
			n++
		}
	}
	return n
}

func runIfMessage(runIf, result string) string {
	switch result {
	case UpstreamFailed:
		return "An upstream task failed."
	case UpstreamCanceled:
		return "An upstream task was canceled."
	}
	if runIf == "" {
		runIf = "ALL_SUCCESS"
	}
	return fmt.Sprintf("Excluded: the condition run_if=%s did not hold.", runIf)
}

// finishRun sets the run's final state from its tasks.
func finishRun(rec *record, now int64) {
	r := &rec.Run
	result, msg := runResult(rec)
	r.State = RunState{LifeCycleState: Terminated, ResultState: result, StateMessage: msg,
		UserCancelledOrTimedout: result == Canceled || result == TimedOut}
	r.EndTime = now
	r.RunDuration = now - r.StartTime
	if r.SetupDuration == 0 && r.StartTime > 0 {
		first := int64(0)
		for _, t := range r.Tasks {
			if t.StartTime > 0 && (first == 0 || t.StartTime < first) {
				first = t.StartTime
			}
		}
		if first > 0 {
			r.SetupDuration = first - r.StartTime
		}
	}
	r.ExecutionDuration = max(0, r.RunDuration-r.SetupDuration)
}

// runResult is the run's result: canceled or timed out if it was stopped;
// success if every task succeeded (or was excluded); success with failures
// if some failed but the leaf tasks succeeded (excluded leaves aside, and at
// least one leaf ran); failed otherwise.
func runResult(rec *record) (string, string) {
	r := rec.Run
	if rec.CancelRequested {
		return Canceled, "Run was canceled."
	}
	if rec.TimedOut {
		return TimedOut, "Run timed out."
	}
	var failedKeys []string
	for _, t := range r.Tasks {
		switch t.State.ResultState {
		case Success, Excluded:
		default:
			failedKeys = append(failedKeys, t.TaskKey)
		}
	}
	if len(failedKeys) == 0 {
		return Success, ""
	}
	// Leaves: tasks nothing depends on.
	hasChild := map[string]bool{}
	for _, t := range r.Tasks {
		for _, d := range t.DependsOn {
			hasChild[d.TaskKey] = true
		}
	}
	leavesOK, leafSucceeded := true, false
	for _, t := range r.Tasks {
		if hasChild[t.TaskKey] {
			continue
		}
		switch t.State.ResultState {
		case Success:
			leafSucceeded = true
		case Excluded:
		default:
			leavesOK = false
		}
	}
	leavesOK = leavesOK && leafSucceeded
	sort.Strings(failedKeys)
	if leavesOK {
		return SuccessWithFailures, fmt.Sprintf("Some tasks failed (%s), but every leaf task succeeded.", joinKeys(failedKeys))
	}
	if len(r.Tasks) == 1 {
		return Failed, r.Tasks[0].State.StateMessage
	}
	return Failed, fmt.Sprintf("Tasks that did not succeed: %s.", joinKeys(failedKeys))
}

func joinKeys(ks []string) string {
	s := ""
	for i, k := range ks {
		if i > 0 {
			s += ", "
		}
		s += k
	}
	return s
}

func notify(rec *record, event string) []Action {
	if rec.Notified == nil {
		rec.Notified = map[string]bool{}
	}
	if rec.Notified[event] {
		return nil
	}
	rec.Notified[event] = true
	return []Action{{Kind: Notify, Event: event}}
}

func releaseIfNeeded(rec *record) []Action {
	if rec.Released {
		return nil
	}
	for _, c := range rec.Clusters {
		if c.Owned && c.ClusterID != "" {
			return []Action{{Kind: ReleaseClusters}}
		}
	}
	return nil
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// topoOrder returns task keys with every task after its dependencies
// (validation has refused cycles); ties keep the tasks' order.
func topoOrder(tasks []RunTask) []string {
	indeg := map[string]int{}
	children := map[string][]string{}
	for _, t := range tasks {
		indeg[t.TaskKey] += 0
		for _, d := range t.DependsOn {
			indeg[t.TaskKey]++
			children[d.TaskKey] = append(children[d.TaskKey], t.TaskKey)
		}
	}
	var order, queue []string
	for _, t := range tasks {
		if indeg[t.TaskKey] == 0 {
			queue = append(queue, t.TaskKey)
		}
	}
	for len(queue) > 0 {
		k := queue[0]
		queue = queue[1:]
		order = append(order, k)
		for _, c := range children[k] {
			indeg[c]--
			if indeg[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	return order
}

// admit decides which queued runs of a job start: the oldest first, while
// the job has fewer active runs than its limit.
func admit(queued []int64, active, limit int) []int64 {
	sort.Slice(queued, func(i, j int) bool { return queued[i] < queued[j] })
	free := limit - active
	if free <= 0 {
		return nil
	}
	if free > len(queued) {
		free = len(queued)
	}
	return queued[:free]
}
