// Command autoscale-live runs one bursty Spark workload on real clusters
// of a tandem server (real agents, Apache Spark from the virtualenv), from
// a warm pool, four ways: a static cluster at the maximum size (4
// workers), a static cluster at the minimum (1), and a 1-to-4-worker
// autoscaling cluster under the standard and the optimized policy. It
// reports node-seconds held (driver included, sampled from the pool's
// used instances while the workload runs: starting and decommissioning
// workers are paid for), the cost ratio (one node type and one price, so
// the node-seconds ratio), the workload's makespan (its first task to its
// last, timed by the application) and Spark's failed tasks and stage
// retries.
//
//	make build && go run ./bench/autoscale-live
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/jobs"

	"github.com/tandemdata/tandem/bench/internal/harness"
)

// workload: rounds of a burst of short tasks, a shuffle job, and a quiet
// spell (the application stays up, as a notebook or a streaming job would).
const workload = `
import json, time, urllib.request
sc = spark.sparkContext
base = sc.uiWebUrl + "/api/v1/applications/" + sc.applicationId
def slow(x):
    import time
    time.sleep(%[2]d)
    return x
t0 = time.time()
for r in range(%[1]d):
    ts = time.time()
    sc.parallelize(range(%[3]d), %[3]d).map(slow).count()
    pairs = sc.parallelize(range(8), 8).flatMap(lambda i: ((k, bytes(500)) for k in range(i * 4000, (i + 1) * 4000)))
    n = pairs.reduceByKey(lambda a, b: a, 8).count()
    print("ROUND", r, "busy_s", round(time.time() - ts, 1), flush=True)
    if r < %[1]d - 1:
        time.sleep(%[4]d)
print("MAKESPAN", round(time.time() - t0, 2), flush=True)
stages = json.load(urllib.request.urlopen(base + "/stages"))
print("SPARK", sum(s["numFailedTasks"] for s in stages), sum(1 for s in stages if s["attemptId"] > 0), flush=True)
for e in json.load(urllib.request.urlopen(base + "/allexecutors")):
    if e["id"] != "driver":
        print("EXEC", e["id"], e["addTime"], e.get("removeTime", "-"), flush=True)
`

type result struct {
	name        string
	nodeSeconds float64
	makespan    float64
	failed      int
	retries     int
	busy        []string
	execAdds    []time.Time
	// ups are the scale-ups: from the decision (RESIZING) to the new
	// workers registered with the master (UPSIZE_COMPLETED) and to their
	// executors registered with the driver (Spark's addTime).
	ups []scaleUp
}

type scaleUp struct {
	added             int
	workers, executor time.Duration
}

