package compute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/store"
)

// ErrClusterNotReady is returned by RunTask when the cluster cannot run
// work now (not RUNNING, or its driver is not up).
var ErrClusterNotReady = errors.New("the cluster is not running")

// ErrTaskNotFound is returned for an unknown task id.
var ErrTaskNotFound = errors.New("no such task")

// TaskSpec is work to run on a cluster's driver, in client mode against
// the cluster's Spark master: a tandem_runtime task (notebooks, Python
// files, SQL, wheels, with dbutils) or a spark-submit command line.
type TaskSpec struct {
	// ID makes RunTask idempotent: a second call with the same id returns
	// the same task. Empty: a fresh id.
	ID string
	// Runtime is the tandem_runtime spec (kind, source, widgets...). The
	// agent adds the master, the API socket and the result file.
	Runtime json.RawMessage
	// SparkSubmitArgs, when Runtime is empty, are spark-submit's.
	SparkSubmitArgs []string
	// Files are written in the task's directory on the driver.
	Files map[string][]byte
	Env   map[string]string
	// RunAs is the user name the task's API calls (dbutils) act as.
	RunAs          string
	TimeoutSeconds int64
}

// TaskStatus is what is known of a task.
type TaskStatus struct {
	ID        string `json:"id"`
	ClusterID string `json:"cluster_id"`
	State     string `json:"state"` // PENDING, RUNNING, FINISHED
	ExitCode  int    `json:"exit_code"`
	// Result is tandem_runtime's result document (notebook_result,
	// task_values, error, error_trace).
	Result    json.RawMessage `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
	StartTime int64           `json:"start_time,omitempty"`
	EndTime   int64           `json:"end_time,omitempty"`
}

// Succeeded reports a task that finished with exit status 0.
func (t TaskStatus) Succeeded() bool {
	return t.State == TaskFinished && t.ExitCode == 0 && t.Error == ""
}

// taskRecord is a task in the store.
type taskRecord struct {
	ID         string          `json:"id"`
	ClusterID  string          `json:"cluster_id"`
	ClusterGen int64           `json:"cluster_generation"`
	InstanceID string          `json:"instance_id"`
	RunAs      string          `json:"run_as,omitempty"`
	Spec       wire.TaskSpec   `json:"spec"`
	State      string          `json:"state"`
	Cancel     bool            `json:"cancel,omitempty"`
	Created    int64           `json:"created"`
	Started    int64           `json:"started,omitempty"`
	Ended      int64           `json:"ended,omitempty"`
	ExitCode   int             `json:"exit_code"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      string          `json:"error,omitempty"`
}

func (t taskRecord) status() TaskStatus {
	return TaskStatus{ID: t.ID, ClusterID: t.ClusterID, State: t.State, ExitCode: t.ExitCode, Result: t.Result,
		Error: t.Error, StartTime: t.Started, EndTime: t.Ended}
}

// validTaskID keeps ids usable as directory and stream names.
func validTaskID(id string) bool {
	if id == "" || len(id) > 100 {
		return false
	}
	return strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0
}

// RunTask starts a task on a running cluster's driver and returns its id.
// The task is stored first and handed to the driver's agent on its next
// poll, so it survives a control-plane restart; its output streams back as
// the task runs (TaskOutput) and its outcome is kept (Task).
func (s *Service) RunTask(ctx context.Context, clusterID string, spec TaskSpec) (string, error) {
	id := spec.ID
	if id == "" {
		id = fmt.Sprintf("t%x", randomInt63())
	}
	if !validTaskID(id) {
		return "", fmt.Errorf("invalid task id %q: use letters, digits, - and _", id)
	}
	ws := wire.TaskSpec{ID: id, Spec: spec.Runtime, Args: spec.SparkSubmitArgs, Files: spec.Files, Env: spec.Env,
		TimeoutSeconds: spec.TimeoutSeconds, Kind: wire.TaskRuntime}
	if len(spec.Runtime) == 0 {
		if len(spec.SparkSubmitArgs) == 0 {
			return "", errors.New("a task needs a runtime spec or spark-submit arguments")
		}
		ws.Kind = wire.TaskSparkSubmit
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if ok, err := store.Exists(tx, kindTask, id); err != nil || ok {
			return err
		}
		c, err := getCluster(tx, clusterID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: cluster %s does not exist", ErrClusterNotReady, clusterID)
		}
		if err != nil {
			return err
		}
		if c.State != Running && c.State != Resizing {
			return fmt.Errorf("%w: cluster %s is %s", ErrClusterNotReady, clusterID, c.State)
		}
		driver, err := driverOf(tx, clusterID)
		if err != nil {
			return err
		}
		if driver.ID == "" || driver.ClusterGen != c.Generation {
			return fmt.Errorf("%w: cluster %s has no running driver", ErrClusterNotReady, clusterID)
		}
		if c.TargetWorkers == 0 {
			// No workers: the driver runs the task's Spark in local mode,
			// as a single-node cluster does.
			ws.Spec = withLocalMaster(ws.Spec, driver.NodeType, s.Catalog)
		}
		t := taskRecord{ID: id, ClusterID: clusterID, ClusterGen: c.Generation, InstanceID: driver.ID, RunAs: spec.RunAs,
			Spec: ws, State: TaskPending, Created: tx.Now().UnixMilli()}
		return store.Put(tx, kindTask, id, t)
	})
	if err != nil {
		return "", err
	}
	if s.Gateway != nil {
		s.Gateway.Kick()
	}
	return id, nil
}

// localMaster is the Spark master of a task on a single-node cluster: local
// mode with the driver's cores.
func localMaster(nodeType string, cat Catalog) string {
	cores := 1
	if nt, ok := cat.nodeType(nodeType); ok {
		cores = max(1, int(nt.NumCores))
	}
	return fmt.Sprintf("local[%d]", cores)
}

