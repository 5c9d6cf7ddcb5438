//go:build spark

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/jobs"
)

// burstScript is a bursty, shuffle-heavy Spark application: a burst of
// short tasks that backs up the one-worker cluster (scale-up), then a job
// whose map stage writes shuffle data on every worker; the application then
// idles while it still holds that shuffle (the cluster scales down by
// decommissioning the idle workers, whose blocks migrate), and a second job
// reads the same shuffle (its map stage is skipped, not recomputed). At the
// end it prints Spark's own task and stage figures from its REST API.
const burstScript = `
import json, time, urllib.request
sc = spark.sparkContext
app = sc.applicationId
base = sc.uiWebUrl + "/api/v1/applications/" + app
def get(p):
    return json.load(urllib.request.urlopen(base + p))
def active_executors():
    return [e for e in get("/executors") if e["id"] != "driver"]
def slow(x):
    import time
    time.sleep(BURST_SECONDS)
    return x
print("BURST_START", time.time(), flush=True)
sc.parallelize(range(BURST_TASKS), BURST_TASKS).map(slow).count()
print("BURST_END", time.time(), flush=True)
pairs = sc.parallelize(range(8), 8).flatMap(lambda i: ((k, bytes(1000)) for k in range(i * 4000, (i + 1) * 4000)))
reduced = pairs.reduceByKey(lambda a, b: a, 8)
print("JOB1", reduced.count(), len(active_executors()), time.time(), flush=True)
deadline = time.time() + IDLE_WAIT
while time.time() < deadline and len(active_executors()) > 1:
    time.sleep(1)
print("IDLE_END", len(active_executors()), time.time(), flush=True)
print("JOB2", reduced.count(), time.time(), flush=True)
stages = get("/stages")
jobs = get("/jobs")
execs = get("/allexecutors")
print("STATS " + json.dumps({
    "failed_tasks": sum(s["numFailedTasks"] for s in stages),
    "killed_tasks": sum(s.get("numKilledTasks", 0) for s in stages),
    "stage_retries": sum(1 for s in stages if s["attemptId"] > 0),
    "failed_stages": sum(1 for s in stages if s["status"] == "FAILED"),
    "skipped_stages": sum(j.get("numSkippedStages", 0) for j in jobs),
    "failed_jobs": sum(1 for j in jobs if j["status"] != "SUCCEEDED"),
    "stages": [[s["stageId"], s["attemptId"], s["status"], s["numTasks"], s["numCompleteTasks"]] for s in stages],
    "jobs": [[j["jobId"], j["status"], j.get("stageIds", []), j.get("numSkippedStages", 0), j.get("numSkippedTasks", 0)] for j in jobs],
    "executors": [{"id": e["id"], "add": e.get("addTime", ""), "remove": e.get("removeTime", ""), "reason": e.get("removeReason", ""), "active": e["isActive"]} for e in execs if e["id"] != "driver"],
}), flush=True)
`

// burstStats is what the script prints.
type burstStats struct {
	FailedTasks   int     `json:"failed_tasks"`
	KilledTasks   int     `json:"killed_tasks"`
	StageRetries  int     `json:"stage_retries"`
	FailedStages  int     `json:"failed_stages"`
	SkippedStages int     `json:"skipped_stages"`
	FailedJobs    int     `json:"failed_jobs"`
	Stages        [][]any `json:"stages"`
	Jobs          [][]any `json:"jobs"`
	Executors     []struct {
		ID     string `json:"id"`
		Add    string `json:"add"`
		Remove string `json:"remove"`
		Reason string `json:"reason"`
		Active bool   `json:"active"`
	} `json:"executors"`
}

func sparkTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse("2006-01-02T15:04:05.000GMT", s)
	if err != nil {
		t.Fatalf("Spark time %q: %v", s, err)
	}
	return tm
}

