package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Run runs the executor and the scheduler until ctx ends. Every state the
// loops act on is in the store, so after a restart they pick up every run
// where it was: attempts in progress are asked for their status by handle,
// never started again.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.Tick)
	defer t.Stop()
	defer s.notifier.wait()
	for {
		if s.SchedulingPaused == nil || !s.SchedulingPaused() {
			if err := s.schedule(ctx); err != nil && ctx.Err() == nil {
				s.Log.Error("scheduler", "err", err)
			}
		}
		if err := s.step(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("executor", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// step admits queued runs and advances every run in progress once.
func (s *Service) step(ctx context.Context) error {
	var entries []activeEntry
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindActive, "", func(_ string, e activeEntry) error {
			if e.Queued {
				// A queued run moves only when admitted, or canceled.
				if ok, err := store.Exists(tx, kindCancel, runKey(e.RunID)); err != nil || !ok {
					entries = append(entries, e)
					return err
				}
				e.Queued = false
			}
			entries = append(entries, e)
			return nil
		})
	})
	if err != nil {
		return err
	}
	admitted, err := s.admitQueued(ctx, entries)
	if err != nil {
		return err
	}
	progressed := len(admitted) > 0
	for _, e := range entries {
		if ctx.Err() != nil {
			return nil
		}
		if e.Queued && !admitted[e.RunID] {
			continue
		}
		moved, err := s.stepRun(ctx, e)
		if err != nil && ctx.Err() == nil {
			s.Log.Error("run step", "run_id", e.RunID, "err", err)
		}
		progressed = progressed || moved
	}
	// A step that moved a run often enables the next one (a cluster is
	// there, so the task can start; a run ended, so a queued one may start):
	// go again at once instead of waiting for the tick.
	if progressed {
		s.nudge()
	}
	return nil
}

