// Command compute measures how fast Tandem gives clusters, and what
// intra-cluster and local disk encryption cost. It starts a tandem server
// (real agents, real Apache Spark from the virtualenv) and measures:
//
//   - create to RUNNING, cold (no pool: new instances) and from a warm pool
//     (idle instances that preloaded the runtime), and from create to the
//     first Spark job done on the cluster;
//   - the memory held by one idle pooled instance (its agent's process
//     tree);
//   - a shuffle-heavy job's time on a cluster without encryption, with
//     intra-cluster encryption (RPC authentication + AES-GCM), with local
//     disk encryption (Spark I/O encryption + the agent's sealed scratch),
//     and with both.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/jobs"

	"github.com/tandemdata/tandem/bench/internal/harness"
)

func main() {
	var (
		bin     = flag.String("bin", "bin/tandem", "tandem binary to start")
		venv    = flag.String("venv", ".venv", "virtualenv with pyspark")
		rounds  = flag.Int("rounds", 3, "cluster starts per case")
		rows    = flag.Int("rows", 3_000_000, "rows of the shuffle job")
		skipEnc = flag.Bool("skip-encryption", false, "skip the encryption cost cases")
	)
	flag.Parse()
	ctx := context.Background()
	srv := harness.StartServer("compute", *bin, *venv)
	defer srv.Stop(false)
	dir := srv.Dir
	w := srv.Client()
	version, err := w.Clusters.SelectSparkVersion(ctx, compute.SparkVersionRequest{Latest: true})
	harness.Must(err)
	conf := map[string]string{"spark.executor.memory": "512m", "spark.driver.memory": "512m", "spark.ui.showConsoleProgress": "false"}
	fmt.Printf("Tandem compute: %s, %s\n", version, time.Now().UTC().Format("2006-01-02"))

	// Cold: every instance is new.
	var cold, coldJob []time.Duration
	for i := 0; i < *rounds; i++ {
		r, j := startCluster(ctx, w, compute.CreateCluster{ClusterName: "cold", SparkVersion: version, NodeTypeId: "tandem.small",
			NumWorkers: 1, SparkConf: conf}, i == 0)
		cold, coldJob = append(cold, r), append(coldJob, j)
	}

	// Warm: a pool with idle instances that preloaded the runtime.
	pool, err := w.InstancePools.Create(ctx, compute.CreateInstancePool{InstancePoolName: "warm", NodeTypeId: "tandem.small",
		MinIdleInstances: 2, PreloadedSparkVersions: []string{version}, IdleInstanceAutoterminationMinutes: 60})
	harness.Must(err)
	var warm, warmJob []time.Duration
	for i := 0; i < *rounds; i++ {
		waitIdle(ctx, w, pool.InstancePoolId, 2)
		r, j := startCluster(ctx, w, compute.CreateCluster{ClusterName: "warm", SparkVersion: version, InstancePoolId: pool.InstancePoolId,
			NumWorkers: 1, SparkConf: conf}, i == 0)
		warm, warmJob = append(warm, r), append(warmJob, j)
	}
	waitIdle(ctx, w, pool.InstancePoolId, 2)
	idleRSS := idleMemory(dir, w, ctx, pool.InstancePoolId)

	fmt.Printf("\n%-40s %8s %8s %8s\n", "cluster start (1 driver + 1 worker)", "median", "min", "max")
	row := func(name string, ds []time.Duration) {
		fmt.Printf("%-40s %8.2f %8.2f %8.2f  s\n", name, median(ds).Seconds(), minOf(ds).Seconds(), maxOf(ds).Seconds())
	}
	row("cold: create -> RUNNING", cold)
	row("cold: create -> first Spark job done", coldJob)
	row("warm pool: create -> RUNNING", warm)
	row("warm pool: create -> first Spark job done", warmJob)
	fmt.Printf("\nmemory of one idle pooled instance (agent process tree RSS): %s\n", idleRSS)

	if *skipEnc {
		return
	}
	fmt.Printf("\nshuffle-heavy job (%d rows, 16 partitions, 2 workers): median of 6 timed runs per cluster, in two passes\n", *rows)
	fmt.Printf("%-40s %10s %10s\n", "cluster", "seconds", "vs plain")
	cases := []struct {
		name string
		lde  bool
		auth bool
		id   string
		runs []time.Duration
	}{{name: "plain"}, {name: "intra-cluster encryption (SE2)", auth: true}, {name: "local disk encryption (SE4)", lde: true},
		{name: "both", lde: true, auth: true}}
	// All four clusters run side by side (idle between their turns); the
	// passes alternate their order, so load from elsewhere on the machine
	// falls on every case alike.
	for i := range cases {
		cc := map[string]string{"spark.sql.shuffle.partitions": "16"}
		for k, v := range conf {
			cc[k] = v
		}
		if cases[i].auth {
			cc["spark.authenticate"] = "true"
		}
		c, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "enc-" + strconv.Itoa(i), SparkVersion: version,
			NodeTypeId: "tandem.small", NumWorkers: 2, SparkConf: cc, EnableLocalDiskEncryption: cases[i].lde})
		harness.Must(err)
		cases[i].id = c.ClusterId
	}
	for pass := 0; pass < 2; pass++ {
		for j := range cases {
			i := j
			if pass == 1 {
				i = len(cases) - 1 - j
			}
			cases[i].runs = append(cases[i].runs, shuffleJob(ctx, w, cases[i].id, *rows)...)
		}
	}
	plain := median(cases[0].runs).Seconds()
	for _, c := range cases {
		secs := median(c.runs).Seconds()
		fmt.Printf("%-40s %10.2f %9.0f%%\n", c.name, secs, (secs/plain-1)*100)
		_, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: c.id})
		harness.Must(err)
	}
}