// withLocalMaster sets spark.master to local mode in a runtime spec.
func withLocalMaster(spec json.RawMessage, nodeType string, cat Catalog) json.RawMessage {
	m := map[string]any{}
	if len(spec) > 0 && json.Unmarshal(spec, &m) != nil {
		return spec
	}
	conf, _ := m["spark_conf"].(map[string]any)
	if conf == nil {
		conf = map[string]any{}
	}
	if _, set := conf["spark.master"]; !set {
		conf["spark.master"] = localMaster(nodeType, cat)
	}
	m["spark_conf"] = conf
	b, err := json.Marshal(m)
	if err != nil {
		return spec
	}
	return b
}

func driverOf(tx store.Tx, clusterID string) (Instance, error) {
	var d Instance
	err := store.ScanPrefix(tx, kindInstance, "", func(_ string, in Instance) error {
		if in.ClusterID == clusterID && in.Role == wire.RoleDriver && in.State != InstDeleting {
			d = in
			return store.ErrStopScan
		}
		return nil
	})
	return d, err
}

// Task returns a task's status.
func (s *Service) Task(ctx context.Context, id string) (TaskStatus, error) {
	var t taskRecord
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		t, err = store.Get[taskRecord](tx, kindTask, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return TaskStatus{}, ErrTaskNotFound
	}
	return t.status(), err
}

// CancelTask asks the driver to stop a task.
func (s *Service) CancelTask(ctx context.Context, id string) error {
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		t, err := store.Get[taskRecord](tx, kindTask, id)
		if errors.Is(err, store.ErrNotFound) {
			return ErrTaskNotFound
		}
		if err != nil || t.State == TaskFinished || t.Cancel {
			return err
		}
		t.Cancel = true
		if t.State == TaskPending {
			// Never handed to the agent: it ends here.
			t.State, t.Error, t.ExitCode, t.Ended = TaskFinished, "The task was canceled.", -1, tx.Now().UnixMilli()
		}
		return store.Put(tx, kindTask, id, t)
	})
	if err == nil && s.Gateway != nil {
		s.Gateway.Kick()
	}
	return err
}

// TaskOutput reads up to n bytes of a task's "stdout" or "stderr" from
// off (a negative off counts from the end); it also returns the stream's
// size so far.
func (s *Service) TaskOutput(ctx context.Context, id, stream string, off int64, n int) ([]byte, int64, error) {
	if stream != "stdout" && stream != "stderr" {
		return nil, 0, fmt.Errorf("unknown task stream %q", stream)
	}
	var t taskRecord
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		t, err = store.Get[taskRecord](tx, kindTask, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, ErrTaskNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	return s.readLog(t.ClusterID, t.InstanceID, "tasks/"+id+"/"+stream, off, n)
}

// recordTasks stores what an agent reports of its tasks and returns the
// ids of finished ones whose outcome is kept.
func (s *Service) recordTasks(ctx context.Context, instanceID string, sts []wire.TaskStatus) ([]string, error) {
	var done []string
	var changed bool
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		done, changed = nil, false
		for _, st := range sts {
			t, err := store.Get[taskRecord](tx, kindTask, st.ID)
			if errors.Is(err, store.ErrNotFound) {
				if st.State == wire.TaskDone {
					done = append(done, st.ID)
				}
				continue
			}
			if err != nil {
				return err
			}
			if t.InstanceID != instanceID {
				continue
			}
			switch {
			case t.State == TaskFinished:
				if st.State == wire.TaskDone {
					done = append(done, st.ID)
				}
				continue
			case st.State == wire.TaskDone:
				t.State, t.ExitCode, t.Result, t.Error = TaskFinished, st.ExitCode, st.Result, st.Error
				t.Started = max(t.Started, st.StartedMillis)
				if t.Started == 0 {
					t.Started = st.StartedMillis
				}
				t.Ended = st.EndedMillis
				if t.ExitCode != 0 && t.Error == "" && len(t.Result) == 0 {
					t.Error = fmt.Sprintf("The task's process exited with status %d.", t.ExitCode)
				}
				done = append(done, st.ID)
			case t.State == TaskPending:
				t.State, t.Started = TaskRunning, st.StartedMillis
			default:
				continue
			}
			changed = true
			if err := store.Put(tx, kindTask, st.ID, t); err != nil {
				return err
			}
		}
		return nil
	})
	if changed {
		s.nudge()
	}
	return done, err
}

// failLostTasks ends the tasks whose driver is gone or whose cluster
// started over: nothing will report them again.
func (s *Service) failLostTasks(ctx context.Context, w *world) {
	var lost []string
	for _, t := range w.tasks {
		if t.State == TaskFinished {
			continue
		}
		in, ok := w.instances[t.InstanceID]
		c, cok := w.clusters[t.ClusterID]
		switch {
		case !ok || in.ClusterID != t.ClusterID || in.Role != wire.RoleDriver || in.State == InstDeleting:
		case cok && c.Generation != t.ClusterGen:
		case !cok:
		default:
			continue
		}
		lost = append(lost, t.ID)
	}
	if len(lost) == 0 {
		return
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		for _, id := range lost {
			t, err := store.Get[taskRecord](tx, kindTask, id)
			if err != nil || t.State == TaskFinished {
				continue
			}
			t.State, t.ExitCode, t.Ended = TaskFinished, -1, tx.Now().UnixMilli()
			t.Error = "The task was lost: the cluster's driver went away or the cluster restarted while it ran."
			if err := store.Put(tx, kindTask, id, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		s.Log.Error("fail lost tasks", "err", err)
	}
}
