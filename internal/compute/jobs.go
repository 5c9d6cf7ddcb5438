package compute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/jobs"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Jobs returns the compute the Jobs service runs on.
func (s *Service) Jobs() jobs.Compute { return jobsCompute{s} }

type jobsCompute struct{ s *Service }

func (j jobsCompute) CheckAttach(ctx context.Context, p principal.Principal, clusterID string) error {
	return j.s.Store.View(ctx, func(tx store.Tx) error {
		_, err := j.s.lookupCluster(tx, p, clusterID, permissions.CanAttachTo)
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == api.ResourceDoesNotExist {
			return api.InvalidParam("Cluster %s does not exist.", clusterID)
		}
		return err
	})
}

// CreateJobCluster creates a Jobs Compute cluster owned by the run's owner,
// once per key.
func (j jobsCompute) CreateJobCluster(ctx context.Context, key string, raw json.RawMessage, name string, owner principal.Principal) (string, error) {
	var spec ClusterSpec
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &spec); err != nil {
			return "", api.InvalidParam("The job's cluster spec is not valid: %v", err)
		}
	}
	if spec.ClusterName == "" {
		spec.ClusterName = name
	}
	p := owner
	if j.s.Principals != nil {
		if full, err := j.s.Principals.PrincipalByName(ctx, owner.Name); err == nil {
			p = full
		}
	}
	return j.s.createCluster(ctx, p, spec, SourceJob, "", key)
}

func (j jobsCompute) ClusterStatus(ctx context.Context, clusterID string) (jobs.ClusterObs, error) {
	var c Cluster
	err := j.s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		c, err = getCluster(tx, clusterID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return jobs.ClusterObs{Failed: true, Message: fmt.Sprintf("Cluster %s does not exist.", clusterID)}, nil
	}
	if err != nil {
		return jobs.ClusterObs{}, err
	}
	switch c.State {
	case Running, Resizing:
		return jobs.ClusterObs{Ready: true}, nil
	case Error:
		return jobs.ClusterObs{Failed: true, Message: "Cluster " + clusterID + " failed: " + c.StateMessage}, nil
	case Terminated, Terminating:
		if c.Source == SourceJob {
			return jobs.ClusterObs{Failed: true, Message: "Cluster " + clusterID + " terminated: " + c.StateMessage}, nil
		}
	}
	msg := "Waiting for cluster " + clusterID + " to start."
	if c.StateMessage != "" {
		msg += " " + c.StateMessage
	}
	return jobs.ClusterObs{Message: msg}, nil
}

func (j jobsCompute) EnsureRunning(ctx context.Context, clusterID string) error {
	var c Cluster
	err := j.s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		c, err = getCluster(tx, clusterID)
		return err
	})
	if err != nil {
		return err
	}
	if c.State != Terminated && c.State != Error {
		return nil
	}
	err = j.s.startCluster(ctx, principal.SystemPrincipal, clusterID, "")
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.InvalidState {
		return nil // started meanwhile
	}
	return err
}

func (j jobsCompute) Terminate(ctx context.Context, clusterID string) error {
	err := j.s.terminate(ctx, principal.SystemPrincipal, clusterID, "", TerminationReason{Code: "JOB_FINISHED", Type: ReasonSuccess},
		permissions.CanManage, false)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.ResourceDoesNotExist {
		return nil
	}
	return err
}

// TaskSources reads what job tasks run, with the rights of the principal
// they run as.
type TaskSources interface {
	// Notebook returns a workspace notebook in SOURCE format, and its
	// language.
	Notebook(ctx context.Context, p principal.Principal, path string) ([]byte, string, error)
	// File returns a file: a workspace path, or dbfs:/...
	File(ctx context.Context, p principal.Principal, path string) ([]byte, error)
}

// JobsRunner returns the task runner the Jobs service uses: each attempt
// is a task on the cluster's driver (RunTask), keyed by its handle.
func (s *Service) JobsRunner(src TaskSources) jobs.TaskRunner { return jobsRunner{s: s, src: src} }