// startCluster creates a cluster, measures until it is RUNNING (polling
// every 50 ms) and until a first Spark job on it is done, then deletes it.
func startCluster(ctx context.Context, w *databricks.WorkspaceClient, spec compute.CreateCluster, show bool) (time.Duration, time.Duration) {
	start := time.Now()
	c, err := w.Clusters.Create(ctx, spec)
	harness.Must(err)
	id := c.ClusterId
	for {
		d, err := w.Clusters.GetByClusterId(ctx, id)
		harness.Must(err)
		if d.State == compute.StateRunning {
			break
		}
		if d.State == compute.StateTerminated || d.State == compute.StateError {
			log.Fatalf("cluster %s: %s %s", id, d.State, d.StateMessage)
		}
		time.Sleep(50 * time.Millisecond)
	}
	running := time.Since(start)
	out := runScript(ctx, w, id, "print('rows', spark.range(1000).count())\n")
	job := time.Since(start)
	if !strings.Contains(out, "rows 1000") {
		log.Fatalf("first job: %s", out)
	}
	if show {
		log.Printf("%s: RUNNING after %s, first job done after %s", spec.ClusterName, running.Round(time.Millisecond), job.Round(time.Millisecond))
	}
	_, err = w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: id})
	harness.Must(err)
	return running, job
}

var seq int

// runScript runs a Python file on the cluster through the Jobs API and
// returns its output.
func runScript(ctx context.Context, w *databricks.WorkspaceClient, clusterID, script string) string {
	seq++
	path := fmt.Sprintf("dbfs:/bench/script-%d.py", seq)
	harness.Must(w.Dbfs.WriteFile(ctx, path, []byte(script)))
	run, err := w.Jobs.SubmitAndWait(ctx, jobs.SubmitRun{RunName: "bench", Tasks: []jobs.SubmitTask{{TaskKey: "t",
		ExistingClusterId: clusterID, SparkPythonTask: &jobs.SparkPythonTask{PythonFile: path}}}})
	harness.Must(err)
	out, err := w.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
	harness.Must(err)
	if run.State.ResultState != jobs.RunResultStateSuccess {
		log.Fatalf("script failed: %s %s %s", run.State.StateMessage, out.Error, out.ErrorTrace)
	}
	return out.Logs
}

var elapsedLine = regexp.MustCompile(`elapsed_ms (\d+)`)

// shuffleJob runs the shuffle job four times in one application on the
// cluster (the first warms up) and returns the times of the others.
func shuffleJob(ctx context.Context, w *databricks.WorkspaceClient, clusterID string, rows int) []time.Duration {
	script := fmt.Sprintf(`import time
from pyspark.sql import functions as F
for i in range(4):
    t = time.time()
    df = (spark.range(0, %d).withColumn("k", F.col("id") %% 997)
          .withColumn("pad", F.sha2(F.col("id").cast("string"), 256))
          .repartition(16, "k").groupBy("k").agg(F.count("*").alias("n"), F.max("pad").alias("m")))
    n = df.count()
    print("elapsed_ms", int((time.time() - t) * 1000), "groups", n)
`, rows)
	out := runScript(ctx, w, clusterID, script)
	var ms []time.Duration
	for i, m := range elapsedLine.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		if i > 0 {
			ms = append(ms, time.Duration(n)*time.Millisecond)
		}
	}
	if len(ms) != 3 {
		log.Fatalf("shuffle job output: %s", out)
	}
	return ms
}

func waitIdle(ctx context.Context, w *databricks.WorkspaceClient, pool string, n int) {
	for {
		p, err := w.InstancePools.GetByInstancePoolId(ctx, pool)
		harness.Must(err)
		if p.Stats != nil && p.Stats.IdleCount >= n && p.Stats.PendingIdleCount == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// idleMemory sums the resident memory of the process trees of the pool's
// idle instances and returns the figure per instance.
func idleMemory(dir string, w *databricks.WorkspaceClient, ctx context.Context, pool string) string {
	entries, _ := os.ReadDir(filepath.Join(dir, "instances"))
	var per []int64
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "instances", e.Name(), "agent.pid"))
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		var rss int64
		procs := 0
		for _, p := range tree(pid) {
			rss += rssOf(p)
			procs++
		}
		per = append(per, rss)
		_ = procs
	}
	if len(per) == 0 {
		return "no idle instance"
	}
	sort.Slice(per, func(i, j int) bool { return per[i] < per[j] })
	return fmt.Sprintf("%.1f MiB (median of %d instances; processes: the agent only)", float64(per[len(per)/2])/(1<<20), len(per))
}

func tree(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func median(ds []time.Duration) time.Duration {
	c := append([]time.Duration(nil), ds...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2]
}

func minOf(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func maxOf(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
