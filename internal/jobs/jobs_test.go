package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/retries"
	"github.com/databricks/databricks-sdk-go/service/compute"
	sdkjobs "github.com/databricks/databricks-sdk-go/service/jobs"
	"github.com/databricks/databricks-sdk-go/service/settings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/jobs"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

var ctx = context.Background()

// fakeCompute stands in for clusters: the subject here is the Jobs service
// (API, life cycle, scheduler); compute has its own tests with real Spark.
type fakeCompute struct {
	mu         sync.Mutex
	created    map[string]string // creation key -> cluster id
	terminated map[string]bool
}

func newFakeCompute() *fakeCompute {
	return &fakeCompute{created: map[string]string{}, terminated: map[string]bool{}}
}

func (f *fakeCompute) CheckAttach(ctx context.Context, p principal.Principal, id string) error {
	if id != "allpurpose-1" {
		return api.InvalidParam("Cluster %s does not exist.", id)
	}
	return nil
}

func (f *fakeCompute) CreateJobCluster(ctx context.Context, key string, spec json.RawMessage, name string, owner principal.Principal) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.created[key]; ok {
		return id, nil
	}
	id := fmt.Sprintf("job-cluster-%d", len(f.created)+1)
	f.created[key] = id
	return id, nil
}

func (f *fakeCompute) ClusterStatus(ctx context.Context, id string) (jobs.ClusterObs, error) {
	return jobs.ClusterObs{Ready: true}, nil
}

func (f *fakeCompute) EnsureRunning(ctx context.Context, id string) error { return nil }

func (f *fakeCompute) Terminate(ctx context.Context, id string) error {
	f.mu.Lock()
	f.terminated[id] = true
	f.mu.Unlock()
	return nil
}

// fakeRunner runs tasks by their python file or notebook path:
// /ok.py succeeds, /fail.py fails, /flaky.py fails on its first attempt,
// /slow.py runs until canceled, a notebook exits with its widget "x".
type fakeRunner struct {
	mu       sync.Mutex
	attempts map[string]*attempt
	starts   map[string]int
	order    []int64 // run ids in the order their first task started
}

type attempt struct {
	l        jobs.Launch
	started  time.Time
	canceled bool
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{attempts: map[string]*attempt{}, starts: map[string]int{}}
}

func (f *fakeRunner) Start(ctx context.Context, l jobs.Launch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts[l.Handle]++
	if _, ok := f.attempts[l.Handle]; !ok {
		f.attempts[l.Handle] = &attempt{l: l, started: time.Now()}
		f.order = append(f.order, l.RunID)
	}
	return nil
}

func (f *fakeRunner) Status(ctx context.Context, cluster, handle string) (jobs.TaskObs, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.attempts[handle]
	if !ok {
		return jobs.TaskObs{Done: true, Message: "The task's process was lost."}, nil
	}
	if a.canceled {
		return jobs.TaskObs{Done: true, Message: "Canceled."}, nil
	}
	if time.Since(a.started) < 50*time.Millisecond {
		return jobs.TaskObs{}, nil
	}
	t := a.l.Task
	switch {
	case t.NotebookTask != nil:
		return jobs.TaskObs{Done: true, Success: true, Output: jobs.TaskOutput{NotebookResult: "x=" + a.l.Widgets["x"], Logs: "hello from the notebook\n"}}, nil
	case t.SparkPythonTask != nil:
		switch t.SparkPythonTask.PythonFile {
		case "/ok.py":
			return jobs.TaskObs{Done: true, Success: true, Output: jobs.TaskOutput{Logs: "args=" + strings.Join(a.l.Args, ",")}}, nil
		case "/fail.py":
			return jobs.TaskObs{Done: true, Message: "ValueError: bad input", Output: jobs.TaskOutput{Error: "ValueError: bad input", ErrorTrace: "Traceback ..."}}, nil
		case "/flaky.py":
			ok := a.l.Attempt > 0
			return jobs.TaskObs{Done: true, Success: ok, Message: "flaky"}, nil
		case "/slow.py":
			return jobs.TaskObs{}, nil
		case "/values.py":
			return jobs.TaskObs{Done: true, Success: true, Output: jobs.TaskOutput{TaskValues: json.RawMessage(`{"n":41}`)}}, nil
		}
	}
	return jobs.TaskObs{Done: true, Success: true}, nil
}

