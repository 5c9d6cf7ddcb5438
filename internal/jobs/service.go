package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Compute is what jobs need from clusters. The compute package implements
// it; until a region has compute, runs fail with a clear message.
type Compute interface {
	// CheckAttach returns nil if the cluster exists and p may attach to it.
	CheckAttach(ctx context.Context, p principal.Principal, clusterID string) error
	// CreateJobCluster creates a Jobs Compute cluster from a cluster spec
	// for a run. It is idempotent by key: asking again with the same key
	// returns the same cluster.
	CreateJobCluster(ctx context.Context, key string, spec json.RawMessage, name string, owner principal.Principal) (string, error)
	// ClusterStatus reports whether a cluster can run tasks.
	ClusterStatus(ctx context.Context, clusterID string) (ClusterObs, error)
	// EnsureRunning starts a terminated all-purpose cluster.
	EnsureRunning(ctx context.Context, clusterID string) error
	// Terminate terminates a cluster (a job cluster at the end of its run).
	Terminate(ctx context.Context, clusterID string) error
}

// TaskRunner runs task attempts on clusters. Start is idempotent by the
// launch's handle; Status of a handle the cluster does not know reports a
// failed attempt ("lost").
type TaskRunner interface {
	Start(ctx context.Context, l Launch) error
	Status(ctx context.Context, clusterID, handle string) (TaskObs, error)
	Cancel(ctx context.Context, clusterID, handle string) error
}

// Sources checks that a task's notebook or file exists and that p may run it.
type Sources interface {
	CheckSource(ctx context.Context, p principal.Principal, kind, path string) error
}

// Launch is one task attempt to start.
type Launch struct {
	Handle    string
	ClusterID string
	JobID     int64
	RunID     int64
	TaskRunID int64
	TaskKey   string
	Attempt   int
	Task      Task
	// Widgets are notebook parameters (dbutils.widgets), Args the command
	// line of Python, spark-submit and wheel tasks, Named the wheel's named
	// parameters, JobParams the job's parameters.
	Widgets   map[string]string
	Args      []string
	Named     map[string]string
	JobParams map[string]string
	// RunAs is the principal the task runs as (dbutils.secrets checks it).
	RunAs string
	// TaskValues are the task values set by the run's finished tasks, by
	// task key (dbutils.jobs.taskValues.get).
	TaskValues map[string]json.RawMessage
}

// Auditor writes audit records of automated actions (scheduled runs).
type Auditor interface {
	Append(ctx context.Context, rec *audit.Record) error
}

// Service is the Jobs service of a region.
type Service struct {
	Store   store.Store
	Perms   *permissions.Service
	Log     *slog.Logger
	Compute Compute
	Runner  TaskRunner
	Sources Sources
	Audit   Auditor
	// ResourceID names the workspace in audit records.
	ResourceID string
	// WorkspaceID is sent in webhook payloads.
	WorkspaceID int64
	// Now is the clock (tests replace it).
	Now func() time.Time
	// Tick is how often the executor and the scheduler look for work.
	Tick time.Duration
	// SchedulingPaused, if set, stops new scheduled runs while it reports
	// true (a region being drained for a planned failover); the executor
	// goes on with the runs already started.
	SchedulingPaused func() bool

	wake     chan struct{}
	notifier *notifier
	mu       sync.Mutex
	running  map[int64]bool // runs being stepped, so two loops never step one run
}

// Init registers the jobs permission type and prepares the service.
func (s *Service) Init() {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Tick == 0 {
		s.Tick = 200 * time.Millisecond
	}
	s.wake = make(chan struct{}, 1)
	s.running = map[int64]bool{}
	s.notifier = newNotifier(s.Log, s.Store)
	s.Perms.Register(permissions.ObjectType{
		Name: "jobs", Wire: "job", Levels: permissions.JobLevels,
		Category: "jobs", Action: "changeJobAcl",
		Resolve: func(tx store.Tx, id string) (permissions.Object, error) {
			n, err := strconv.ParseInt(id, 10, 64)
			if err != nil {
				return permissions.Object{}, store.ErrNotFound
			}
			j, err := store.Get[Job](tx, kindJob, jobKey(n))
			if err != nil {
				return permissions.Object{}, err
			}
			return permissions.Object{Ref: permissions.Ref{Type: "jobs", ID: id}, Display: jobDisplay(j)}, nil
		},
	})
}