func main() {
	var (
		bin    = flag.String("bin", "bin/tandem", "tandem binary to start")
		venv   = flag.String("venv", ".venv", "virtualenv with pyspark")
		rounds = flag.Int("rounds", 3, "bursts in the workload")
		tasks  = flag.Int("tasks", 16, "tasks per burst")
		secs   = flag.Int("task-seconds", 3, "seconds each burst task runs")
		quiet  = flag.Int("quiet", 35, "seconds of quiet between bursts")
		window = flag.Int("window", 10, "spark.databricks.aggressiveWindowDownS of the optimized cluster")
		only   = flag.String("only", "", "comma-separated cases to run (static-4,static-1,standard,optimized)")
		keep   = flag.Bool("keep", false, "keep the server's data directory (logs of every instance) and print its path")
	)
	flag.Parse()
	ctx := context.Background()
	srv := harness.StartServer("autoscale-live", *bin, *venv)
	defer srv.Stop(*keep)
	w := srv.Client()
	version, err := w.Clusters.SelectSparkVersion(ctx, compute.SparkVersionRequest{Latest: true})
	harness.Must(err)
	pool, err := w.InstancePools.Create(ctx, compute.CreateInstancePool{InstancePoolName: "warm", NodeTypeId: "tandem.small",
		MinIdleInstances: 3, MaxCapacity: 6, PreloadedSparkVersions: []string{version}, IdleInstanceAutoterminationMinutes: 60})
	harness.Must(err)
	conf := map[string]string{"spark.executor.memory": "512m", "spark.driver.memory": "512m", "spark.ui.showConsoleProgress": "false"}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range conf {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name string
		spec compute.CreateCluster
	}{
		{"static-4", compute.CreateCluster{NumWorkers: 4, SparkConf: conf}},
		{"static-1", compute.CreateCluster{NumWorkers: 1, SparkConf: conf}},
		{"standard", compute.CreateCluster{Autoscale: &compute.AutoScale{MinWorkers: 1, MaxWorkers: 4},
			SparkConf: with(map[string]string{"spark.tandem.autoscaling.policy": "standard"})}},
		{"optimized", compute.CreateCluster{Autoscale: &compute.AutoScale{MinWorkers: 1, MaxWorkers: 4},
			SparkConf: with(map[string]string{"spark.databricks.aggressiveWindowDownS": strconv.Itoa(*window)})}},
	}
	script := fmt.Sprintf(workload, *rounds, *secs, *tasks, *quiet)
	harness.Must(w.Dbfs.WriteFile(ctx, "dbfs:/bench/autoscale-live.py", []byte(script)))
	fmt.Printf("Tandem live autoscaling: %s, %s; %d rounds of %d×%ds tasks + a shuffle job, %d s quiet between; tandem.small (1 slot) workers from a warm pool\n",
		version, time.Now().UTC().Format("2006-01-02"), *rounds, *tasks, *secs, *quiet)
	var results []result
	for _, c := range cases {
		if *only != "" && !strings.Contains(","+*only+",", ","+c.name+",") {
			continue
		}
		waitIdle(ctx, w, pool.InstancePoolId, 3, true)
		spec := c.spec
		spec.ClusterName, spec.SparkVersion, spec.InstancePoolId = c.name, version, pool.InstancePoolId
		cl, err := w.Clusters.CreateAndWait(ctx, spec)
		harness.Must(err)
		// The pool tops itself up: let it finish, so that every case
		// runs on a quiet machine with warm instances to grow into.
		waitIdle(ctx, w, pool.InstancePoolId, 1, false)
		time.Sleep(5 * time.Second)
		r := runCase(ctx, w, pool.InstancePoolId, cl.ClusterId)
		r.name = c.name
		r.ups = scaleUps(ctx, w, cl.ClusterId, r.execAdds)
		log.Printf("%s: %.0f node-s, makespan %.1f s, failed tasks %d, stage retries %d, rounds %v", r.name, r.nodeSeconds, r.makespan, r.failed, r.retries, r.busy)
		for _, u := range r.ups {
			log.Printf("%s: scale-up of %d: workers registered %.1f s after the decision, their executors %.1f s", r.name, u.added, u.workers.Seconds(), u.executor.Seconds())
		}
		results = append(results, r)
		_, err = w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId})
		harness.Must(err)
	}
	byName := map[string]result{}
	for _, r := range results {
		byName[r.name] = r
	}
	ref, hasRef := byName["static-4"]
	fmt.Printf("\n%-10s %12s %12s %10s %14s %12s %8s\n", "cluster", "node-s", "cost vs s-4", "makespan", "makespan vs s-4", "failed tasks", "retries")
	for _, r := range results {
		cost, mk := "-", "-"
		if hasRef {
			cost = fmt.Sprintf("%+.0f%%", (r.nodeSeconds/ref.nodeSeconds-1)*100)
			mk = fmt.Sprintf("%+.0f%%", (r.makespan/ref.makespan-1)*100)
		}
		fmt.Printf("%-10s %12.0f %12s %9.1fs %14s %12d %8d\n", r.name, r.nodeSeconds, cost, r.makespan, mk, r.failed, r.retries)
	}
	for _, r := range results {
		if len(r.ups) == 0 {
			continue
		}
		var ws, es []string
		for _, u := range r.ups {
			ws = append(ws, fmt.Sprintf("%.1f", u.workers.Seconds()))
			es = append(es, fmt.Sprintf("%.1f", u.executor.Seconds()))
		}
		fmt.Printf("%s scale-ups, decision to workers registered (s): %s; to executors registered (s): %s\n", r.name, strings.Join(ws, " "), strings.Join(es, " "))
	}
	if o, ok := byName["optimized"]; ok {
		if s, ok := byName["standard"]; ok {
			fmt.Printf("\noptimized vs standard: cost %+.0f%%, makespan %+.0f%%\n", (o.nodeSeconds/s.nodeSeconds-1)*100, (o.makespan/s.makespan-1)*100)
		}
	}
}

