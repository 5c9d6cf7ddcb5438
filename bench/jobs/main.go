// Command jobs benchmarks the Jobs service of a real in-process region:
// the control plane's share of run-now to task start on a running cluster,
// how late cron ticks fire, and a queue of 1,000 runs of one job draining
// in order without loss. Clusters and tasks are doubles that answer at once
// (the task runner records when it is asked to start an attempt), so the
// figures are the control plane's own; the agent's part is measured by the
// compute benchmark.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/databricks/databricks-sdk-go"
	sdkjobs "github.com/databricks/databricks-sdk-go/service/jobs"

	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/identity"
	"github.com/tandemdata/tandem/internal/jobs"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/server"

	nethttp "net/http"
)

type compute struct{}

func (compute) CheckAttach(context.Context, principal.Principal, string) error { return nil }
func (compute) CreateJobCluster(ctx context.Context, key string, spec json.RawMessage, name string, owner principal.Principal) (string, error) {
	return "c-" + key, nil
}
func (compute) ClusterStatus(context.Context, string) (jobs.ClusterObs, error) {
	return jobs.ClusterObs{Ready: true}, nil
}
func (compute) EnsureRunning(context.Context, string) error { return nil }
func (compute) Terminate(context.Context, string) error     { return nil }

// runner starts attempts at once and finishes them after a short time.
type runner struct {
	mu      sync.Mutex
	started map[string]time.Time
	byRun   map[int64]time.Time // first attempt start per job run
	order   []int64
	runTime time.Duration
}

func (r *runner) Start(ctx context.Context, l jobs.Launch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.started[l.Handle]; !ok {
		now := time.Now()
		r.started[l.Handle] = now
		if _, ok := r.byRun[l.RunID]; !ok {
			r.byRun[l.RunID] = now
		}
		r.order = append(r.order, l.RunID)
	}
	return nil
}

func (r *runner) Status(ctx context.Context, cluster, handle string) (jobs.TaskObs, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.started[handle]) < r.runTime {
		return jobs.TaskObs{}, nil
	}
	return jobs.TaskObs{Done: true, Success: true}, nil
}

func (r *runner) Cancel(context.Context, string, string) error { return nil }

func (r *runner) startOf(runID int64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.byRun[runID]
	return t, ok
}

func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[int(q/100*float64(len(ds)-1))]
}