func jobDisplay(j Job) string {
	var s Spec
	json.Unmarshal(j.Settings, &s)
	if s.Name != "" {
		return fmt.Sprintf("job %d (%s)", j.JobID, s.Name)
	}
	return fmt.Sprintf("job %d", j.JobID)
}

func (s *Service) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func jobID(id int64) string { return strconv.FormatInt(id, 10) }

// specOf decodes a job's settings.
func specOf(raw json.RawMessage) (Spec, error) {
	var sp Spec
	if len(raw) == 0 {
		return sp, nil
	}
	if err := json.Unmarshal(raw, &sp); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return sp, api.Errorf(api.MalformedRequest, "Invalid JSON given in the body of the request - field '%s' must be %s.", te.Field, te.Type)
		}
		return sp, api.Errorf(api.MalformedRequest, "Invalid job settings: %v", err)
	}
	return sp, nil
}

// checkReferences checks what validation cannot without I/O: the caller may
// attach to every existing cluster and read every notebook and file the
// tasks name.
func (s *Service) checkReferences(ctx context.Context, p principal.Principal, sp Spec) error {
	for _, t := range sp.Tasks {
		cluster := t.ExistingClusterID
		if cluster == "" && t.SQLTask != nil && len(t.NewCluster) == 0 && t.JobClusterKey == "" {
			cluster = t.SQLTask.WarehouseID
		}
		if cluster != "" {
			if s.Compute == nil {
				return api.InvalidParam("Task %q: cluster %s does not exist (this region has no compute).", t.TaskKey, cluster)
			}
			if err := s.Compute.CheckAttach(ctx, p, cluster); err != nil {
				return err
			}
		}
		if s.Sources == nil {
			continue
		}
		var kind, path string
		switch {
		case t.NotebookTask != nil && t.NotebookTask.Source != "GIT":
			kind, path = "notebook", t.NotebookTask.NotebookPath
		case t.SparkPythonTask != nil && t.SparkPythonTask.Source != "GIT":
			kind, path = "file", t.SparkPythonTask.PythonFile
		case t.SQLTask != nil && t.SQLTask.File != nil:
			kind, path = "file", t.SQLTask.File.Path
		case t.SQLTask != nil && t.SQLTask.Query != nil && t.SQLTask.Query.QueryID != "":
			kind, path = "file", t.SQLTask.Query.QueryID
		}
		if path != "" {
			if err := s.Sources.CheckSource(ctx, p, kind, path); err != nil {
				return fmt.Errorf("task %q: %w", t.TaskKey, err)
			}
		}
	}
	return nil
}

// active reports whether a run counts against max_concurrent_runs.
func active(life string) bool {
	return life == Pending || life == Running || life == Terminating || life == Blocked
}

// runsOfJob returns the records of a job's runs, newest first.
func runsOfJob(tx store.Tx, jobID int64) ([]*record, error) {
	var out []*record
	err := store.ScanPrefix(tx, kindRunByJob, jobKey(jobID)+"/", func(_ string, runID int64) error {
		rec, err := store.Get[record](tx, kindRun, runKey(runID))
		if err != nil {
			return err
		}
		out = append(out, &rec)
		return nil
	})
	return out, err
}