type jobsRunner struct {
	s   *Service
	src TaskSources
}

// taskID turns a jobs handle into a task id.
func taskID(handle string) string {
	var b strings.Builder
	for _, r := range handle {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	id := "job_" + b.String()
	if len(id) > 100 {
		id = id[:100]
	}
	return id
}

func (r jobsRunner) Start(ctx context.Context, l jobs.Launch) error {
	if st, err := r.s.Task(ctx, taskID(l.Handle)); err == nil && st.ID != "" {
		return nil // started before
	}
	spec, err := r.taskSpec(ctx, l)
	if err != nil {
		// The task cannot start (its notebook is missing...): record it
		// as failed, so Status reports why.
		return r.s.recordFailedTask(ctx, taskID(l.Handle), l.ClusterID, err)
	}
	spec.ID = taskID(l.Handle)
	_, err = r.s.RunTask(ctx, l.ClusterID, spec)
	if errors.Is(err, ErrClusterNotReady) {
		return r.s.recordFailedTask(ctx, spec.ID, l.ClusterID, err)
	}
	return err
}

// taskSpec turns a job task into a runtime task.
func (r jobsRunner) taskSpec(ctx context.Context, l jobs.Launch) (TaskSpec, error) {
	p := principal.Principal{Name: l.RunAs, Kind: principal.User}
	if r.s.Principals != nil {
		if full, err := r.s.Principals.PrincipalByName(ctx, l.RunAs); err == nil {
			p = full
		}
	}
	t := l.Task
	rt := map[string]any{"run_id": l.RunID, "job_id": l.JobID, "task_key": l.TaskKey, "task_run_id": l.TaskRunID,
		"app_name": fmt.Sprintf("run-%d-%s", l.RunID, l.TaskKey), "job_params": l.JobParams}
	if len(l.TaskValues) > 0 {
		rt["task_values"] = l.TaskValues
	}
	spec := TaskSpec{RunAs: l.RunAs, TimeoutSeconds: t.TimeoutSeconds, Files: map[string][]byte{}}
	switch {
	case t.NotebookTask != nil:
		src, lang, err := r.src.Notebook(ctx, p, t.NotebookTask.NotebookPath)
		if err != nil {
			return spec, err
		}
		rt["kind"], rt["notebook_path"], rt["language"], rt["source_text"] = "notebook", t.NotebookTask.NotebookPath, lang, string(src)
		rt["widgets"] = l.Widgets
	case t.SparkPythonTask != nil:
		src, err := r.src.File(ctx, p, t.SparkPythonTask.PythonFile)
		if err != nil {
			return spec, err
		}
		spec.Files["main.py"] = src
		rt["kind"], rt["source"], rt["args"] = "python", "main.py", l.Args
	case t.SQLTask != nil:
		rt["kind"], rt["language"], rt["widgets"] = "sql", "SQL", l.Widgets
		switch {
		case t.SQLTask.Query != nil && t.SQLTask.Query.QueryText != "":
			rt["source_text"] = t.SQLTask.Query.QueryText
		case t.SQLTask.File != nil || t.SQLTask.Query != nil:
			path := ""
			if t.SQLTask.File != nil {
				path = t.SQLTask.File.Path
			} else {
				path = t.SQLTask.Query.QueryID
			}
			src, err := r.src.File(ctx, p, path)
			if err != nil {
				return spec, err
			}
			rt["source_text"] = string(src)
		default:
			return spec, errors.New("the SQL task names no query or file")
		}
	case t.PythonWheelTask != nil:
		rt["kind"], rt["package_name"], rt["entry_point"] = "wheel", t.PythonWheelTask.PackageName, t.PythonWheelTask.EntryPoint
		rt["args"], rt["named"] = l.Args, l.Named
	case t.SparkSubmitTask != nil:
		// Databricks gives spark-submit tasks no cluster libraries; the
		// files they name on DBFS are fetched into the task's directory.
		args, files := localizeSubmitArgs(l.Args)
		if err := r.fetchFiles(ctx, p, files, spec.Files); err != nil {
			return spec, err
		}
		spec.SparkSubmitArgs = args
		return spec, nil
	default:
		return spec, errors.New("this task type cannot run on a cluster")
	}
	libs, err := taskLibraries(t.Libraries)
	if err != nil {
		return spec, err
	}
	if err := r.fetchFiles(ctx, p, libs, spec.Files); err != nil {
		return spec, err
	}
	var wheels, jars []string
	for _, lib := range libs {
		if lib.Kind == "whl" {
			wheels = append(wheels, lib.Local)
		} else {
			jars = append(jars, lib.Local)
		}
	}
	if len(wheels) > 0 {
		rt["wheels"] = wheels
	}
	if len(jars) > 0 {
		rt["jars"] = jars
	}
	b, err := json.Marshal(rt)
	if err != nil {
		return spec, err
	}
	spec.Runtime = b
	return spec, nil
}

// fetchFiles reads files a task names (its libraries, spark-submit's
// DBFS files) with the rights of its principal, into files.
func (r jobsRunner) fetchFiles(ctx context.Context, p principal.Principal, want []libraryFile, files map[string][]byte) error {
	for _, f := range want {
		b, err := r.src.File(ctx, p, f.Remote)
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Remote, err)
		}
		files[f.Local] = b
	}
	return nil
}

