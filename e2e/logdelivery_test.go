//go:build spark

package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/files"
	"github.com/databricks/databricks-sdk-go/service/jobs"
)

// dbfsTree lists every file under a DBFS directory, by path.
func dbfsTree(ctx context.Context, w *databricks.WorkspaceClient, dir string) map[string]int64 {
	out := map[string]int64{}
	list, err := w.Dbfs.ListAll(ctx, files.ListDbfsRequest{Path: dir})
	if err != nil {
		return out
	}
	for _, fi := range list {
		if fi.IsDir {
			for p, n := range dbfsTree(ctx, w, fi.Path) {
				out[p] = n
			}
		} else {
			out[fi.Path] = fi.FileSize
		}
	}
	return out
}

// findFile returns the first path of tree under prefix whose name matches
// suffix and whose contents hold want.
func findFile(ctx context.Context, w *databricks.WorkspaceClient, tree map[string]int64, prefix, suffix, want string) string {
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if !strings.HasPrefix(p, prefix) || !strings.HasSuffix(p, suffix) {
			continue
		}
		b, err := w.Dbfs.ReadFile(ctx, p)
		if err == nil && strings.Contains(string(b), want) {
			return p
		}
	}
	return ""
}

// deliveredLog4j is the driver's log4j as delivered: the hourly archives
// in order, then the active file.
func deliveredLog4j(ctx context.Context, w *databricks.WorkspaceClient, driverDir string) string {
	tree := dbfsTree(ctx, w, driverDir)
	var gz []string
	for p := range tree {
		if strings.HasPrefix(p, driverDir+"/log4j-") && strings.HasSuffix(p, ".log.gz") {
			gz = append(gz, p)
		}
	}
	sort.Strings(gz)
	var out bytes.Buffer
	for _, p := range gz {
		b, _ := w.Dbfs.ReadFile(ctx, p)
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			io.Copy(&out, zr)
		}
	}
	b, _ := w.Dbfs.ReadFile(ctx, driverDir+"/log4j-active.log")
	out.Write(b)
	return out.String()
}

