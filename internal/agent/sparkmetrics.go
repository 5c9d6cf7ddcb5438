package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// Bounds on the Spark figures of one report: a driver with many
// applications or executors sends the first ones only.
const (
	maxSparkApps      = 8
	maxSparkExecutors = 64
)

// executorSummary is the part of Spark's REST executor summary
// (/api/v1/applications/<app>/executors) we read.
type executorSummary struct {
	ID                string `json:"id"`
	IsActive          bool   `json:"isActive"`
	ActiveTasks       int64  `json:"activeTasks"`
	FailedTasks       int64  `json:"failedTasks"`
	CompletedTasks    int64  `json:"completedTasks"`
	TotalShuffleRead  int64  `json:"totalShuffleRead"`
	TotalShuffleWrite int64  `json:"totalShuffleWrite"`
	MemoryUsed        int64  `json:"memoryUsed"`
	PeakMemoryMetrics *struct {
		JVMHeapMemory int64 `json:"JVMHeapMemory"`
	} `json:"peakMemoryMetrics"`
}

// masterSamples turns the driver's view of its master into samples.
func masterSamples(snap *wire.SparkSnapshot) []wire.Sample {
	if snap == nil {
		return nil
	}
	alive := 0.0
	if snap.Status == "ALIVE" {
		alive = 1
	}
	return []wire.Sample{
		{Name: "spark_master_alive", Value: alive},
		{Name: "spark_workers", Value: float64(len(snap.Workers))},
		{Name: "spark_cores", Value: float64(snap.Cores)},
		{Name: "spark_cores_used", Value: float64(snap.CoresUsed)},
		{Name: "spark_applications", Value: float64(len(snap.ActiveApps))},
	}
}

// executorSamples turns one application's executor summaries into
// samples. The driver's own entry counts as an executor row (its JVM
// heap) but not in spark_executors.
func executorSamples(appID string, execs []executorSummary) []wire.Sample {
	var out []wire.Sample
	n := 0
	for i, e := range execs {
		if i >= maxSparkExecutors {
			break
		}
		if !e.IsActive {
			continue
		}
		if e.ID != "driver" {
			n++
		}
		l := map[string]string{"app_id": appID, "executor_id": e.ID}
		add := func(name string, v int64) {
			out = append(out, wire.Sample{Name: name, Labels: l, Value: float64(v)})
		}
		add("spark_executor_active_tasks", e.ActiveTasks)
		add("spark_executor_completed_tasks_total", e.CompletedTasks)
		add("spark_executor_failed_tasks_total", e.FailedTasks)
		add("spark_executor_shuffle_read_bytes_total", e.TotalShuffleRead)
		add("spark_executor_shuffle_write_bytes_total", e.TotalShuffleWrite)
		add("spark_executor_storage_memory_used_bytes", e.MemoryUsed)
		// Spark reports zero peaks until the executor's first heartbeat
		// (every 10 s) measures them: no heap is zero bytes, so zero is
		// left out rather than charted.
		if e.PeakMemoryMetrics != nil && e.PeakMemoryMetrics.JVMHeapMemory > 0 {
			add("spark_executor_jvm_heap_peak_bytes", e.PeakMemoryMetrics.JVMHeapMemory)
		}
	}
	return append(out, wire.Sample{Name: "spark_executors", Labels: map[string]string{"app_id": appID}, Value: float64(n)})
}

var sparkMetricsClient = &http.Client{Timeout: 3 * time.Second}

// sparkEvery is how often a driver reads its Spark figures (the agent
// sends metrics every 5 s).
const sparkEvery = 5 * time.Second

// watchSpark reads the cluster's Spark figures on a running driver until
// ctx ends: the master's state (watched by runDriver) and, through the
// master's reverse proxy, each running application's executors. A figure
// that cannot be read is left out.
func (n *node) watchSpark(ctx context.Context) {
	t := time.NewTicker(sparkEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			n.mu.Lock()
			n.spark = nil
			n.mu.Unlock()
			return
		case <-t.C:
		}
		samples := n.a.sparkSamples(ctx)
		n.mu.Lock()
		n.spark = samples
		n.mu.Unlock()
	}
}

// sparkFigures returns the driver's latest Spark figures (nil elsewhere).
func (n *node) sparkFigures() []wire.Sample {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.daemon == nil || n.asg.Role != wire.RoleDriver {
		return nil
	}
	return n.spark
}

// sparkSamples reads the figures once.
func (a *Agent) sparkSamples(ctx context.Context) []wire.Sample {
	snap := a.node.snapshot(ctx)
	port := a.node.uiPort()
	if snap == nil || port == 0 {
		return nil
	}
	out := masterSamples(snap)
	for i, app := range snap.ActiveApps {
		if i >= maxSparkApps {
			break
		}
		execs, err := a.readExecutors(ctx, port, app)
		if err != nil {
			a.log.Debug("read spark executors", "app_id", app, "err", err)
			continue
		}
		out = append(out, executorSamples(app, execs)...)
	}
	return out
}

func (a *Agent) readExecutors(ctx context.Context, uiPort int, app string) ([]executorSummary, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	id := url.PathEscape(app)
	u := fmt.Sprintf("http://%s/proxy/%s/api/v1/applications/%s/executors", net.JoinHostPort(a.cfg.Host, strconv.Itoa(uiPort)), id, id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := sparkMetricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("executors of %s: %s", app, resp.Status)
	}
	var execs []executorSummary
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&execs); err != nil {
		return nil, fmt.Errorf("executors of %s: %w", app, err)
	}
	return execs, nil
}