// recordFailedTask stores a task that failed before it could start.
func (s *Service) recordFailedTask(ctx context.Context, id, clusterID string, cause error) error {
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if ok, err := store.Exists(tx, kindTask, id); err != nil || ok {
			return err
		}
		now := tx.Now().UnixMilli()
		msg := cause.Error()
		var ae *api.Error
		if errors.As(cause, &ae) {
			msg = ae.Message
		}
		return store.Put(tx, kindTask, id, taskRecord{ID: id, ClusterID: clusterID, State: TaskFinished, ExitCode: -1,
			Error: msg, Created: now, Started: now, Ended: now})
	})
	return err
}

// maxLogsOutput bounds the output a job run's get-output shows.
const maxLogsOutput = 64 << 10

func (r jobsRunner) Status(ctx context.Context, clusterID, handle string) (jobs.TaskObs, error) {
	st, err := r.s.Task(ctx, taskID(handle))
	if errors.Is(err, ErrTaskNotFound) {
		return jobs.TaskObs{Done: true, Message: "The task's process was lost."}, nil
	}
	if err != nil {
		return jobs.TaskObs{}, err
	}
	if st.State != TaskFinished {
		return jobs.TaskObs{}, nil
	}
	var res struct {
		NotebookResult string          `json:"notebook_result"`
		Truncated      bool            `json:"truncated"`
		Error          string          `json:"error"`
		ErrorTrace     string          `json:"error_trace"`
		TaskValues     json.RawMessage `json:"task_values"`
	}
	if len(st.Result) > 0 {
		json.Unmarshal(st.Result, &res)
	}
	obs := jobs.TaskObs{Done: true, Success: st.Succeeded(), Output: jobs.TaskOutput{NotebookResult: res.NotebookResult,
		Truncated: res.Truncated, Error: res.Error, ErrorTrace: res.ErrorTrace, TaskValues: res.TaskValues}}
	if logs, size, err := r.s.TaskOutput(ctx, st.ID, "stdout", -maxLogsOutput, maxLogsOutput); err == nil {
		obs.Output.Logs = string(logs)
		obs.Output.LogsTruncated = size > maxLogsOutput
	}
	if !obs.Success {
		obs.Message = res.Error
		if obs.Message == "" {
			obs.Message = st.Error
		}
		if obs.Output.Error == "" {
			obs.Output.Error = obs.Message
		}
	}
	return obs, nil
}

func (r jobsRunner) Cancel(ctx context.Context, clusterID, handle string) error {
	err := r.s.CancelTask(ctx, taskID(handle))
	if errors.Is(err, ErrTaskNotFound) {
		return nil
	}
	return err
}
