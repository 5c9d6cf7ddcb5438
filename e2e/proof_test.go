//go:build spark

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/jobs"
)

// TestProofPoolAutoscalingClusterRunsSparkThroughTheSDK is the issue's
// proof, through the official Go SDK only: a pool, an autoscaling cluster
// from it, RUNNING, its events, a Python task doing a shuffle on the
// cluster's real Spark, and termination.
func TestProofPoolAutoscalingClusterRunsSparkThroughTheSDK(t *testing.T) {
	srv := startRegion(t)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	version := latest(t, w)

	pool, err := w.InstancePools.Create(ctx, compute.CreateInstancePool{
		InstancePoolName: "proof", NodeTypeId: "tandem.small", MinIdleInstances: 2, MaxCapacity: 4,
		PreloadedSparkVersions: []string{version}, IdleInstanceAutoterminationMinutes: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The pool fills itself with idle instances.
	waitFor(t, "two idle pooled instances", 60*time.Second, func() (bool, string) {
		p, err := w.InstancePools.GetByInstancePoolId(ctx, pool.InstancePoolId)
		if err != nil || p.Stats == nil {
			return false, "no stats"
		}
		return p.Stats.IdleCount == 2, "stats " + toJSON(p.Stats)
	})

	started := time.Now()
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{
		ClusterName: "proof", SparkVersion: version, InstancePoolId: pool.InstancePoolId,
		Autoscale: &compute.AutoScale{MinWorkers: 1, MaxWorkers: 2}, AutoterminationMinutes: 30, SparkConf: sparkConf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster %s RUNNING %s after create, from a warm pool", cl.ClusterId, time.Since(started).Round(time.Millisecond))
	if cl.State != compute.StateRunning || cl.Driver == nil || len(cl.Executors) != 1 || cl.NumWorkers != 1 {
		t.Fatalf("cluster after CreateAndWait: state %s, driver %v, %d executors, num_workers %d", cl.State, cl.Driver, len(cl.Executors), cl.NumWorkers)
	}
	if ok, msg := hasAll(eventTypes(t, w, cl.ClusterId), "CREATING", "DRIVER_HEALTHY", "RUNNING"); !ok {
		t.Fatal(msg)
	}
	p, err := w.InstancePools.GetByInstancePoolId(ctx, pool.InstancePoolId)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats.UsedCount != 2 {
		t.Errorf("pool stats while the cluster runs: %s, want 2 used", toJSON(p.Stats))
	}

	// A Python task with a shuffle, on the cluster, through the Jobs API.
	script := `from pyspark.sql import functions as F
df = spark.range(0, 10000).withColumn("k", F.col("id") % 7)
rows = df.groupBy("k").agg(F.sum("id").alias("s")).orderBy("k").collect()
print("groups", len(rows), "total", sum(r["s"] for r in rows))
print("master", spark.sparkContext.master)
`
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/proof/shuffle.py", []byte(script)); err != nil {
		t.Fatal(err)
	}
	run, err := w.Jobs.SubmitAndWait(ctx, jobs.SubmitRun{RunName: "proof", Tasks: []jobs.SubmitTask{{
		TaskKey: "shuffle", ExistingClusterId: cl.ClusterId, SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/proof/shuffle.py"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
	if err != nil {
		t.Fatal(err)
	}
	if run.State.ResultState != jobs.RunResultStateSuccess || !strings.Contains(out.Logs, "groups 7 total 49995000") ||
		!strings.Contains(out.Logs, "master spark://") {
		t.Fatalf("run %s: %s; logs:\n%s\nerror: %s %s", run.State.ResultState, run.State.StateMessage, out.Logs, out.Error, out.ErrorTrace)
	}

	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
	if ok, msg := hasAll(eventTypes(t, w, cl.ClusterId), "TERMINATING"); !ok {
		t.Fatal(msg)
	}
	// The instances go back to the pool, idle and clean, next to the two
	// the pool made to keep its minimum while they were used.
	waitFor(t, "instances back in the pool", 60*time.Second, func() (bool, string) {
		p, err := w.InstancePools.GetByInstancePoolId(ctx, pool.InstancePoolId)
		if err != nil || p.Stats == nil {
			return false, "no stats"
		}
		return p.Stats.UsedCount == 0 && p.Stats.IdleCount == 4 && p.Stats.PendingIdleCount == 0, "stats " + toJSON(p.Stats)
	})
}