// admitQueued moves queued runs to pending, oldest first, while their job
// has room under max_concurrent_runs. It reads only the index and the
// records of the runs it admits.
func (s *Service) admitQueued(ctx context.Context, entries []activeEntry) (map[int64]bool, error) {
	type jobRuns struct {
		queued  []int64
		running int
	}
	byJob := map[int64]*jobRuns{}
	for _, e := range entries {
		jr := byJob[e.JobID]
		if jr == nil {
			jr = &jobRuns{}
			byJob[e.JobID] = jr
		}
		if e.Queued {
			jr.queued = append(jr.queued, e.RunID)
		} else {
			jr.running++
		}
	}
	admitted := map[int64]bool{}
	for jobID, jr := range byJob {
		if len(jr.queued) == 0 {
			continue
		}
		_, err := s.Store.Update(ctx, func(tx store.Tx) error {
			limit := 1
			if j, err := store.Get[Job](tx, kindJob, jobKey(jobID)); err == nil {
				if sp, err := specOf(j.Settings); err == nil {
					limit = sp.ConcurrencyLimit()
				}
			}
			now := tx.Now().UnixMilli()
			for _, id := range admit(jr.queued, jr.running, limit) {
				rec, err := store.Get[record](tx, kindRun, runKey(id))
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if rec.Run.State.LifeCycleState != Queued {
					continue
				}
				rec.Run.QueueDuration = now - rec.Run.StartTime
				rec.Run.StartTime = now
				rec.Run.State = RunState{LifeCycleState: Pending, StateMessage: "Waiting for a cluster."}
				if rec.Spec.TimeoutSeconds > 0 {
					rec.Deadline = now + rec.Spec.TimeoutSeconds*1000
				}
				if err := store.Put(tx, kindRun, runKey(id), rec); err != nil {
					return err
				}
				if err := putActive(tx, &rec); err != nil {
					return err
				}
				admitted[id] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return admitted, nil
}

// stepRun observes a run's clusters and attempts, plans, stores the new
// state and then carries out the actions. The state is stored first: an
// action lost to a crash is planned again (every action is idempotent),
// while one done twice is not possible for attempts (handles) and clusters
// (creation keys).
func (s *Service) stepRun(ctx context.Context, e activeEntry) (bool, error) {
	id := e.RunID
	var rec record
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		rec, err = store.Get[record](tx, kindRun, runKey(id))
		if err != nil {
			return err
		}
		if ok, err := store.Exists(tx, kindCancel, runKey(id)); err != nil {
			return err
		} else if ok {
			rec.CancelRequested = true
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		_, err = s.Store.Update(ctx, func(tx store.Tx) error { return deleteActive(tx, e.JobID, id) })
		return false, err
	}
	if err != nil {
		return false, err
	}
	if rec.Exec == nil {
		rec.Exec = map[string]*TaskExec{}
	}
	if rec.Clusters == nil {
		rec.Clusters = map[string]RunCluster{}
	}
	if rec.Run.State.LifeCycleState == Queued && rec.CancelRequested {
		now := s.Now().UnixMilli()
		rec.Run.State = RunState{LifeCycleState: Terminated, ResultState: Canceled, StateMessage: "Run was canceled while queued.", UserCancelledOrTimedout: true}
		rec.Run.EndTime = now
		for i := range rec.Run.Tasks {
			setTask(&rec.Run.Tasks[i], Skipped, Canceled, "The run was canceled before this task started.", now)
		}
	}
	obs := s.observe(ctx, &rec)
	before, _ := jsonOf(rec)
	acts := plan(&rec, obs, s.Now().UnixMilli())
	after, _ := jsonOf(rec)
	done := Terminal(rec.Run.State.LifeCycleState) && releaseIfNeeded(&rec) == nil
	if before != after || done {
		if err := s.save(ctx, &rec, done); err != nil {
			return false, err
		}
	}
	// Only a change of state counts as progress: asking again for a cluster
	// that is still starting must not spin the loop.
	return before != after, s.act(ctx, &rec, acts)
}

// save stores the run record; a finished run leaves the active index.
func (s *Service) save(ctx context.Context, rec *record, done bool) error {
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		// A run deleted meanwhile stays deleted.
		if ok, err := store.Exists(tx, kindRun, runKey(rec.Run.RunID)); err != nil || !ok {
			return err
		}
		if err := store.Put(tx, kindRun, runKey(rec.Run.RunID), rec); err != nil {
			return err
		}
		if done {
			if err := deleteActive(tx, rec.Run.JobID, rec.Run.RunID); err != nil {
				return err
			}
			return deleteIfPresent(tx, kindCancel, runKey(rec.Run.RunID))
		}
		return putActive(tx, rec)
	})
	return err
}

func deleteIfPresent(tx store.Tx, kind store.Kind, key string) error {
	if err := tx.Delete(kind, key); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// observe asks compute about the run's clusters and attempts in progress.
func (s *Service) observe(ctx context.Context, rec *record) Observed {
	obs := Observed{Clusters: map[string]ClusterObs{}, Tasks: map[string]TaskObs{}}
	if Terminal(rec.Run.State.LifeCycleState) || rec.Run.State.LifeCycleState == Queued {
		return obs
	}
	for ref, c := range rec.Clusters {
		if c.ClusterID == "" {
			continue
		}
		if s.Compute == nil {
			obs.Clusters[ref] = ClusterObs{Known: true, Failed: true, Message: "This region has no compute to run tasks on."}
			continue
		}
		co, err := s.Compute.ClusterStatus(ctx, c.ClusterID)
		if err != nil {
			s.Log.Warn("cluster status", "run_id", rec.Run.RunID, "cluster_id", c.ClusterID, "err", err)
			co = ClusterObs{Message: "Waiting for the cluster."}
		}
		co.Known = true
		obs.Clusters[ref] = co
	}
	for _, t := range rec.Run.Tasks {
		ex := rec.Exec[t.TaskKey]
		if ex == nil || ex.Handle == "" || (t.State.LifeCycleState != Running && t.State.LifeCycleState != Terminating) {
			continue
		}
		if s.Runner == nil {
			obs.Tasks[t.TaskKey] = TaskObs{Done: true, Message: "This region has no task runner."}
			continue
		}
		o, err := s.Runner.Status(ctx, ex.ClusterID, ex.Handle)
		if err != nil {
			s.Log.Warn("task status", "run_id", t.RunID, "err", err)
			continue
		}
		obs.Tasks[t.TaskKey] = o
	}
	return obs
}

// act carries out a step's actions.
func (s *Service) act(ctx context.Context, rec *record, acts []Action) error {
	for _, a := range acts {
		var err error
		switch a.Kind {
		case EnsureCluster:
			err = s.ensureCluster(ctx, rec, a)
		case StartTask:
			err = s.startTask(ctx, rec, a.TaskKey)
		case CancelTask:
			if ex := rec.Exec[a.TaskKey]; ex != nil && ex.Handle != "" && s.Runner != nil {
				err = s.Runner.Cancel(ctx, ex.ClusterID, ex.Handle)
			}
		case ReleaseClusters:
			err = s.release(ctx, rec)
		case Notify:
			s.sendWebhooks(ctx, rec, a.Event)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", a.Kind, a.TaskKey, err)
		}
	}
	return nil
}

func (s *Service) owner(rec *record) principal.Principal {
	name := rec.Run.CreatorUserName
	if rec.Spec.RunAs != nil && rec.Spec.RunAs.UserName != "" {
		name = rec.Spec.RunAs.UserName
	}
	return principal.Principal{Name: name, Kind: principal.User}
}

// ensureCluster gives a task's cluster reference a cluster: an existing
// cluster is started if needed; a job or task cluster is created once, by a
// key that makes creation idempotent across crashes.
func (s *Service) ensureCluster(ctx context.Context, rec *record, a Action) error {
	if s.Compute == nil {
		rec.Clusters[a.Ref] = RunCluster{ClusterID: "none"}
		return s.save(ctx, rec, false)
	}
	if c, ok := rec.Clusters[a.Ref]; ok && c.ClusterID != "" {
		if !c.Owned {
			return s.Compute.EnsureRunning(ctx, c.ClusterID)
		}
		return nil
	}
	var task Task
	for _, t := range rec.Run.Tasks {
		if t.TaskKey == a.TaskKey {
			task = t.Task
		}
	}
	var c RunCluster
	switch {
	case task.ExistingClusterID != "" || (task.SQLTask != nil && len(task.NewCluster) == 0 && task.JobClusterKey == ""):
		id := task.ExistingClusterID
		if id == "" {
			id = task.SQLTask.WarehouseID
		}
		if err := s.Compute.EnsureRunning(ctx, id); err != nil {
			return err
		}
		c = RunCluster{ClusterID: id}
	default:
		spec := task.NewCluster
		if task.JobClusterKey != "" {
			for _, jc := range rec.Run.JobClusters {
				if jc.JobClusterKey == task.JobClusterKey {
					spec = jc.NewCluster
				}
			}
		}
		name := fmt.Sprintf("job-%d-run-%d", rec.Run.JobID, rec.Run.RunID)
		key := fmt.Sprintf("run-%d/%s", rec.Run.RunID, a.Ref)
		id, err := s.Compute.CreateJobCluster(ctx, key, spec, name, s.owner(rec))
		if err != nil {
			return err
		}
		c = RunCluster{ClusterID: id, Owned: true}
	}
	rec.Clusters[a.Ref] = c
	return s.save(ctx, rec, false)
}

func (s *Service) startTask(ctx context.Context, rec *record, key string) error {
	if s.Runner == nil {
		return nil // observe reports the attempt failed
	}
	var t RunTask
	for _, rt := range rec.Run.Tasks {
		if rt.TaskKey == key {
			t = rt
		}
	}
	ex := rec.Exec[key]
	widgets, args, named, jobParams := launchParams(rec, t.Task)
	return s.Runner.Start(ctx, Launch{
		Handle: ex.Handle, ClusterID: ex.ClusterID, JobID: rec.Run.JobID, RunID: rec.Run.RunID, TaskRunID: t.RunID,
		TaskKey: key, Attempt: t.AttemptNumber, Task: t.Task, Widgets: widgets, Args: args, Named: named,
		JobParams: jobParams, RunAs: s.owner(rec).Name, TaskValues: taskValuesOf(rec),
	})
}

// release terminates the clusters the run created, then marks it released.
func (s *Service) release(ctx context.Context, rec *record) error {
	if s.Compute != nil {
		for _, c := range rec.Clusters {
			if c.Owned && c.ClusterID != "" {
				if err := s.Compute.Terminate(ctx, c.ClusterID); err != nil {
					return err
				}
			}
		}
	}
	rec.Released = true
	return s.save(ctx, rec, Terminal(rec.Run.State.LifeCycleState))
}

func (s *Service) sendWebhooks(ctx context.Context, rec *record, event string) {
	var ids []string
	add := func(w *WebhookNotifications) {
		if w == nil {
			return
		}
		list := map[string][]Webhook{"on_start": w.OnStart, "on_success": w.OnSuccess, "on_failure": w.OnFailure}[event]
		for _, h := range list {
			ids = append(ids, h.ID)
		}
	}
	add(rec.Spec.WebhookNotifications)
	if len(ids) == 0 {
		return
	}
	p := webhookPayload{EventType: "jobs." + event, WorkspaceID: s.WorkspaceID,
		Run: map[string]any{"run_id": rec.Run.RunID, "run_name": rec.Run.RunName, "state": rec.Run.State}}
	if rec.Run.JobID != 0 {
		p.Job = map[string]any{"job_id": rec.Run.JobID, "name": rec.Spec.Name}
	}
	s.notifier.send(ctx, ids, p)
}

func jsonOf(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// taskValuesOf collects the task values the run's tasks have set.
func taskValuesOf(rec *record) map[string]json.RawMessage {
	var out map[string]json.RawMessage
	for key, ex := range rec.Exec {
		if ex != nil && len(ex.Output.TaskValues) > 0 {
			if out == nil {
				out = map[string]json.RawMessage{}
			}
			out[key] = ex.Output.TaskValues
		}
	}
	return out
}