// TestClusterLogDeliveryToDBFS creates a cluster with cluster_log_conf
// through the SDK, runs a Spark job that prints on the driver and on the
// executors, and finds the driver's, the executors', the event log and
// the init scripts' files in DBFS in Databricks' layout within 30 s; after
// termination, the delivered driver logs are complete.
func TestClusterLogDeliveryToDBFS(t *testing.T) {
	srv := startRegion(t)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)

	// Destinations we cannot serve are refused as Databricks refuses bad
	// parameters.
	_, err := w.Clusters.Create(ctx, compute.CreateCluster{ClusterName: "s3", SparkVersion: latest(t, w),
		NodeTypeId: "tandem.small", NumWorkers: 1,
		ClusterLogConf: &compute.ClusterLogConf{S3: &compute.S3StorageInfo{Destination: "s3://bucket/logs", Region: "us-west-2"}}})
	var ae *apierr.APIError
	if !errors.As(err, &ae) || ae.ErrorCode != "INVALID_PARAMETER_VALUE" || ae.StatusCode != 400 || !strings.Contains(ae.Message, "s3") {
		t.Fatalf("an s3 destination: %v", err)
	}

	if err := w.Dbfs.WriteFile(ctx, "dbfs:/e2e-ld/init.sh", []byte("#!/bin/bash\necho init script on $DB_CLUSTER_ID\n")); err != nil {
		t.Fatal(err)
	}
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{
		ClusterName: "logged", SparkVersion: latest(t, w), NodeTypeId: "tandem.small", NumWorkers: 1, SparkConf: sparkConf,
		InitScripts:    []compute.InitScriptInfo{{Dbfs: &compute.DbfsStorageInfo{Destination: "dbfs:/e2e-ld/init.sh"}}},
		ClusterLogConf: &compute.ClusterLogConf{Dbfs: &compute.DbfsStorageInfo{Destination: "dbfs:/cluster-logs"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cl.ClusterLogConf == nil || cl.ClusterLogConf.Dbfs == nil || cl.ClusterLogConf.Dbfs.Destination != "dbfs:/cluster-logs" {
		t.Fatalf("cluster_log_conf in clusters/get: %s", toJSON(cl.ClusterLogConf))
	}

	job := `import logging
print("hello from the driver's stdout")
spark.sparkContext.parallelize(range(4), 2).foreach(lambda x: print("executor says", x))
print("rows", spark.range(1000).count())
`
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/e2e-ld/job.py", []byte(job)); err != nil {
		t.Fatal(err)
	}
	run, err := w.Jobs.SubmitAndWait(ctx, jobs.SubmitRun{RunName: "logs", Tasks: []jobs.SubmitTask{{TaskKey: "logs",
		ExistingClusterId: cl.ClusterId, SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/e2e-ld/job.py"}}}})
	if err != nil || run.State.ResultState != jobs.RunResultStateSuccess {
		t.Fatalf("job: %v %+v", err, run)
	}
	ended := time.Now()

	dir := "/cluster-logs/" + cl.ClusterId
	var found map[string]string
	waitFor(t, "driver, executor, event log and init script files in DBFS", 30*time.Second, func() (bool, string) {
		tree := dbfsTree(ctx, w, dir)
		found = map[string]string{
			"driver stdout": findFile(ctx, w, tree, dir+"/driver/", "/stdout", "hello from the driver's stdout"),
			"driver stderr": findFile(ctx, w, tree, dir+"/driver/", "/stderr", ""),
			"driver log4j":  findFile(ctx, w, tree, dir+"/driver/", "/log4j-active.log", "Master"),
			"executor":      findFile(ctx, w, tree, dir+"/executor/app-", "", "executor says"), // PySpark prints go to the executor's stderr
			"event log":     findFile(ctx, w, tree, dir+"/eventlog/", "/eventlog", "SparkListenerApplicationStart"),
			"init script":   findFile(ctx, w, tree, dir+"/init_scripts/"+cl.ClusterId+"_", ".sh.stdout.log", "init script on "+cl.ClusterId),
		}
		var missing []string
		for k, v := range found {
			if v == "" {
				missing = append(missing, k)
			}
		}
		sort.Strings(missing)
		return len(missing) == 0, "missing " + strings.Join(missing, ", ") + " in " + toJSON(tree)
	})
	t.Logf("delivered %.1fs after the job ended: %s", time.Since(ended).Seconds(), toJSON(found))
	tree := dbfsTree(ctx, w, dir)
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		t.Logf("%8d  dbfs:%s", tree[p], p)
	}
	if p := found["executor"]; len(strings.Split(strings.TrimPrefix(p, dir+"/"), "/")) != 4 {
		t.Fatalf("executor log layout: %s", p)
	}
	if p := found["event log"]; len(strings.Split(strings.TrimPrefix(p, dir+"/"), "/")) != 4 {
		t.Fatalf("event log layout: %s", p)
	}
	got, err := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
	if err != nil || got.ClusterLogStatus == nil || got.ClusterLogStatus.LastAttempted == 0 || got.ClusterLogStatus.LastException != "" {
		t.Fatalf("cluster_log_status: %v %s", err, toJSON(got.ClusterLogStatus))
	}

	// Termination: the master's last lines (its shutdown) reach the
	// destination, which then holds exactly what the driver logged.
	driver := cl.Driver.InstanceId
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
	term, err := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(srv.DataDir, "compute", "logs", cl.ClusterId, driver, "driver")
	waitFor(t, "every driver log delivered after termination", 30*time.Second, func() (bool, string) {
		for _, name := range []string{"stdout", "stderr"} {
			want, _ := os.ReadFile(filepath.Join(kept, name))
			b, _ := w.Dbfs.ReadFile(ctx, dir+"/driver/"+name)
			if !bytes.Equal(b, want) {
				return false, name + " differs: " + string(b)
			}
		}
		want, _ := os.ReadFile(filepath.Join(kept, "log4j-active.log"))
		if got := deliveredLog4j(ctx, w, dir+"/driver"); got != string(want) {
			return false, "log4j differs"
		}
		c, _ := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
		if c.ClusterLogStatus == nil || c.ClusterLogStatus.LastAttempted < term.TerminatedTime {
			return false, "no delivery attempt after termination: " + toJSON(c.ClusterLogStatus)
		}
		return true, ""
	})
}