// newRun builds a run of a job in one transaction: ids, tasks with their
// task run ids, parameters, and its first state (pending, queued behind
// the job's concurrency limit, or skipped when queueing is off).
func (s *Service) newRun(tx store.Tx, job *Job, sp Spec, p principal.Principal, trigger string, params runParams, only []string) (*record, error) {
	now := tx.Now().UnixMilli()
	id, err := tx.NextID("jobs.run")
	if err != nil {
		return nil, err
	}
	rec := &record{Spec: sp, Exec: map[string]*TaskExec{}, Clusters: map[string]RunCluster{}}
	r := &rec.Run
	r.RunID = id
	r.NumberInJob = id
	r.OriginalAttemptRunID = id
	r.CreatorUserName = p.Name
	r.Trigger = trigger
	r.RunName = sp.Name
	r.JobClusters = sp.JobClusters
	r.Schedule = sp.Schedule
	r.StartTime = now
	r.RunType = "SUBMIT_RUN"
	if job != nil {
		r.JobID = job.JobID
		r.RunType = "JOB_RUN"
		if r.RunName == "" {
			r.RunName = "Untitled"
		}
	}
	if r.RunName == "" {
		r.RunName = "Untitled"
	}
	keep := map[string]bool{}
	for _, k := range only {
		keep[k] = true
	}
	for _, t := range sp.Tasks {
		if len(only) > 0 && !keep[t.TaskKey] {
			continue
		}
		if len(only) > 0 {
			var deps []Dependency
			for _, d := range t.DependsOn {
				if keep[d.TaskKey] {
					deps = append(deps, d)
				}
			}
			t.DependsOn = deps
		}
		tid, err := tx.NextID("jobs.run")
		if err != nil {
			return nil, err
		}
		r.Tasks = append(r.Tasks, RunTask{Task: t, RunID: tid, State: RunState{LifeCycleState: Pending, StateMessage: "Waiting to start."}})
		if err := store.Put(tx, kindTaskRun, strconv.FormatInt(tid, 10), id); err != nil {
			return nil, err
		}
		rec.Exec[t.TaskKey] = &TaskExec{}
	}
	if len(only) > 0 && len(r.Tasks) != len(only) {
		return nil, api.InvalidParam("only names tasks that are not in the job.")
	}
	rec.Params = params
	r.JobParameters = params.resolvedJobParameters(sp.Parameters)
	if ov := params.overriding(); ov != nil {
		r.OverridingParameters = ov
	}
	if sp.TimeoutSeconds > 0 {
		rec.Deadline = now + sp.TimeoutSeconds*1000
	}
	r.State = RunState{LifeCycleState: Pending, StateMessage: "Waiting for a cluster."}
	if job != nil {
		running, queued, err := countActive(tx, job.JobID)
		if err != nil {
			return nil, err
		}
		queue := RunState{LifeCycleState: Queued, StateMessage: "Queued: the job is at its maximum of concurrent runs.",
			QueueReason: "MAX_CONCURRENT_RUNS_REACHED"}
		switch {
		case running >= sp.ConcurrencyLimit() && sp.QueueEnabled():
			r.State = queue
		case running >= sp.ConcurrencyLimit():
			r.State = RunState{LifeCycleState: Skipped, ResultState: MaxConcurrentReached,
				StateMessage: fmt.Sprintf("Skipped: the job already has %d active runs, its maximum, and queueing is off.", running)}
			r.EndTime = now
		case queued > 0 && sp.QueueEnabled():
			// Room, but older runs wait: stay behind them.
			r.State = queue
		}
		if err := store.Put(tx, kindRunByJob, jobKey(job.JobID)+"/"+runKey(id), id); err != nil {
			return nil, err
		}
	}
	if err := store.Put(tx, kindRun, runKey(id), rec); err != nil {
		return nil, err
	}
	if !Terminal(r.State.LifeCycleState) {
		if err := putActive(tx, rec); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// kindActive indexes the runs the executor still has to step (not terminal,
// or terminal with clusters to release), by job and then run id, oldest
// first; each entry says whether the run waits in its job's queue, so
// admission and counting never read run records.
const kindActive = "jobs.run.active"

type activeEntry struct {
	JobID  int64 `json:"job_id"`
	RunID  int64 `json:"run_id"`
	Queued bool  `json:"queued,omitempty"`
}

func activeKey(jobID, runID int64) string { return fmt.Sprintf("%020d/%020d", jobID, runID) }

func putActive(tx store.Tx, rec *record) error {
	return store.Put(tx, kindActive, activeKey(rec.Run.JobID, rec.Run.RunID),
		activeEntry{JobID: rec.Run.JobID, RunID: rec.Run.RunID, Queued: rec.Run.State.LifeCycleState == Queued})
}

func deleteActive(tx store.Tx, jobID, runID int64) error {
	return deleteIfPresent(tx, kindActive, activeKey(jobID, runID))
}

// countActive counts a job's runs in progress and its queued runs.
func countActive(tx store.Tx, jobID int64) (running, queued int, err error) {
	err = store.ScanPrefix(tx, kindActive, jobKey(jobID)+"/", func(_ string, e activeEntry) error {
		if e.Queued {
			queued++
		} else {
			running++
		}
		return nil
	})
	return running, queued, err
}

// runParams are the parameters a run was triggered with.
type runParams struct {
	JobParameters     map[string]string `json:"job_parameters,omitempty"`
	NotebookParams    map[string]string `json:"notebook_params,omitempty"`
	PythonParams      []string          `json:"python_params,omitempty"`
	SparkSubmitParams []string          `json:"spark_submit_params,omitempty"`
	PythonNamedParams map[string]string `json:"python_named_params,omitempty"`
	SQLParams         map[string]string `json:"sql_params,omitempty"`
	JarParams         []string          `json:"jar_params,omitempty"`
}

func (p runParams) overriding() json.RawMessage {
	m := map[string]any{}
	if len(p.NotebookParams) > 0 {
		m["notebook_params"] = p.NotebookParams
	}
	if len(p.PythonParams) > 0 {
		m["python_params"] = p.PythonParams
	}
	if len(p.SparkSubmitParams) > 0 {
		m["spark_submit_params"] = p.SparkSubmitParams
	}
	if len(p.PythonNamedParams) > 0 {
		m["python_named_params"] = p.PythonNamedParams
	}
	if len(p.SQLParams) > 0 {
		m["sql_params"] = p.SQLParams
	}
	if len(m) == 0 {
		return nil
	}
	b, _ := json.Marshal(m)
	return b
}

func (p runParams) resolvedJobParameters(defs []JobParameterDef) []JobParameter {
	var out []JobParameter
	for _, d := range defs {
		v := d.Default
		if o, ok := p.JobParameters[d.Name]; ok {
			v = o
		}
		out = append(out, JobParameter{Name: d.Name, Default: d.Default, Value: v})
	}
	return out
}

// launchParams computes a task attempt's parameters: base parameters
// overridden by the run's notebook_params, and {{job.parameters.x}}-style
// references to job parameters resolved.
func launchParams(rec *record, t Task) (widgets map[string]string, args []string, named map[string]string, jobParams map[string]string) {
	jobParams = map[string]string{}
	for _, jp := range rec.Run.JobParameters {
		jobParams[jp.Name] = jp.Value
	}
	for k, v := range rec.Params.JobParameters {
		jobParams[k] = v
	}
	resolve := func(s string) string { return substitute(s, rec, t, jobParams) }
	switch {
	case t.NotebookTask != nil:
		widgets = map[string]string{}
		for k, v := range t.NotebookTask.BaseParameters {
			widgets[k] = resolve(v)
		}
		for k, v := range jobParams {
			widgets[k] = v
		}
		for k, v := range rec.Params.NotebookParams {
			widgets[k] = v
		}
	case t.SparkPythonTask != nil:
		args = t.SparkPythonTask.Parameters
		if len(rec.Params.PythonParams) > 0 {
			args = rec.Params.PythonParams
		}
	case t.SparkSubmitTask != nil:
		args = t.SparkSubmitTask.Parameters
		if len(rec.Params.SparkSubmitParams) > 0 {
			args = rec.Params.SparkSubmitParams
		}
	case t.PythonWheelTask != nil:
		args = t.PythonWheelTask.Parameters
		if len(rec.Params.PythonParams) > 0 {
			args = rec.Params.PythonParams
		}
		named = map[string]string{}
		for k, v := range t.PythonWheelTask.NamedParameters {
			named[k] = resolve(v)
		}
		for k, v := range rec.Params.PythonNamedParams {
			named[k] = v
		}
	case t.SQLTask != nil:
		widgets = map[string]string{}
		for k, v := range t.SQLTask.Parameters {
			widgets[k] = resolve(v)
		}
		for k, v := range rec.Params.SQLParams {
			widgets[k] = v
		}
	}
	for i, a := range args {
		if i == 0 {
			args = append([]string(nil), args...)
		}
		args[i] = resolve(a)
	}
	return widgets, args, named, jobParams
}

// substitute resolves Databricks' dynamic value references in a parameter:
// {{job.id}}, {{job.run_id}}, {{run.id}}, {{task.name}}, {{task.run_id}},
// {{job.parameters.<name>}} and the legacy {{run_id}}, {{job_id}}.
func substitute(s string, rec *record, t Task, jobParams map[string]string) string {
	if !strings.Contains(s, "{{") {
		return s
	}
	var taskRun int64
	for _, rt := range rec.Run.Tasks {
		if rt.TaskKey == t.TaskKey {
			taskRun = rt.RunID
		}
	}
	repl := []string{
		"{{job.id}}", jobID(rec.Run.JobID), "{{job_id}}", jobID(rec.Run.JobID),
		"{{job.run_id}}", jobID(rec.Run.RunID), "{{run.id}}", jobID(rec.Run.RunID), "{{parent_run_id}}", jobID(rec.Run.RunID),
		"{{run_id}}", jobID(taskRun), "{{task.run_id}}", jobID(taskRun), "{{task.name}}", t.TaskKey, "{{task_key}}", t.TaskKey,
	}
	for k, v := range jobParams {
		repl = append(repl, "{{job.parameters."+k+"}}", v)
	}
	return strings.NewReplacer(repl...).Replace(s)
}
