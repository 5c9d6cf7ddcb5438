// Command jobs-real measures run-now to a task's code starting on an
// already running cluster, on real Spark: it starts a region (the tandem
// binary) with a real cluster (local provider, one worker), then runs a
// tiny spark_python_task N times, one after the other. The task prints the
// wall clock when its code starts, when the runtime's process started and
// when its SparkContext started, so the overhead splits into the control
// plane and agent's share, Python and the driver JVM's start, and the
// SparkContext's registration with the cluster's master.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/jobs"

	"github.com/tandemdata/tandem/bench/internal/harness"
)

// script prints: code start, the runtime process's start (the runtime
// exports it), the SparkContext's start; all epoch milliseconds.
const script = `import os, time
print("TIMING", int(time.time() * 1000), os.environ.get("TANDEM_RUNTIME_START_MS", "0"), spark.sparkContext.startTime)
`

var timing = regexp.MustCompile(`TIMING (\d+) (\d+) (\d+)`)

func main() {
	var (
		bin    = flag.String("bin", "bin/tandem", "tandem binary to start")
		venv   = flag.String("venv", ".venv", "virtualenv with pyspark")
		runs   = flag.Int("runs", 20, "run-nows, one after the other")
		shared = flag.Bool("shared", true, "tasks attach to the cluster's shared driver (spark.tandem.driver.shared); false: each is its own Spark application")
		gap    = flag.Duration("gap", 0, "pause between a run's end and the next run-now")
	)
	flag.Parse()
	ctx := context.Background()
	srv := harness.StartServer("jobs-real", *bin, *venv)
	defer srv.Stop(false)
	w := srv.Client()
	version, err := w.Clusters.SelectSparkVersion(ctx, compute.SparkVersionRequest{Latest: true})
	harness.Must(err)
	conf := map[string]string{"spark.executor.memory": "512m", "spark.driver.memory": "512m", "spark.ui.showConsoleProgress": "false"}
	if !*shared {
		conf["spark.tandem.driver.shared"] = "false"
	}
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "bench", SparkVersion: version, NodeTypeId: "tandem.small",
		NumWorkers: 1, SparkConf: conf, AutoterminationMinutes: 60})
	harness.Must(err)
	harness.Must(w.Dbfs.WriteFile(ctx, "dbfs:/bench/start.py", []byte(script)))
	job, err := w.Jobs.Create(ctx, jobs.CreateJob{Name: "start", Tasks: []jobs.Task{{TaskKey: "start", ExistingClusterId: cl.ClusterId,
		SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/bench/start.py"}}}})
	harness.Must(err)
	fmt.Printf("Tandem jobs on real Spark: %s, cluster of 1 driver + 1 worker (tandem.small), %s\n", version, time.Now().UTC().Format("2006-01-02"))

	var total, toProcess, toContext, toCode []time.Duration
	warm := 0
	for i := 0; i < *runs; i++ {
		if i > 0 {
			time.Sleep(*gap)
		}
		before := time.Now()
		run, err := w.Jobs.RunNowAndWait(ctx, jobs.RunNow{JobId: job.JobId})
		harness.Must(err)
		if run.State.ResultState != jobs.RunResultStateSuccess {
			log.Fatalf("run %d: %s %s", run.RunId, run.State.ResultState, run.State.StateMessage)
		}
		out, err := w.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
		harness.Must(err)
		m := timing.FindStringSubmatch(out.Logs)
		if m == nil {
			log.Fatalf("run %d printed no timing: %s", run.RunId, out.Logs)
		}
		code, proc, sc := ms(m[1]), ms(m[2]), ms(m[3])
		// A task attached to the shared driver runs on a SparkContext
		// that started before the run-now.
		if sc.Before(before) {
			warm++
		}
		up := sc
		if up.Before(proc) {
			up = proc
		}
		total = append(total, code.Sub(before))
		toProcess = append(toProcess, proc.Sub(before))
		toContext = append(toContext, up.Sub(proc))
		toCode = append(toCode, code.Sub(up))
	}
	fmt.Printf("\n%d of %d tasks attached to the shared driver, whose SparkContext was up before the run-now\n", warm, *runs)
	// The cluster is RUNNING once its Spark daemons are: the first run-now
	// may find the shared driver still starting, and is shown apart.
	fmt.Printf("\nrun 1, just after the cluster reached RUNNING: run-now -> task code starts %.2f s\n", total[0].Seconds())
	from := 0
	if len(total) > 1 {
		from = 1
	}
	fmt.Printf("\n%-52s %8s %8s %8s\n", fmt.Sprintf("runs %d to %d, %s apart", from+1, *runs, *gap), "p50", "p95", "max")
	row := func(name string, ds []time.Duration) {
		ds = ds[from:]
		fmt.Printf("%-52s %8.2f %8.2f %8.2f  s\n", name, pct(ds, 50).Seconds(), pct(ds, 95).Seconds(), pct(ds, 100).Seconds())
	}
	row("run-now -> task code starts", total)
	row("  run-now -> runtime process has the task", toProcess)
	row("  -> SparkContext starts (Python, JVM; 0 if up before)", toContext)
	row("  -> code (master, executors, the task's imports)", toCode)
	_, err = w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId})
	harness.Must(err)
}

func ms(s string) time.Time {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.UnixMilli(n)
}

// pct is the p-th percentile (nearest rank).
func pct(ds []time.Duration, p int) time.Duration {
	c := append([]time.Duration(nil), ds...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := (p*len(c)+99)/100 - 1
	return c[max(0, min(i, len(c)-1))]
}