func main() {
	runs := flag.Int("runs", 200, "run-now calls to time")
	cronFor := flag.Duration("cron", 30*time.Second, "how long to watch per-second schedules")
	cronJobs := flag.Int("cron-jobs", 5, "jobs scheduled every second")
	queue := flag.Int("queue", 1000, "queued runs of one job to drain")
	flag.Parse()

	dir, _ := os.MkdirTemp("", "tandem-bench-jobs-")
	defer os.RemoveAll(dir)
	token := identity.NewTokenValue()
	os.Setenv("TANDEM_BOOTSTRAP_TOKEN", token)
	cfg := config.Default()
	cfg.DataDir, cfg.Listen, cfg.Region = dir, "127.0.0.1:0", "bench"
	ctx := context.Background()
	srv, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		log.Fatal(err)
	}
	r := &runner{started: map[string]time.Time{}, byRun: map[int64]time.Time{}, runTime: 20 * time.Millisecond}
	srv.Jobs.Compute, srv.Jobs.Runner = compute{}, r
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	pool, _ := pki.LoadPool(srv.CAFile())
	w, err := databricks.NewWorkspaceClient(&databricks.Config{Host: srv.URL(), Token: token, RateLimitPerSecond: 10000,
		HTTPTransport: &nethttp.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}})
	if err != nil {
		log.Fatal(err)
	}
	task := []sdkjobs.Task{{TaskKey: "t", ExistingClusterId: "running", SparkPythonTask: &sdkjobs.SparkPythonTask{PythonFile: "/x.py"}}}

	// 1. run-now to the task runner's start, on a running cluster.
	job, err := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "latency", MaxConcurrentRuns: 1000, Tasks: task})
	if err != nil {
		log.Fatal(err)
	}
	var lat []time.Duration
	for i := 0; i < *runs; i++ {
		t0 := time.Now()
		resp, err := w.Jobs.RunNow(ctx, sdkjobs.RunNow{JobId: job.JobId})
		if err != nil {
			log.Fatal(err)
		}
		for {
			if st, ok := r.startOf(resp.Response.RunId); ok {
				lat = append(lat, st.Sub(t0))
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	fmt.Printf("run-now to task start (%d runs): p50 %v  p95 %v  p99 %v  max %v\n", len(lat),
		pct(lat, 50).Round(time.Millisecond), pct(lat, 95).Round(time.Millisecond), pct(lat, 99).Round(time.Millisecond), pct(lat, 100).Round(time.Millisecond))

	// 2. Cron firing delay: runs' start against their scheduled second.
	var cron []int64
	for i := 0; i < *cronJobs; i++ {
		j, err := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: fmt.Sprintf("cron-%d", i), MaxConcurrentRuns: 1000, Tasks: task,
			Schedule: &sdkjobs.CronSchedule{QuartzCronExpression: "* * * * * ?", TimezoneId: "UTC"}})
		if err != nil {
			log.Fatal(err)
		}
		cron = append(cron, j.JobId)
	}
	time.Sleep(*cronFor)
	var delays []time.Duration
	for _, id := range cron {
		w.Jobs.Update(ctx, sdkjobs.UpdateJob{JobId: id, NewSettings: &sdkjobs.JobSettings{Schedule: &sdkjobs.CronSchedule{
			QuartzCronExpression: "* * * * * ?", TimezoneId: "UTC", PauseStatus: sdkjobs.PauseStatusPaused}}})
		all, err := w.Jobs.ListRunsAll(ctx, sdkjobs.ListRunsRequest{JobId: id})
		if err != nil {
			log.Fatal(err)
		}
		for _, run := range all {
			start := time.UnixMilli(run.StartTime)
			tick := start.Truncate(time.Second)
			delays = append(delays, start.Sub(tick))
		}
	}
	fmt.Printf("cron firing delay (%d ticks of %d jobs): p50 %v  p99 %v  max %v\n", len(delays), len(cron),
		pct(delays, 50).Round(time.Millisecond), pct(delays, 99).Round(time.Millisecond), pct(delays, 100).Round(time.Millisecond))

	// 3. A queue of runs of one job drains in order.
	qj, err := w.Jobs.Create(ctx, sdkjobs.CreateJob{Name: "queue", MaxConcurrentRuns: 1, Queue: &sdkjobs.QueueSettings{Enabled: true}, Tasks: task})
	if err != nil {
		log.Fatal(err)
	}
	r.mu.Lock()
	r.order = nil
	r.runTime = time.Millisecond
	r.mu.Unlock()
	t0 := time.Now()
	var ids []int64
	for i := 0; i < *queue; i++ {
		resp, err := w.Jobs.RunNow(ctx, sdkjobs.RunNow{JobId: qj.JobId})
		if err != nil {
			log.Fatal(err)
		}
		ids = append(ids, resp.Response.RunId)
	}
	enqueued := time.Since(t0)
	for {
		run, err := w.Jobs.GetRun(ctx, sdkjobs.GetRunRequest{RunId: ids[len(ids)-1]})
		if err != nil {
			log.Fatal(err)
		}
		if run.State.LifeCycleState == sdkjobs.RunLifeCycleStateTerminated {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	drained := time.Since(t0)
	r.mu.Lock()
	order := append([]int64(nil), r.order...)
	r.mu.Unlock()
	inOrder := len(order) == len(ids)
	for i := range order {
		if i < len(ids) && order[i] != ids[i] {
			inOrder = false
		}
	}
	ok := 0
	for _, id := range ids {
		run, err := w.Jobs.GetRun(ctx, sdkjobs.GetRunRequest{RunId: id})
		if err == nil && run.State.ResultState == sdkjobs.RunResultStateSuccess {
			ok++
		}
	}
	fmt.Printf("queue of %d runs (max_concurrent_runs 1): enqueued in %v, drained in %v; %d succeeded, started in order: %v\n",
		len(ids), enqueued.Round(time.Millisecond), drained.Round(time.Millisecond), ok, inOrder)
}
