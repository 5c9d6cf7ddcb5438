//go:build spark

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/jobs"
	"github.com/databricks/databricks-sdk-go/service/workspace"

	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestInitScriptsEncryptionSparkUIAndDriverLogs runs one cluster with
// every feature that shapes a node: global and cluster init scripts from
// the workspace and DBFS, intra-cluster encryption (per-cluster secret,
// AES-GCM), local disk encryption; then a notebook using dbutils through
// the agent's relay, the Spark UI through the control plane, and the
// driver logs through the API.
func TestInitScriptsEncryptionSparkUIAndDriverLogs(t *testing.T) {
	srv := startRegion(t)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)

	if _, err := w.GlobalInitScripts.Create(ctx, compute.GlobalInitScriptCreateRequest{Name: "hello", Enabled: true,
		Script: b64("#!/bin/bash\necho \"hello from global on $DB_CLUSTER_ID driver=$DB_IS_DRIVER\"\n")}); err != nil {
		t.Fatal(err)
	}
	if err := w.Workspace.MkdirsByPath(ctx, "/Shared/e2e"); err != nil {
		t.Fatal(err)
	}
	if err := w.Workspace.Import(ctx, workspace.Import{Path: "/Shared/e2e/setup.sh", Format: workspace.ImportFormatAuto,
		Content: b64("#!/bin/bash\necho workspace script ran\necho to stderr >&2\n")}); err != nil {
		t.Fatal(err)
	}
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/e2e/init.sh", []byte("#!/bin/bash\necho dbfs script ran\n")); err != nil {
		t.Fatal(err)
	}
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{
		ClusterName: "features", SparkVersion: latest(t, w), NodeTypeId: "tandem.small", NumWorkers: 1,
		EnableLocalDiskEncryption: true,
		SparkConf:                 merge(sparkConf, map[string]string{"spark.authenticate": "true"}),
		InitScripts: []compute.InitScriptInfo{
			{Workspace: &compute.WorkspaceStorageInfo{Destination: "/Shared/e2e/setup.sh"}},
			{Dbfs: &compute.DbfsStorageInfo{Destination: "dbfs:/e2e/init.sh"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := w.Clusters.EventsAll(ctx, compute.GetEvents{ClusterId: cl.ClusterId, EventTypes: []compute.EventType{compute.EventTypeInitScriptsFinished}})
	if err != nil || len(evs) != 1 || evs[0].Details.InitScripts == nil {
		t.Fatalf("INIT_SCRIPTS_FINISHED: %v %+v", err, evs)
	}
	is := evs[0].Details.InitScripts
	if len(is.Global) != 1 || len(is.Cluster) != 2 || is.Cluster[0].Workspace == nil || is.Cluster[1].Dbfs == nil ||
		is.Global[0].Status != "SUCCEEDED" || is.Cluster[0].Status != "SUCCEEDED" || is.Cluster[1].Status != "SUCCEEDED" {
		t.Fatalf("init script details: %s", toJSON(is))
	}
	driver := cl.Driver.InstanceId
	logs := filepath.Join(srv.DataDir, "compute", "logs", cl.ClusterId, driver)
	if out := grepDir(t, filepath.Join(logs, "init_scripts"), "hello from global on "+cl.ClusterId+" driver=TRUE"); out == "" {
		t.Fatal("the global script's output was not kept")
	}
	if grepDir(t, filepath.Join(logs, "init_scripts"), "to stderr") == "" {
		t.Fatal("the workspace script's stderr was not kept")
	}

	// A notebook on the cluster: dbutils through the agent's relay, a
	// shuffle through the encrypted RPC.
	nb := `# Databricks notebook source
conf = spark.sparkContext.getConf()
print("auth", conf.get("spark.authenticate"), "crypto", conf.get("spark.network.crypto.enabled"), conf.get("spark.network.crypto.cipher"), "io", conf.get("spark.io.encryption.enabled"))
df = spark.range(0, 20000).selectExpr("id % 5 as k").groupBy("k").count()
print("groups", df.count())
dbutils.fs.put("dbfs:/e2e/from-notebook.txt", "written on the cluster", True)
dbutils.notebook.exit("ok")
`
	if err := w.Workspace.Import(ctx, workspace.Import{Path: "/Shared/e2e/nb", Format: workspace.ImportFormatSource,
		Language: workspace.LanguagePython, Content: b64(nb)}); err != nil {
		t.Fatal(err)
	}
	run, err := w.Jobs.SubmitAndWait(ctx, jobs.SubmitRun{RunName: "features", Tasks: []jobs.SubmitTask{{TaskKey: "nb",
		ExistingClusterId: cl.ClusterId, NotebookTask: &jobs.NotebookTask{NotebookPath: "/Shared/e2e/nb"}}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
	if err != nil || run.State.ResultState != jobs.RunResultStateSuccess || out.NotebookOutput == nil || out.NotebookOutput.Result != "ok" {
		t.Fatalf("notebook run: %v %s %s; %s %s", err, run.State.ResultState, run.State.StateMessage, out.Error, out.ErrorTrace)
	}
	if b, err := w.Dbfs.ReadFile(ctx, "dbfs:/e2e/from-notebook.txt"); err != nil || string(b) != "written on the cluster" {
		t.Fatalf("the notebook's dbutils.fs.put: %q %v", b, err)
	}

	// Driver logs through the API, and the notebook's output in them.
	var stdout string
	waitFor(t, "the notebook's output in the driver's stdout", 20*time.Second, func() (bool, string) {
		r := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/clusters/driver-logs?cluster_id="+cl.ClusterId+"&log=stdout", nil)
		b, _ := base64.StdEncoding.DecodeString(fmt.Sprint(r.JSON(t)["data"]))
		stdout = string(b)
		return strings.Contains(stdout, "groups 5"), stdout
	})
	if !strings.Contains(stdout, "auth true crypto true AES/GCM/NoPadding io true") {
		t.Fatalf("the driver did not run with encryption on: %s", stdout)
	}
	r := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/clusters/driver-logs?cluster_id="+cl.ClusterId+"&log=log4j", nil)
	if b, _ := base64.StdEncoding.DecodeString(fmt.Sprint(r.JSON(t)["data"])); !strings.Contains(string(b), "Master") {
		t.Fatalf("log4j: %s", b)
	}

	// The Spark UI through the control plane, behind its authentication
	// and the cluster's permissions.
	ui := "/driver-proxy/o/0/" + cl.ClusterId + "/sparkui/"
	if r := srv.Do(srv.AdminToken, "GET", ui, nil); r.Status != 200 || !strings.Contains(string(r.Body), "Spark Master at spark://") {
		t.Fatalf("Spark UI: %d %.300s", r.Status, r.Body)
	}
	if r := srv.Do(srv.AdminToken, "GET", ui+"json/", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"aliveworkers" : 1`) {
		t.Fatalf("Spark UI json: %d %.300s", r.Status, r.Body)
	}
	if r := srv.Do("", "GET", ui, nil); r.Status != 401 {
		t.Fatalf("Spark UI without a token: %d", r.Status)
	}
	eve := srv.NewUser("eve@example.com", false)
	if r := srv.Do(eve.Token, "GET", ui, nil); r.Status != 403 {
		t.Fatalf("Spark UI without CAN_ATTACH_TO: %d", r.Status)
	}

	// The cluster secret lives in the cluster's processes only: not in the
	// store, not in any file of the control plane or the instances.
	secret := processEnv(t, driver, "_SPARK_AUTH_SECRET")
	if len(secret) < 20 {
		t.Fatalf("the master has no RPC secret in its environment: %q", secret)
	}
	if where := grepDir(t, srv.DataDir, secret); where != "" {
		t.Fatalf("the cluster secret is written in %s", where)
	}
	if r := srv.Do(srv.AdminToken, "GET", "/api/2.1/clusters/get?cluster_id="+cl.ClusterId, nil); bytes.Contains(r.Body, []byte(secret)) {
		t.Fatal("the cluster secret is in clusters/get")
	}
	// Local disk encryption: the node keeps the driver's output sealed;
	// the control plane's copy is readable.
	spool := filepath.Join(srv.DataDir, "instances", driver, "spool", "driver", "stdout")
	if b, err := os.ReadFile(spool); err != nil || len(b) == 0 || bytes.Contains(b, []byte("groups 5")) {
		t.Fatalf("the node's spool is not sealed (%v): %.200q", err, b)
	}

	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
}

// TestInitScriptFailurePutsTheClusterInError: a failing cluster script
// ends the start in ERROR with INIT_SCRIPT_FAILURE, its output kept.
func TestInitScriptFailurePutsTheClusterInError(t *testing.T) {
	srv := startRegion(t)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/e2e/fail.sh", []byte("#!/bin/bash\necho about to fail >&2\nexit 3\n")); err != nil {
		t.Fatal(err)
	}
	_, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "fails", SparkVersion: latest(t, w),
		NodeTypeId: "tandem.small", NumWorkers: 1, SparkConf: sparkConf,
		InitScripts: []compute.InitScriptInfo{{Dbfs: &compute.DbfsStorageInfo{Destination: "dbfs:/e2e/fail.sh"}}}})
	if err == nil || !strings.Contains(err.Error(), "ERROR") {
		t.Fatalf("CreateAndWait: %v", err)
	}
	all, _ := w.Clusters.ListAll(ctx, compute.ListClustersRequest{})
	cl := all[0]
	if cl.State != compute.StateError || cl.TerminationReason == nil || cl.TerminationReason.Code != compute.TerminationReasonCodeInitScriptFailure ||
		!strings.Contains(cl.StateMessage, "non-zero (3)") {
		t.Fatalf("cluster: %s %s %+v", cl.State, cl.StateMessage, cl.TerminationReason)
	}
	evs, _ := w.Clusters.EventsAll(ctx, compute.GetEvents{ClusterId: cl.ClusterId, EventTypes: []compute.EventType{compute.EventTypeInitScriptsFinished}})
	if len(evs) != 1 || len(evs[0].Details.InitScripts.Cluster) != 1 || evs[0].Details.InitScripts.Cluster[0].Status != "FAILED_EXECUTION" {
		t.Fatalf("events: %s", toJSON(evs))
	}
	if grepDir(t, filepath.Join(srv.DataDir, "compute", "logs", cl.ClusterId), "about to fail") == "" {
		t.Fatal("the failed script's output was not kept")
	}
	// ERROR is not running: deleting it terminates it at once.
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
}

// TestNodeLossAndControlPlaneRestart: killing an instance's processes
// produces NODES_LOST and the cluster returns to its size; then the
// control plane restarts while a task runs, and the task and the cluster
// carry on.
func TestNodeLossAndControlPlaneRestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	opts := []servertest.Option{servertest.WithDataDir(dir), func(c *config.Config) { c.Listen = addr }}
	srv := startRegion(t, opts...)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "sturdy", SparkVersion: latest(t, w),
		NodeTypeId: "tandem.small", NumWorkers: 2, SparkConf: sparkConf})
	if err != nil {
		t.Fatal(err)
	}
	victim := cl.Executors[0].InstanceId
	pid, err := os.ReadFile(filepath.Join(dir, "instances", victim, "agent.pid"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
	syscall.Kill(-n, syscall.SIGKILL) // the agent and its Spark worker
	waitFor(t, "the cluster back at two workers", 90*time.Second, func() (bool, string) {
		c, _ := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
		var ids []string
		for _, e := range c.Executors {
			ids = append(ids, e.InstanceId)
		}
		return c.State == compute.StateRunning && len(ids) == 2 && !slices.Contains(ids, victim), string(c.State) + " " + strings.Join(ids, ",")
	})
	if ok, msg := hasAll(eventTypes(t, w, cl.ClusterId), "NODES_LOST", "RESIZING", "UPSIZE_COMPLETED"); !ok {
		t.Fatal(msg)
	}

	// A task that outlives a control-plane restart.
	script := "import time\ntime.sleep(12)\nprint('rows', spark.range(1000).count())\n"
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/e2e/slow.py", []byte(script)); err != nil {
		t.Fatal(err)
	}
	sub, err := w.Jobs.Submit(ctx, jobs.SubmitRun{RunName: "slow", Tasks: []jobs.SubmitTask{{TaskKey: "slow",
		ExistingClusterId: cl.ClusterId, SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/e2e/slow.py"}}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task running", 60*time.Second, func() (bool, string) {
		r, err := w.Jobs.GetRun(ctx, jobs.GetRunRequest{RunId: sub.Response.RunId})
		if err != nil || len(r.Tasks) == 0 {
			return false, fmt.Sprint(err)
		}
		return r.Tasks[0].State.LifeCycleState == jobs.RunLifeCycleStateRunning, string(r.Tasks[0].State.LifeCycleState)
	})
	before := len(eventTypes(t, w, cl.ClusterId))
	srv.Close()
	srv2 := startRegion(t, opts...)
	w2 := srv2.SDK(srv2.AdminToken)
	run, err := w2.Jobs.WaitGetRunJobTerminatedOrSkipped(ctx, sub.Response.RunId, 3*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := w2.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
	if run.State.ResultState != jobs.RunResultStateSuccess || !strings.Contains(out.Logs, "rows 1000") {
		t.Fatalf("the task across the restart: %s %s; %s", run.State.ResultState, run.State.StateMessage, out.Logs)
	}
	c, err := w2.Clusters.GetByClusterId(ctx, cl.ClusterId)
	if err != nil || c.State != compute.StateRunning || len(c.Executors) != 2 {
		t.Fatalf("the cluster after the restart: %v %s %d", err, c.State, len(c.Executors))
	}
	if after := eventTypes(t, w2, cl.ClusterId)[before:]; slices.Contains(after, "NODES_LOST") {
		t.Fatalf("nodes lost across the restart: %v", after)
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// grepDir returns the first file under dir containing s ("" if none).
func grepDir(t *testing.T, dir, s string) string {
	t.Helper()
	found := ""
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" || d.Type()&fs.ModeType != 0 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(s)) {
			found = p
		}
		return nil
	})
	return found
}

// processEnv reads a variable from the environment of the Spark master of
// the driver instance.
func processEnv(t *testing.T, instanceID, name string) string {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte("deploy.master.Master")) || !bytes.Contains(cmd, []byte(instanceID)) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte(name+"=")); ok {
				return string(v)
			}
		}
	}
	return ""
}
