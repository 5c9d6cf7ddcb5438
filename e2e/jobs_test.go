//go:build spark

package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/jobs"
	"github.com/databricks/databricks-sdk-go/service/workspace"

	tcompute "github.com/tandemdata/tandem/internal/compute"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// The job's sources: what each task type runs.
const (
	setupNotebook = `# Databricks notebook source
import sys
greeting = dbutils.widgets.get("greeting")
print("greeting", greeting)
pw = dbutils.secrets.get("e2e-jobs", "pw")
print("the secret is", pw)
print("sum", spark.range(0, 100).groupBy().sum("id").collect()[0][0])
dbutils.jobs.taskValues.set(key="n", value=41)

# COMMAND ----------

dbutils.fs.put("dbfs:/jobs/from-setup.txt", greeting, True)
dbutils.notebook.exit("setup-ok")
`
	jupyterNotebook = `{"cells": [
 {"cell_type": "code", "metadata": {}, "execution_count": null, "outputs": [],
  "source": ["n = dbutils.jobs.taskValues.get(taskKey=\"setup\", key=\"n\", debugValue=0)\n", "print(\"from setup\", n)\n"]},
 {"cell_type": "code", "metadata": {}, "execution_count": null, "outputs": [],
  "source": ["dbutils.notebook.exit(str(n + spark.range(1).count()))"]}
 ],
 "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
  "language_info": {"name": "python"}},
 "nbformat": 4, "nbformat_minor": 5}`
	sqlNotebook = `-- Databricks notebook source
SELECT 6 * 7 AS answer_from_sql_notebook
`
	mainPy = `import sys
print("python task args", sys.argv[1:])
print("python task rows", spark.range(0, 1000).count())
`
	submitPy = `import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("submit args", sys.argv[1:], "master", spark.sparkContext.master)
print("submit rows", spark.range(0, 500).count())
spark.stop()
`
	failPy = `def explode():
    raise ValueError("the failing task failed on purpose")

print("about to fail")
explode()
`
	wheelInit = `import sys

def double(x):
    return 2 * x

def main():
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.getOrCreate()
    # double is pickled by reference: the executors import this package.
    total = spark.sparkContext.parallelize(range(10), 2).map(double).sum()
    print("wheel args", sys.argv[1:], "total", total)
`
)