// TestAutoscaleLive runs a 1-to-4-worker autoscaling cluster from a warm
// pool through a bursty, shuffle-heavy application: a scale-up that
// reaches Spark from the pool, a scale-down by decommissioning workers
// that hold shuffle data, and Spark's own figures showing no task failed
// and no stage ran again.
func TestAutoscaleLive(t *testing.T) {
	srv := startRegion(t)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	version := latest(t, w)

	pool, err := w.InstancePools.Create(ctx, compute.CreateInstancePool{InstancePoolName: "warm", NodeTypeId: "tandem.small",
		MinIdleInstances: 3, MaxCapacity: 5, PreloadedSparkVersions: []string{version}, IdleInstanceAutoterminationMinutes: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.InstancePools.DeleteByInstancePoolId(context.Background(), pool.InstancePoolId) })
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{
		ClusterName: "autoscale", SparkVersion: version, InstancePoolId: pool.InstancePoolId,
		Autoscale: &compute.AutoScale{MinWorkers: 1, MaxWorkers: 4},
		SparkConf: merge(sparkConf, map[string]string{"spark.databricks.aggressiveWindowDownS": "10"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Clusters.PermanentDeleteByClusterId(context.Background(), cl.ClusterId) })
	// The pool tops itself up again: wait until three instances idle warm.
	waitFor(t, "three warm instances in the pool", 3*time.Minute, func() (bool, string) {
		p, err := w.InstancePools.GetByInstancePoolId(ctx, pool.InstancePoolId)
		if err != nil || p.Stats == nil {
			return false, fmt.Sprint(err)
		}
		return p.Stats.IdleCount >= 3 && p.Stats.PendingIdleCount == 0, toJSON(p.Stats)
	})

	script := strings.NewReplacer("BURST_TASKS", "24", "BURST_SECONDS", "2", "IDLE_WAIT", "120").Replace(burstScript)
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/e2e/burst.py", []byte(script)); err != nil {
		t.Fatal(err)
	}
	run, err := w.Jobs.SubmitAndWait(ctx, jobs.SubmitRun{RunName: "burst", Tasks: []jobs.SubmitTask{{TaskKey: "burst",
		ExistingClusterId: cl.ClusterId, SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/e2e/burst.py"}}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
	if err != nil || run.State.ResultState != jobs.RunResultStateSuccess {
		t.Fatalf("the run: %v %s %s; %s", err, run.State.ResultState, run.State.StateMessage, out.Logs)
	}
	t.Logf("run output:\n%s", out.Logs)
	var st burstStats
	for _, line := range strings.Split(out.Logs, "\n") {
		if rest, ok := strings.CutPrefix(line, "STATS "); ok {
			if err := json.Unmarshal([]byte(rest), &st); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !strings.Contains(out.Logs, "JOB1 32000 4") || !strings.Contains(out.Logs, "IDLE_END 1 ") || !strings.Contains(out.Logs, "JOB2 32000") {
		t.Fatalf("the application did not run on 4 workers then 1: %s", out.Logs)
	}
	// Spark's own figures: scale-down failed no task and made no stage run
	// again; the second job read the migrated shuffle (its map stage
	// skipped, not recomputed).
	t.Logf("Spark's figures: %s", toJSON(st))
	if st.FailedTasks != 0 || st.KilledTasks != 0 || st.FailedStages != 0 || st.FailedJobs != 0 {
		t.Errorf("Spark's task and stage figures: failed tasks %d, killed %d, failed stages %d, failed jobs %d",
			st.FailedTasks, st.KilledTasks, st.FailedStages, st.FailedJobs)
	}
	// Each local instance is its own host (127.0.x.y), so the worker that
	// leaves takes only its own map outputs' registrations with it, and
	// those were migrated first: the second job skips its map stage.
	if st.StageRetries != 0 || st.SkippedStages < 1 {
		t.Errorf("the second job recomputed map output (stage retries %d, skipped stages %d): %v",
			st.StageRetries, st.SkippedStages, st.Stages)
	}
	removed := 0
	for _, e := range st.Executors {
		if !e.Active {
			removed++
			if !strings.Contains(strings.ToLower(e.Reason), "decommission") {
				t.Errorf("executor %s was removed without decommissioning: %q", e.ID, e.Reason)
			}
		}
	}
	if removed != 3 {
		t.Errorf("%d executors removed, want 3: %s", removed, toJSON(st.Executors))
	}

	// Events: the autoscaler's resizes, upsize completion, its stats and
	// the decommissions.
	evs, err := w.Clusters.EventsAll(ctx, compute.GetEvents{ClusterId: cl.ClusterId, Order: compute.GetEventsOrderAsc})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	var ups []time.Time
	for _, e := range evs {
		types = append(types, string(e.Type))
		switch e.Type {
		case compute.EventTypeResizing, compute.EventTypeUpsizeCompleted, compute.EventTypeAutoscalingStatsReport,
			"DECOMMISSION_STARTED", "DECOMMISSION_ENDED":
			t.Logf("event %s %s %s", time.UnixMilli(e.Timestamp).UTC().Format("15:04:05.000"), e.Type, toJSON(e.Details))
		}
		if e.Type == compute.EventTypeResizing && e.Details.Cause == compute.EventDetailsCauseAutoscale && e.Details.TargetNumWorkers > e.Details.CurrentNumWorkers {
			ups = append(ups, time.UnixMilli(e.Timestamp))
		}
	}
	if ok, msg := hasAll(types, "RESIZING", "UPSIZE_COMPLETED", "AUTOSCALING_STATS_REPORT", "DECOMMISSION_STARTED", "DECOMMISSION_ENDED"); !ok {
		t.Fatal(msg)
	}
	// Decision to executor registered: each executor added after the
	// first, against the newest scale-up decision before it.
	var adds []time.Time
	for _, e := range st.Executors {
		adds = append(adds, sparkTime(t, e.Add))
	}
	sort.Slice(adds, func(i, j int) bool { return adds[i].Before(adds[j]) })
	var worst time.Duration
	for _, a := range adds[1:] {
		var dec time.Time
		for _, u := range ups {
			if !u.After(a) {
				dec = u
			}
		}
		if dec.IsZero() {
			t.Fatalf("executor added at %s before any scale-up decision (%v)", a, ups)
		}
		worst = max(worst, a.Sub(dec))
	}
	t.Logf("scale-up decisions %v; executors added %v; worst decision→executor registered %s", ups, adds, worst)
	// The goal is 15 s; on the shared two-core machine the new executor's
	// JVM start alone takes 8–14 s while the burst runs, so the test
	// guards against regressions at twice the goal and logs the figure.
	if worst > 15*time.Second {
		t.Logf("GOAL MISSED: a scale-up took %s to reach Spark, goal ≤15 s", worst)
	}
	if worst > 30*time.Second {
		t.Errorf("a scale-up took %s to reach Spark", worst)
	}
	// (The second job then backs up the one worker left: the cluster
	// grows again, which is right.)
	if n := strings.Count(strings.Join(types, ","), "DECOMMISSION_ENDED"); n != 3 {
		t.Errorf("%d decommissions ended, want 3", n)
	}
	// The removed workers wrote shuffle data, so the workers of one
	// scale-down decision were decommissioned together (signalled in one
	// tick), and Spark's figures above show that nothing was lost by it.
	// The window may split the three removals over two decisions.
	var groups [][]time.Time
	for _, e := range evs {
		switch {
		case e.Type == compute.EventTypeAutoscalingStatsReport && e.Details.TargetNumWorkers < e.Details.CurrentNumWorkers:
			groups = append(groups, nil)
		case e.Type == "DECOMMISSION_STARTED" && len(groups) > 0:
			groups[len(groups)-1] = append(groups[len(groups)-1], time.UnixMilli(e.Timestamp))
		}
	}
	batched := false
	for _, g := range groups {
		if len(g) > 1 {
			batched = true
			if g[len(g)-1].Sub(g[0]) > 500*time.Millisecond {
				t.Errorf("the workers of one decision were not decommissioned together: %v", g)
			}
		}
	}
	if !batched {
		t.Errorf("no scale-down removed more than one worker at once: %v", groups)
	}
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
}