func (f *fakeRunner) Cancel(ctx context.Context, cluster, handle string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.attempts[handle]; ok {
		a.canceled = true
	}
	return nil
}

func start(t *testing.T, c *fakeCompute, r *fakeRunner, opts ...servertest.Option) *servertest.Server {
	opts = append(opts, servertest.WithSetup(func(s *server.Server) {
		s.Jobs.Compute = c
		s.Jobs.Runner = r
		s.Jobs.Tick = 20 * time.Millisecond
	}))
	return servertest.Start(t, opts...)
}

func pyTask(key, file string, deps ...string) sdkjobs.Task {
	t := sdkjobs.Task{TaskKey: key, ExistingClusterId: "allpurpose-1", SparkPythonTask: &sdkjobs.SparkPythonTask{PythonFile: file}}
	for _, d := range deps {
		t.DependsOn = append(t.DependsOn, sdkjobs.TaskDependency{TaskKey: d})
	}
	return t
}

func TestRunNowAndWaitThroughTheSDK(t *testing.T) {
	c, r := newFakeCompute(), newFakeRunner()
	srv := start(t, c, r)
	w := srv.SDK(srv.AdminToken)
	job, err := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "nightly", Tasks: []sdkjobs.Task{{
		TaskKey: "main", ExistingClusterId: "allpurpose-1",
		SparkPythonTask: &sdkjobs.SparkPythonTask{PythonFile: "/ok.py", Parameters: []string{"--run", "{{job.run_id}}"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	run, err := w.Jobs.RunNowAndWait(ctx, sdkjobs.RunNow{JobId: job.JobId}, withTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if run.State.LifeCycleState != sdkjobs.RunLifeCycleStateTerminated || run.State.ResultState != sdkjobs.RunResultStateSuccess {
		t.Fatalf("run state = %+v", run.State)
	}
	if run.JobId != job.JobId || len(run.Tasks) != 1 || run.Tasks[0].ClusterInstance.ClusterId != "allpurpose-1" {
		t.Errorf("run = %+v", run)
	}
	out, err := w.Jobs.GetRunOutput(ctx, sdkjobs.GetRunOutputRequest{RunId: run.Tasks[0].RunId})
	if err != nil {
		t.Fatal(err)
	}
	if out.Logs != fmt.Sprintf("args=--run,%d", run.RunId) {
		t.Errorf("logs = %q (parameters were not resolved)", out.Logs)
	}
	got, err := w.Jobs.GetByJobId(ctx, job.JobId)
	if err != nil || got.Settings.Name != "nightly" || got.CreatorUserName != "admin@tandem.local" {
		t.Fatalf("get = %+v, %v", got, err)
	}
	runs, err := w.Jobs.ListRunsAll(ctx, sdkjobs.ListRunsRequest{JobId: job.JobId})
	if err != nil || len(runs) != 1 {
		t.Fatalf("list runs = %d, %v", len(runs), err)
	}
	// A missing job is RESOURCE_DOES_NOT_EXIST for errors.Is.
	if _, err := w.Jobs.GetByJobId(ctx, 999999); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("missing job: %v", err)
	}
	if _, err := w.Jobs.GetRun(ctx, sdkjobs.GetRunRequest{RunId: 999999}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("missing run: %v", err)
	}
}

func withTimeout(d time.Duration) retries.Option[sdkjobs.Run] { return retries.Timeout[sdkjobs.Run](d) }

func TestMultiTaskJobWithJobClustersRetriesAndRunIf(t *testing.T) {
	c, r := newFakeCompute(), newFakeRunner()
	srv := start(t, c, r)
	w := srv.SDK(srv.AdminToken)
	shared := sdkjobs.JobCluster{JobClusterKey: "shared", NewCluster: compute.ClusterSpec{SparkVersion: "x", NumWorkers: 1}}
	flaky := sdkjobs.Task{TaskKey: "flaky", JobClusterKey: "shared", MaxRetries: 1, SparkPythonTask: &sdkjobs.SparkPythonTask{PythonFile: "/flaky.py"}}
	fail := sdkjobs.Task{TaskKey: "fail", JobClusterKey: "shared", SparkPythonTask: &sdkjobs.SparkPythonTask{PythonFile: "/fail.py"}, DependsOn: []sdkjobs.TaskDependency{{TaskKey: "flaky"}}}
	after := sdkjobs.Task{TaskKey: "after-fail", JobClusterKey: "shared", SparkPythonTask: &sdkjobs.SparkPythonTask{PythonFile: "/ok.py"}, DependsOn: []sdkjobs.TaskDependency{{TaskKey: "fail"}}}
	cleanup := sdkjobs.Task{TaskKey: "cleanup", JobClusterKey: "shared", RunIf: sdkjobs.RunIfAllDone, SparkPythonTask: &sdkjobs.SparkPythonTask{PythonFile: "/ok.py"}, DependsOn: []sdkjobs.TaskDependency{{TaskKey: "fail"}}}
	nb := sdkjobs.Task{TaskKey: "nb", NewCluster: &compute.ClusterSpec{SparkVersion: "x", NumWorkers: 1}, NotebookTask: &sdkjobs.NotebookTask{NotebookPath: "/Shared/nb", BaseParameters: map[string]string{"x": "base"}}}
	job, err := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "dag", JobClusters: []sdkjobs.JobCluster{shared}, Tasks: []sdkjobs.Task{flaky, fail, after, cleanup, nb}})
	if err != nil {
		t.Fatal(err)
	}
	run, err := w.Jobs.RunNowAndWait(ctx, sdkjobs.RunNow{JobId: job.JobId, NotebookParams: map[string]string{"x": "override"}}, withTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, tk := range run.Tasks {
		states[tk.TaskKey] = string(tk.State.LifeCycleState) + "/" + string(tk.State.ResultState)
	}
	want := map[string]string{"flaky": "TERMINATED/SUCCESS", "fail": "TERMINATED/FAILED", "after-fail": "SKIPPED/UPSTREAM_FAILED",
		"cleanup": "TERMINATED/SUCCESS", "nb": "TERMINATED/SUCCESS"}
	for k, v := range want {
		if states[k] != v {
			t.Errorf("task %s = %s, want %s", k, states[k], v)
		}
	}
	if run.State.ResultState != sdkjobs.RunResultStateFailed {
		t.Errorf("run result = %s (%s)", run.State.ResultState, run.State.StateMessage)
	}
	// One shared job cluster and the notebook's own cluster, both terminated at the end.
	c.mu.Lock()
	n, term := len(c.created), len(c.terminated)
	c.mu.Unlock()
	if n != 2 || term != 2 {
		t.Errorf("job clusters created %d, terminated %d; want 2 and 2", n, term)
	}
	var nbRun int64
	for _, tk := range run.Tasks {
		if tk.TaskKey == "nb" {
			nbRun = tk.RunId
		}
	}
	out, err := w.Jobs.GetRunOutput(ctx, sdkjobs.GetRunOutputRequest{RunId: nbRun})
	if err != nil || out.NotebookOutput == nil || out.NotebookOutput.Result != "x=override" {
		t.Fatalf("notebook output = %+v, %v", out.NotebookOutput, err)
	}
	// A multi-task parent run has no single output.
	if _, err := w.Jobs.GetRunOutput(ctx, sdkjobs.GetRunOutputRequest{RunId: run.RunId}); !errors.Is(err, apierr.ErrInvalidParameterValue) {
		t.Errorf("parent run output: %v", err)
	}
	// Repair the failed tasks: fail.py still fails, so the repair fails too.
	rr, err := w.Jobs.RepairRunAndWait(ctx, sdkjobs.RepairRun{RunId: run.RunId, RerunAllFailedTasks: true}, withTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(rr.RepairHistory) != 0 {
		t.Errorf("repair history returned without include_history")
	}
	full, _ := w.Jobs.GetRun(ctx, sdkjobs.GetRunRequest{RunId: run.RunId, IncludeHistory: true})
	if len(full.RepairHistory) != 2 {
		t.Errorf("repair history = %+v", full.RepairHistory)
	}
}

func TestBadJobsAreRefusedAtCreate(t *testing.T) {
	srv := start(t, newFakeCompute(), newFakeRunner())
	cases := []struct {
		name string
		body string
		code string
	}{
		{"cycle", `{"tasks":[{"task_key":"a","existing_cluster_id":"allpurpose-1","spark_python_task":{"python_file":"/ok.py"},"depends_on":[{"task_key":"b"}]},
			{"task_key":"b","existing_cluster_id":"allpurpose-1","spark_python_task":{"python_file":"/ok.py"},"depends_on":[{"task_key":"a"}]}]}`, "INVALID_PARAMETER_VALUE"},
		{"missing cluster", `{"tasks":[{"task_key":"a","existing_cluster_id":"nope","spark_python_task":{"python_file":"/ok.py"}}]}`, "INVALID_PARAMETER_VALUE"},
		{"invalid cron", `{"schedule":{"quartz_cron_expression":"every day","timezone_id":"UTC"},"tasks":[]}`, "INVALID_PARAMETER_VALUE"},
		{"wrong type", `{"name":5}`, "MALFORMED_REQUEST"},
		{"malformed", `{"name":`, "MALFORMED_REQUEST"},
		{"unknown webhook", `{"webhook_notifications":{"on_start":[{"id":"nope"}]}}`, "INVALID_PARAMETER_VALUE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := srv.Do(srv.AdminToken, http.MethodPost, "/api/2.2/jobs/create", c.body)
			if r.Status != 400 || r.JSON(t)["error_code"] != c.code {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
	// Nothing was half-written.
	list := srv.Do(srv.AdminToken, http.MethodGet, "/api/2.2/jobs/list", nil)
	if _, has := list.JSON(t)["jobs"]; has {
		t.Errorf("a refused job was stored: %s", list.Body)
	}
}

func TestConcurrencyLimitQueuesRunsInOrder(t *testing.T) {
	c, r := newFakeCompute(), newFakeRunner()
	srv := start(t, c, r)
	w := srv.SDK(srv.AdminToken)
	job, err := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "q", MaxConcurrentRuns: 1, Queue: &sdkjobs.QueueSettings{Enabled: true},
		Tasks: []sdkjobs.Task{pyTask("a", "/ok.py")}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := 0; i < 6; i++ {
		resp, err := w.Jobs.RunNow(ctx, sdkjobs.RunNow{JobId: job.JobId})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.Response.RunId)
	}
	for _, id := range ids {
		run, err := w.Jobs.WaitGetRunJobTerminatedOrSkipped(ctx, id, time.Minute, nil)
		if err != nil || run.State.ResultState != sdkjobs.RunResultStateSuccess {
			t.Fatalf("run %d: %+v %v", id, run, err)
		}
	}
	r.mu.Lock()
	order := append([]int64(nil), r.order...)
	r.mu.Unlock()
	if fmt.Sprint(order) != fmt.Sprint(ids) {
		t.Errorf("runs started in order %v, want %v", order, ids)
	}
	// With queueing off, a run over the limit is skipped.
	job2, _ := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "noq", MaxConcurrentRuns: 1, Queue: &sdkjobs.QueueSettings{Enabled: false},
		Tasks: []sdkjobs.Task{pyTask("a", "/slow.py")}})
	first, _ := w.Jobs.RunNow(ctx, sdkjobs.RunNow{JobId: job2.JobId})
	second, _ := w.Jobs.RunNow(ctx, sdkjobs.RunNow{JobId: job2.JobId})
	run, err := w.Jobs.GetRun(ctx, sdkjobs.GetRunRequest{RunId: second.Response.RunId})
	if err != nil || run.State.LifeCycleState != sdkjobs.RunLifeCycleStateSkipped {
		t.Errorf("second run = %+v, %v", run.State, err)
	}
	canceled, err := w.Jobs.CancelRunAndWait(ctx, sdkjobs.CancelRun{RunId: first.Response.RunId}, withTimeout(time.Minute))
	if err != nil || canceled.State.ResultState != sdkjobs.RunResultStateCanceled {
		t.Errorf("canceled run = %+v, %v", canceled, err)
	}
}

func TestJobPermissionsGateRunsAndEdits(t *testing.T) {
	srv := start(t, newFakeCompute(), newFakeRunner())
	admin := srv.SDK(srv.AdminToken)
	user := srv.NewUser("runner@example.com", false)
	w := srv.SDK(user.Token)
	job, err := admin.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "private", Tasks: []sdkjobs.Task{pyTask("a", "/ok.py")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Jobs.GetByJobId(ctx, job.JobId); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("get without permission: %v", err)
	}
	if _, err := w.Jobs.RunNow(ctx, sdkjobs.RunNow{JobId: job.JobId}); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("run-now without permission: %v", err)
	}
	list, _ := w.Jobs.ListAll(ctx, sdkjobs.ListJobsRequest{})
	if len(list) != 0 {
		t.Errorf("user lists %d jobs it cannot see", len(list))
	}
	_, err = admin.Jobs.UpdatePermissions(ctx, sdkjobs.JobPermissionsRequest{JobId: fmt.Sprint(job.JobId),
		AccessControlList: []sdkjobs.JobAccessControlRequest{{UserName: user.UserName, PermissionLevel: sdkjobs.JobPermissionLevelCanManageRun}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Jobs.RunNowAndWait(ctx, sdkjobs.RunNow{JobId: job.JobId}, withTimeout(time.Minute)); err != nil {
		t.Errorf("run-now with CAN_MANAGE_RUN: %v", err)
	}
	err = w.Jobs.Update(ctx, sdkjobs.UpdateJob{JobId: job.JobId, NewSettings: &sdkjobs.JobSettings{Name: "renamed"}})
	if !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("update with CAN_MANAGE_RUN: %v", err)
	}
	perms, err := admin.Jobs.GetPermissions(ctx, sdkjobs.GetJobPermissionsRequest{JobId: fmt.Sprint(job.JobId)})
	if err != nil {
		t.Fatal(err)
	}
	owner := ""
	for _, a := range perms.AccessControlList {
		for _, p := range a.AllPermissions {
			if p.PermissionLevel == sdkjobs.JobPermissionLevelIsOwner {
				owner = a.UserName
			}
		}
	}
	if owner != "admin@tandem.local" {
		t.Errorf("owner = %q", owner)
	}
}

func TestUpdateMergesTasksAndResetReplaces(t *testing.T) {
	srv := start(t, newFakeCompute(), newFakeRunner())
	w := srv.SDK(srv.AdminToken)
	job, _ := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "m", Tasks: []sdkjobs.Task{pyTask("a", "/ok.py"), pyTask("b", "/ok.py")}})
	err := w.Jobs.Update(ctx, sdkjobs.UpdateJob{JobId: job.JobId, NewSettings: &sdkjobs.JobSettings{Tasks: []sdkjobs.Task{pyTask("b", "/fail.py"), pyTask("c", "/ok.py")}},
		FieldsToRemove: []string{"tasks/a"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := w.Jobs.GetByJobId(ctx, job.JobId)
	files := map[string]string{}
	for _, tk := range got.Settings.Tasks {
		files[tk.TaskKey] = tk.SparkPythonTask.PythonFile
	}
	if len(files) != 2 || files["b"] != "/fail.py" || files["c"] != "/ok.py" || got.Settings.Name != "m" {
		t.Errorf("after update: %v name %q", files, got.Settings.Name)
	}
	if err := w.Jobs.Reset(ctx, sdkjobs.ResetJob{JobId: job.JobId, NewSettings: sdkjobs.JobSettings{Name: "r", Tasks: []sdkjobs.Task{pyTask("z", "/ok.py")}}}); err != nil {
		t.Fatal(err)
	}
	got, _ = w.Jobs.GetByJobId(ctx, job.JobId)
	if got.Settings.Name != "r" || len(got.Settings.Tasks) != 1 {
		t.Errorf("after reset: %+v", got.Settings)
	}
	// An update that would make a cycle is refused and changes nothing.
	bad := pyTask("z", "/ok.py", "z")
	if err := w.Jobs.Update(ctx, sdkjobs.UpdateJob{JobId: job.JobId, NewSettings: &sdkjobs.JobSettings{Tasks: []sdkjobs.Task{bad}}}); !errors.Is(err, apierr.ErrInvalidParameterValue) {
		t.Errorf("cyclic update: %v", err)
	}
	if err := w.Jobs.DeleteByJobId(ctx, job.JobId); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Jobs.GetByJobId(ctx, job.JobId); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("deleted job: %v", err)
	}
}

func TestScheduleFiresEachTickOnceAcrossRestarts(t *testing.T) {
	c, r := newFakeCompute(), newFakeRunner()
	dir := t.TempDir()
	srv := start(t, c, r, servertest.WithDataDir(dir))
	w := srv.SDK(srv.AdminToken)
	job, err := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "every-second", MaxConcurrentRuns: 100,
		Schedule: &sdkjobs.CronSchedule{QuartzCronExpression: "* * * * * ?", TimezoneId: "Europe/Madrid"},
		Tasks:    []sdkjobs.Task{pyTask("a", "/ok.py")}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	srv.Close()
	time.Sleep(1500 * time.Millisecond) // down through at least one tick
	srv = start(t, c, r, servertest.WithDataDir(dir))
	w = srv.SDK(srv.AdminToken)
	time.Sleep(2500 * time.Millisecond)
	if err := w.Jobs.Update(ctx, sdkjobs.UpdateJob{JobId: job.JobId, NewSettings: &sdkjobs.JobSettings{
		Schedule: &sdkjobs.CronSchedule{QuartzCronExpression: "* * * * * ?", TimezoneId: "Europe/Madrid", PauseStatus: sdkjobs.PauseStatusPaused}}}); err != nil {
		t.Fatal(err)
	}
	runs, err := w.Jobs.ListRunsAll(ctx, sdkjobs.ListRunsRequest{JobId: job.JobId})
	if err != nil {
		t.Fatal(err)
	}
	// About one run per second of the ~6.5 s, the downtime included: the
	// ticks missed while down (within the grace period) fire after the restart.
	if len(runs) < 5 || len(runs) > 8 {
		t.Errorf("%d scheduled runs in about 6.5 s, want 5-8", len(runs))
	}
	for _, run := range runs {
		if run.Trigger != sdkjobs.TriggerTypePeriodic {
			t.Errorf("run %d trigger %s", run.RunId, run.Trigger)
		}
	}
	r.mu.Lock()
	for h, n := range r.starts {
		if n != 1 {
			t.Errorf("attempt %s started %d times", h, n)
		}
	}
	r.mu.Unlock()
}

func TestARunInProgressSurvivesAControlPlaneRestart(t *testing.T) {
	c, r := newFakeCompute(), newFakeRunner()
	dir := t.TempDir()
	srv := start(t, c, r, servertest.WithDataDir(dir))
	w := srv.SDK(srv.AdminToken)
	job, _ := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "long", Tasks: []sdkjobs.Task{pyTask("a", "/slow.py"), pyTask("b", "/ok.py", "a")}})
	resp, err := w.Jobs.RunNow(ctx, sdkjobs.RunNow{JobId: job.JobId})
	if err != nil {
		t.Fatal(err)
	}
	runID := resp.Response.RunId
	deadline := time.Now().Add(10 * time.Second)
	for {
		run, _ := w.Jobs.GetRun(ctx, sdkjobs.GetRunRequest{RunId: runID})
		if run.State.LifeCycleState == sdkjobs.RunLifeCycleStateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("run never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.Close()
	// While the control plane is down, the task finishes on its cluster.
	r.mu.Lock()
	for _, a := range r.attempts {
		a.l.Task.SparkPythonTask.PythonFile = "/ok.py"
	}
	r.mu.Unlock()
	srv = start(t, c, r, servertest.WithDataDir(dir))
	w = srv.SDK(srv.AdminToken)
	run, err := w.Jobs.WaitGetRunJobTerminatedOrSkipped(ctx, runID, time.Minute, nil)
	if err != nil || run.State.ResultState != sdkjobs.RunResultStateSuccess {
		t.Fatalf("run after restart = %+v, %v", run.State, err)
	}
	runs, _ := w.Jobs.ListRunsAll(ctx, sdkjobs.ListRunsRequest{JobId: job.JobId})
	if len(runs) != 1 {
		t.Errorf("%d runs after the restart, want 1", len(runs))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for h, n := range r.starts {
		if n != 1 {
			t.Errorf("attempt %s started %d times", h, n)
		}
	}
}

func TestWebhooksOnStartSuccessAndFailure(t *testing.T) {
	var mu sync.Mutex
	var events []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p map[string]any
		json.NewDecoder(r.Body).Decode(&p)
		mu.Lock()
		events = append(events, fmt.Sprint(p["event_type"]))
		mu.Unlock()
	}))
	defer hook.Close()
	srv := start(t, newFakeCompute(), newFakeRunner())
	w := srv.SDK(srv.AdminToken)
	dest, err := w.NotificationDestinations.Create(ctx, settings.CreateNotificationDestinationRequest{DisplayName: "hook",
		Config: &settings.Config{GenericWebhook: &settings.GenericWebhookConfig{Url: hook.URL, Password: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	if dest.Config.GenericWebhook.Password != "" {
		t.Error("destination password returned")
	}
	wh := &sdkjobs.WebhookNotifications{OnStart: []sdkjobs.Webhook{{Id: dest.Id}}, OnSuccess: []sdkjobs.Webhook{{Id: dest.Id}}, OnFailure: []sdkjobs.Webhook{{Id: dest.Id}}}
	ok, _ := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "ok", WebhookNotifications: wh, Tasks: []sdkjobs.Task{pyTask("a", "/ok.py")}})
	bad, _ := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "bad", WebhookNotifications: wh, Tasks: []sdkjobs.Task{pyTask("a", "/fail.py")}})
	w.Jobs.RunNowAndWait(ctx, sdkjobs.RunNow{JobId: ok.JobId}, withTimeout(time.Minute))
	w.Jobs.RunNowAndWait(ctx, sdkjobs.RunNow{JobId: bad.JobId}, withTimeout(time.Minute))
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(events)
		got := strings.Join(events, ",")
		mu.Unlock()
		if n >= 4 {
			for _, want := range []string{"jobs.on_start", "jobs.on_success", "jobs.on_failure"} {
				if !strings.Contains(got, want) {
					t.Errorf("events %s lack %s", got, want)
				}
			}
			if n != 4 {
				t.Errorf("events = %s, want 4", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook events = %s", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTaskValuesReachTheTasksAfter(t *testing.T) {
	c, r := newFakeCompute(), newFakeRunner()
	srv := start(t, c, r)
	w := srv.SDK(srv.AdminToken)
	run, err := w.Jobs.SubmitAndWait(ctx, sdkjobs.SubmitRun{RunName: "values", Tasks: []sdkjobs.SubmitTask{
		{TaskKey: "first", ExistingClusterId: "allpurpose-1", SparkPythonTask: &sdkjobs.SparkPythonTask{PythonFile: "/values.py"}},
		{TaskKey: "second", DependsOn: []sdkjobs.TaskDependency{{TaskKey: "first"}}, ExistingClusterId: "allpurpose-1",
			SparkPythonTask: &sdkjobs.SparkPythonTask{PythonFile: "/ok.py"}},
	}}, withTimeout(time.Minute))
	if err != nil || run.State.ResultState != sdkjobs.RunResultStateSuccess {
		t.Fatalf("run: %v %+v", err, run)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.attempts {
		want := ""
		if a.l.TaskKey == "second" {
			want = `{"n":41}`
		}
		if got := string(a.l.TaskValues["first"]); got != want {
			t.Errorf("task %s got task values %q from first, want %q", a.l.TaskKey, got, want)
		}
	}
	// get-output keeps them to itself.
	out := srv.Do(srv.AdminToken, "GET", fmt.Sprintf("/api/2.1/jobs/runs/get-output?run_id=%d", run.Tasks[0].RunId), nil)
	if strings.Contains(string(out.Body), "task_values") {
		t.Errorf("get-output shows task values: %s", out.Body)
	}
}

// A planned failover drains the region: it counts the runs still going
// and, if asked, cancels them (dr's Work interface).
func TestDrainCountsAndCancelsTheRunsStillGoing(t *testing.T) {
	c, r := newFakeCompute(), newFakeRunner()
	srv := start(t, c, r)
	w := srv.SDK(srv.AdminToken)
	job, err := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "long", MaxConcurrentRuns: 2, Tasks: []sdkjobs.Task{pyTask("a", "/slow.py")}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for range 2 {
		resp, err := w.Jobs.RunNow(ctx, sdkjobs.RunNow{JobId: job.JobId})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.Response.RunId)
	}
	if n, err := srv.Jobs.ActiveWork(ctx); err != nil || n != 2 {
		t.Fatalf("active work = %d, %v; want 2", n, err)
	}
	if n, err := srv.Jobs.CancelWork(ctx); err != nil || n != 2 {
		t.Fatalf("cancelled = %d, %v; want 2", n, err)
	}
	for _, id := range ids {
		run, err := w.Jobs.WaitGetRunJobTerminatedOrSkipped(ctx, id, time.Minute, nil)
		if err != nil || run.State.ResultState != sdkjobs.RunResultStateCanceled {
			t.Fatalf("run %d after the drain: %+v %v", id, run.State, err)
		}
	}
	if n, err := srv.Jobs.ActiveWork(ctx); err != nil || n != 0 {
		t.Fatalf("active work after the drain = %d, %v; want 0", n, err)
	}
}