// demoWheel builds a pure-Python wheel: a zip with a package and its
// dist-info, naming a console-script entry point.
func demoWheel(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for name, body := range map[string]string{
		"tandem_demo/__init__.py":                    wheelInit,
		"tandem_demo-0.1.dist-info/METADATA":         "Metadata-Version: 2.1\nName: tandem-demo\nVersion: 0.1\n",
		"tandem_demo-0.1.dist-info/WHEEL":            "Wheel-Version: 1.0\nGenerator: e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
		"tandem_demo-0.1.dist-info/entry_points.txt": "[console_scripts]\ndemo-main = tandem_demo:main\n",
		"tandem_demo-0.1.dist-info/RECORD":           "",
	} {
		f, err := z.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte(body))
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestJobsEveryTaskTypeOnOneRunningCluster runs one multi-task job through
// the Go SDK on one running all-purpose cluster: every task type on its
// real Spark (Python SOURCE and Jupyter notebooks, a SQL notebook, Python
// files from the workspace and DBFS, spark-submit of a DBFS file, a wheel
// library's entry point, SQL files), task values between tasks, widgets
// from job parameters, a redacted secret, a failing task with its trace,
// and run_if. Then a Jobs Light job cluster, charged as JOBS_LIGHT.
func TestJobsEveryTaskTypeOnOneRunningCluster(t *testing.T) {
	srv := startRegion(t)
	// Stop the control plane before startRegion's cleanup deletes the
	// instances: a reconciler still running would replace the nodes it
	// sees lost, and those agents would outlive the test.
	t.Cleanup(func() { srv.Close() })
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)

	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "jobs", SparkVersion: latest(t, w),
		NodeTypeId: "tandem.small", NumWorkers: 1, SparkConf: sparkConf, AutoterminationMinutes: 30})
	if err != nil {
		t.Fatal(err)
	}

	// The sources, in the workspace and DBFS.
	if err := w.Workspace.MkdirsByPath(ctx, "/Shared/jobs"); err != nil {
		t.Fatal(err)
	}
	imports := []workspace.Import{
		{Path: "/Shared/jobs/setup", Format: workspace.ImportFormatSource, Language: workspace.LanguagePython, Content: b64(setupNotebook)},
		{Path: "/Shared/jobs/jupyter", Format: workspace.ImportFormatJupyter, Content: b64(jupyterNotebook)},
		{Path: "/Shared/jobs/answer", Format: workspace.ImportFormatSource, Language: workspace.LanguageSql, Content: b64(sqlNotebook)},
		{Path: "/Shared/jobs/main.py", Format: workspace.ImportFormatRaw, Content: b64(mainPy)},
		{Path: "/Shared/jobs/count.sql", Format: workspace.ImportFormatRaw, Content: b64("SELECT 'from-sql-file' AS src, count(*) AS n FROM range(10)")},
		{Path: "/Shared/jobs/query.sql", Format: workspace.ImportFormatRaw, Content: b64("SELECT 'from-query-id' AS src")},
	}
	for _, im := range imports {
		if err := w.Workspace.Import(ctx, im); err != nil {
			t.Fatalf("import %s: %v", im.Path, err)
		}
	}
	for path, body := range map[string][]byte{"dbfs:/jobs/main.py": []byte(mainPy), "dbfs:/jobs/submit.py": []byte(submitPy),
		"dbfs:/jobs/fail.py": []byte(failPy), "dbfs:/jobs/tandem_demo-0.1-py3-none-any.whl": demoWheel(t)} {
		if err := w.Dbfs.WriteFile(ctx, path, body); err != nil {
			t.Fatal(err)
		}
	}
	secret := "s3cr3t-value-" + fmt.Sprint(time.Now().UnixNano())
	if err := w.Secrets.CreateScope(ctx, workspace.CreateScope{Scope: "e2e-jobs"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Secrets.PutSecret(ctx, workspace.PutSecret{Scope: "e2e-jobs", Key: "pw", StringValue: secret}); err != nil {
		t.Fatal(err)
	}

	on := cl.ClusterId
	after := func(keys ...string) []jobs.TaskDependency {
		var d []jobs.TaskDependency
		for _, k := range keys {
			d = append(d, jobs.TaskDependency{TaskKey: k})
		}
		return d
	}
	// One chain keeps at most two tasks' drivers on the two cores at once.
	tasks := []jobs.Task{
		{TaskKey: "setup", ExistingClusterId: on, NotebookTask: &jobs.NotebookTask{NotebookPath: "/Shared/jobs/setup"}},
		{TaskKey: "jupyter", DependsOn: after("setup"), ExistingClusterId: on, NotebookTask: &jobs.NotebookTask{NotebookPath: "/Shared/jobs/jupyter"}},
		{TaskKey: "sql_notebook", DependsOn: after("jupyter"), ExistingClusterId: on, NotebookTask: &jobs.NotebookTask{NotebookPath: "/Shared/jobs/answer"}},
		{TaskKey: "python_workspace", DependsOn: after("sql_notebook"), ExistingClusterId: on,
			SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "/Shared/jobs/main.py", Source: jobs.SourceWorkspace, Parameters: []string{"ws", "{{job.parameters.greeting}}"}}},
		{TaskKey: "python_dbfs", DependsOn: after("python_workspace"), ExistingClusterId: on,
			SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/jobs/main.py", Parameters: []string{"dbfs"}}},
		{TaskKey: "submit", DependsOn: after("python_dbfs"), ExistingClusterId: on,
			SparkSubmitTask: &jobs.SparkSubmitTask{Parameters: []string{"--conf", "spark.ui.showConsoleProgress=false", "dbfs:/jobs/submit.py", "x", "dbfs:/not/fetched"}}},
		{TaskKey: "wheel", DependsOn: after("submit"), ExistingClusterId: on,
			Libraries:       []compute.Library{{Whl: "dbfs:/jobs/tandem_demo-0.1-py3-none-any.whl"}},
			PythonWheelTask: &jobs.PythonWheelTask{PackageName: "tandem_demo", EntryPoint: "demo-main", Parameters: []string{"p1"}}},
		{TaskKey: "sql_file", DependsOn: after("wheel"),
			SqlTask: &jobs.SqlTask{WarehouseId: on, File: &jobs.SqlTaskFile{Path: "/Shared/jobs/count.sql", Source: jobs.SourceWorkspace}}},
		{TaskKey: "sql_query", DependsOn: after("sql_file"),
			SqlTask: &jobs.SqlTask{WarehouseId: on, Query: &jobs.SqlTaskQuery{QueryId: "/Shared/jobs/query.sql"}}},
		{TaskKey: "fails", DependsOn: after("setup"), ExistingClusterId: on, SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/jobs/fail.py"}},
		{TaskKey: "cleanup", DependsOn: after("fails"), RunIf: jobs.RunIfAllDone, ExistingClusterId: on,
			SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/jobs/main.py", Parameters: []string{"cleanup"}}},
		{TaskKey: "skipped", DependsOn: after("fails"), ExistingClusterId: on,
			SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/jobs/main.py"}},
	}
	job, err := w.Jobs.Create(ctx, jobs.CreateJob{Name: "every task type", Tasks: tasks,
		Parameters: []jobs.JobParameterDefinition{{Name: "greeting", Default: "hello"}}})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	now, err := w.Jobs.RunNow(ctx, jobs.RunNow{JobId: job.JobId, JobParameters: map[string]string{"greeting": "bonjour"}})
	if err != nil {
		t.Fatal(err)
	}
	run, err := w.Jobs.WaitGetRunJobTerminatedOrSkipped(ctx, now.Response.RunId, 5*time.Minute, nil)
	if err != nil {
		// Say which task it waits for.
		if r, gerr := w.Jobs.GetRun(ctx, jobs.GetRunRequest{RunId: now.Response.RunId}); gerr == nil {
			for _, rt := range r.Tasks {
				t.Logf("task %-16s %s", rt.TaskKey, toJSON(rt.State))
			}
		}
		t.Fatal(err)
	}
	t.Logf("run of %d tasks: %s in %s", len(run.Tasks), run.State.ResultState, time.Since(started).Round(time.Second))

	byKey := map[string]jobs.RunTask{}
	for _, rt := range run.Tasks {
		byKey[rt.TaskKey] = rt
		if rt.StartTime > 0 && rt.EndTime > 0 {
			t.Logf("task %-16s +%5.1fs for %5.1fs", rt.TaskKey, float64(rt.StartTime-run.StartTime)/1000, float64(rt.EndTime-rt.StartTime)/1000)
		}
	}
	output := func(key string) *jobs.RunOutput {
		t.Helper()
		out, err := w.Jobs.GetRunOutputByRunId(ctx, byKey[key].RunId)
		if err != nil {
			t.Fatalf("get-output of %s: %v", key, err)
		}
		return out
	}
	for key, want := range map[string]jobs.RunResultState{"setup": "SUCCESS", "jupyter": "SUCCESS", "sql_notebook": "SUCCESS",
		"python_workspace": "SUCCESS", "python_dbfs": "SUCCESS", "submit": "SUCCESS", "wheel": "SUCCESS", "sql_file": "SUCCESS",
		"sql_query": "SUCCESS", "fails": "FAILED", "cleanup": "SUCCESS", "skipped": "UPSTREAM_FAILED"} {
		rt, ok := byKey[key]
		if !ok || rt.State == nil || rt.State.ResultState != want {
			var out jobs.RunOutput
			if ok {
				out = *output(key)
			}
			t.Errorf("task %s: %s, want %s (%s)\nlogs: %s\nerror: %s\n%s", key, toJSON(rt.State), want, key, out.Logs, out.Error, out.ErrorTrace)
		}
	}
	if run.State.ResultState != jobs.RunResultStateFailed {
		t.Errorf("the run: %s, want FAILED (a leaf task was skipped)", run.State.ResultState)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Widgets from job parameters, the secret redacted, a notebook's exit value.
	setup := output("setup")
	if setup.NotebookOutput == nil || setup.NotebookOutput.Result != "setup-ok" ||
		!strings.Contains(setup.Logs, "greeting bonjour") || !strings.Contains(setup.Logs, "the secret is [REDACTED]") ||
		!strings.Contains(setup.Logs, "sum 4950") {
		t.Errorf("setup: %s\nlogs: %s", toJSON(setup.NotebookOutput), setup.Logs)
	}
	if b, err := w.Dbfs.ReadFile(ctx, "dbfs:/jobs/from-setup.txt"); err != nil || string(b) != "bonjour" {
		t.Errorf("setup's dbutils.fs.put: %q %v", b, err)
	}
	// A task value from setup, read by the Jupyter notebook.
	if out := output("jupyter"); out.NotebookOutput == nil || out.NotebookOutput.Result != "42" || !strings.Contains(out.Logs, "from setup 41") {
		t.Errorf("jupyter: %s\nlogs: %s", toJSON(out.NotebookOutput), out.Logs)
	}
	for key, want := range map[string][]string{
		"sql_notebook":     {"answer_from_sql_notebook", "42"},
		"python_workspace": {"python task args ['ws', 'bonjour']", "python task rows 1000"},
		"python_dbfs":      {"python task args ['dbfs']", "python task rows 1000"},
		"submit":           {"submit args ['x', 'dbfs:/not/fetched'] master spark://", "submit rows 500"},
		"wheel":            {"wheel args ['p1'] total 90"},
		"sql_file":         {"from-sql-file", "10"},
		"sql_query":        {"from-query-id"},
		"cleanup":          {"python task args ['cleanup']"},
	} {
		logs := output(key).Logs
		for _, s := range want {
			if !strings.Contains(logs, s) {
				t.Errorf("%s: %q not in its logs:\n%s", key, s, logs)
			}
		}
	}
	fails := output("fails")
	if !strings.Contains(fails.Error, "ValueError: the failing task failed on purpose") ||
		!strings.Contains(fails.ErrorTrace, "Traceback") || !strings.Contains(fails.ErrorTrace, "in explode") ||
		!strings.Contains(fails.Logs, "about to fail") {
		t.Errorf("the failing task's output: error %q\ntrace %s\nlogs %s", fails.Error, fails.ErrorTrace, fails.Logs)
	}
	// The secret's value is in no output of the run.
	for key := range byKey {
		out := output(key)
		if strings.Contains(toJSON(out), secret) {
			t.Errorf("the secret's value is in %s's output", key)
		}
	}

	// Usage of the all-purpose cluster is All-Purpose compute.
	usage, err := srv.Server.Compute.ClusterUsage(ctx, cl.ClusterId)
	if err != nil || len(usage) != 2 {
		t.Fatalf("usage of the all-purpose cluster: %v %s", err, toJSON(usage))
	}
	for _, u := range usage {
		if u.ComputeType != tcompute.ComputeAllPurpose {
			t.Errorf("all-purpose cluster usage: %s", toJSON(u))
		}
	}

	jobsLight(t, srv, w)
}

// jobsLight runs a job on a Jobs Light cluster: its runtime is listed in
// spark-versions, refused for all-purpose clusters, runs the task on
// Spark, and the cluster's usage is charged as JOBS_LIGHT.
func jobsLight(t *testing.T, srv *servertest.Server, w *databricks.WorkspaceClient) {
	ctx := context.Background()
	versions, err := w.Clusters.SparkVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	light := ""
	for _, v := range versions.Versions {
		if strings.HasPrefix(v.Key, "apache-spark-") {
			light = v.Key
		}
	}
	if light == "" {
		t.Fatalf("no Jobs Light runtime in spark-versions: %s", toJSON(versions))
	}
	_, err = w.Clusters.Create(ctx, compute.CreateCluster{ClusterName: "light", SparkVersion: light, NodeTypeId: "tandem.small", NumWorkers: 1})
	var ae *apierr.APIError
	if !errors.As(err, &ae) || ae.ErrorCode != "INVALID_PARAMETER_VALUE" || ae.StatusCode != 400 {
		t.Fatalf("an all-purpose cluster on a light runtime: %v", err)
	}

	run, err := w.Jobs.SubmitAndWait(ctx, jobs.SubmitRun{RunName: "light", Tasks: []jobs.SubmitTask{{TaskKey: "light",
		NewCluster:      &compute.ClusterSpec{SparkVersion: light, NodeTypeId: "tandem.small", NumWorkers: 0, SparkConf: sparkConf},
		SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/jobs/main.py", Parameters: []string{"light"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := w.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
	if run.State.ResultState != jobs.RunResultStateSuccess || !strings.Contains(out.Logs, "python task rows 1000") {
		t.Fatalf("the Jobs Light run: %s %s\nlogs: %s\n%s %s", run.State.ResultState, run.State.StateMessage, out.Logs, out.Error, out.ErrorTrace)
	}
	id := run.Tasks[0].ClusterInstance.ClusterId
	waitFor(t, "the job cluster terminated", 60*time.Second, func() (bool, string) {
		c, err := w.Clusters.GetByClusterId(ctx, id)
		if err != nil {
			return false, err.Error()
		}
		return c.State == compute.StateTerminated, string(c.State)
	})
	c, _ := w.Clusters.GetByClusterId(ctx, id)
	if c.ClusterSource != compute.ClusterSourceJob || c.SparkVersion != light {
		t.Errorf("the job cluster: source %s, runtime %s", c.ClusterSource, c.SparkVersion)
	}
	usage, err := srv.Server.Compute.ClusterUsage(ctx, id)
	if err != nil || len(usage) == 0 {
		t.Fatalf("usage of the light cluster: %v %s", err, toJSON(usage))
	}
	for _, u := range usage {
		if u.ComputeType != tcompute.ComputeJobsLight || u.EndMillis == 0 {
			t.Errorf("light cluster usage: %s", toJSON(u))
		}
	}
}

// TestJobRunSurvivesKillNineOfTheControlPlane kills the control plane
// (a real `tandem server` process) with SIGKILL while a job's task runs on
// its cluster: the task keeps running, and once the control plane is back
// the run ends SUCCESS once, with one attempt whose code ran once.
func TestJobRunSurvivesKillNineOfTheControlPlane(t *testing.T) {
	needSpark(t)
	bin := os.Getenv("TANDEM_BIN")
	dir := t.TempDir()
	cleanupInstances(t, dir)
	addr := servertest.FreeAddr(t)
	token := fmt.Sprintf("dapi%032x", time.Now().UnixNano())
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("compute:\n  heartbeat_seconds: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var server *exec.Cmd
	start := func() {
		logf, err := os.OpenFile(filepath.Join(dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		server = exec.Command(bin, "server", "--data-dir", dir, "--listen", addr, "--region", "kill9", "--config", cfgFile)
		server.Env = append(os.Environ(), "TANDEM_BOOTSTRAP_TOKEN="+token)
		server.Stdout, server.Stderr = logf, logf
		if err := server.Start(); err != nil {
			t.Fatal(err)
		}
		waitHealthy(t, "https://"+addr, filepath.Join(dir, "tls", "ca.pem"))
	}
	start()
	t.Cleanup(func() {
		server.Process.Signal(syscall.SIGTERM)
		server.Wait()
	})
	w := sdkFor(t, "https://"+addr, filepath.Join(dir, "tls", "ca.pem"), token)
	ctx := context.Background()

	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "kill9", SparkVersion: latest(t, w),
		NodeTypeId: "tandem.small", NumWorkers: 1, SparkConf: sparkConf})
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "started.txt")
	script := `import sys, time
with open(sys.argv[1], "a") as f:
    f.write("started\n")
time.sleep(12)
print("rows", spark.range(1000).count())
`
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/e2e/kill9.py", []byte(script)); err != nil {
		t.Fatal(err)
	}
	job, err := w.Jobs.Create(ctx, jobs.CreateJob{Name: "kill9", Tasks: []jobs.Task{{TaskKey: "slow", ExistingClusterId: cl.ClusterId,
		SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/e2e/kill9.py", Parameters: []string{marker}}}}})
	if err != nil {
		t.Fatal(err)
	}
	now, err := w.Jobs.RunNow(ctx, jobs.RunNow{JobId: job.JobId})
	if err != nil {
		t.Fatal(err)
	}
	runID := now.Response.RunId
	waitFor(t, "the task's code running", 60*time.Second, func() (bool, string) {
		_, err := os.Stat(marker)
		return err == nil, fmt.Sprint(err)
	})

	// SIGKILL: no shutdown, nothing flushed.
	server.Process.Kill()
	server.Wait()
	down := time.Now()
	time.Sleep(2 * time.Second)
	start()
	t.Logf("control plane back after %s", time.Since(down).Round(time.Millisecond))

	run, err := w.Jobs.WaitGetRunJobTerminatedOrSkipped(ctx, runID, 3*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := w.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
	if run.State.ResultState != jobs.RunResultStateSuccess || !strings.Contains(out.Logs, "rows 1000") {
		t.Fatalf("the run across kill -9: %s %s\nlogs: %s\n%s", run.State.ResultState, run.State.StateMessage, out.Logs, out.Error)
	}
	if len(run.Tasks) != 1 || run.Tasks[0].AttemptNumber != 0 || len(run.RepairHistory) > 1 {
		t.Errorf("attempts: %s", toJSON(run.Tasks))
	}
	if b, _ := os.ReadFile(marker); string(b) != "started\n" {
		t.Errorf("the task's code ran %d times", strings.Count(string(b), "started"))
	}
	runs, err := w.Jobs.ListRunsAll(ctx, jobs.ListRunsRequest{JobId: job.JobId})
	if err != nil || len(runs) != 1 || runs[0].RunId != runID {
		t.Errorf("runs of the job after the restart: %v %s", err, toJSON(runs))
	}
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
}

func waitHealthy(t *testing.T, url, caFile string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(caFile); err == nil {
			c := &http.Client{Transport: transportFor(t, caFile), Timeout: 2 * time.Second}
			if r, err := c.Get(url + "/healthz"); err == nil {
				r.Body.Close()
				if r.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not become healthy", url)
}

func transportFor(t *testing.T, caFile string) *http.Transport {
	pool, err := pki.LoadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
}

func sdkFor(t *testing.T, url, caFile, token string) *databricks.WorkspaceClient {
	t.Helper()
	w, err := databricks.NewWorkspaceClient(&databricks.Config{Host: url, Token: token, HTTPTransport: transportFor(t, caFile),
		RetryTimeoutSeconds: 20, RateLimitPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return w
}