// runCase runs the workload on a cluster, sampling the instances it holds
// (the pool's used count) every 250 ms while the run goes.
func runCase(ctx context.Context, w *databricks.WorkspaceClient, pool, clusterID string) result {
	var mu sync.Mutex
	nodeSeconds := 0.0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := time.Now()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			p, err := w.InstancePools.GetByInstancePoolId(ctx, pool)
			now := time.Now()
			if err == nil && p.Stats != nil {
				mu.Lock()
				nodeSeconds += float64(p.Stats.UsedCount) * now.Sub(last).Seconds()
				mu.Unlock()
			}
			last = now
		}
	}()
	run, err := w.Jobs.SubmitAndWait(ctx, jobs.SubmitRun{RunName: "bench", Tasks: []jobs.SubmitTask{{TaskKey: "t",
		ExistingClusterId: clusterID, SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/bench/autoscale-live.py"}}}})
	close(stop)
	<-done
	harness.Must(err)
	out, err := w.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
	harness.Must(err)
	if run.State.ResultState != jobs.RunResultStateSuccess {
		log.Fatalf("workload failed: %s %s %s", run.State.StateMessage, out.Error, out.ErrorTrace)
	}
	r := result{nodeSeconds: nodeSeconds}
	for _, line := range strings.Split(out.Logs, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "MAKESPAN":
			r.makespan, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 3 && f[0] == "SPARK":
			r.failed, _ = strconv.Atoi(f[1])
			r.retries, _ = strconv.Atoi(f[2])
		case len(f) == 4 && f[0] == "ROUND":
			r.busy = append(r.busy, f[3])
		case len(f) == 4 && f[0] == "EXEC":
			if t, err := time.Parse("2006-01-02T15:04:05.000GMT", f[2]); err == nil {
				r.execAdds = append(r.execAdds, t)
			}
		}
	}
	if r.makespan == 0 {
		log.Fatalf("no makespan in the output: %s", out.Logs)
	}
	return r
}

// waitIdle waits until the pool has n warm idle instances and none being
// made (and, with unused, none held by a cluster).
func waitIdle(ctx context.Context, w *databricks.WorkspaceClient, pool string, n int, unused bool) {
	for {
		p, err := w.InstancePools.GetByInstancePoolId(ctx, pool)
		harness.Must(err)
		if p.Stats != nil && p.Stats.IdleCount >= n && p.Stats.PendingIdleCount == 0 && (!unused || p.Stats.UsedCount == 0) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scaleUps matches each scale-up decision (a RESIZING event to a larger
// target) with the UPSIZE_COMPLETED after it and with the executors added
// after it, one per new worker.
func scaleUps(ctx context.Context, w *databricks.WorkspaceClient, clusterID string, adds []time.Time) []scaleUp {
	evs, err := w.Clusters.EventsAll(ctx, compute.GetEvents{ClusterId: clusterID, Order: compute.GetEventsOrderAsc,
		EventTypes: []compute.EventType{compute.EventTypeResizing, compute.EventTypeUpsizeCompleted}})
	if err != nil {
		log.Printf("events: %v", err)
		return nil
	}
	sort.Slice(adds, func(i, j int) bool { return adds[i].Before(adds[j]) })
	used := 0
	var out []scaleUp
	for i, e := range evs {
		d := e.Details
		if e.Type != compute.EventTypeResizing || d == nil || d.TargetNumWorkers <= d.CurrentNumWorkers {
			continue
		}
		at := time.UnixMilli(e.Timestamp)
		u := scaleUp{added: d.TargetNumWorkers - d.CurrentNumWorkers}
		for _, f := range evs[i+1:] {
			if f.Type == compute.EventTypeUpsizeCompleted {
				u.workers = time.UnixMilli(f.Timestamp).Sub(at)
				break
			}
		}
		for used < len(adds) && adds[used].Before(at) {
			used++
		}
		if n := used + u.added; n <= len(adds) {
			u.executor = adds[n-1].Sub(at)
			used = n
		}
		out = append(out, u)
	}
	return out
}
