// Command nodemetrics measures the node metrics service in one process:
//
//  1. memory: heap held per node once every node's history is full
//     (Retention/Step entries), with Spark figures on the drivers;
//  2. the cost of taking one report's figures (Observe);
//  3. the cost of a scrape: one node's exposition (what each discovered
//     target costs), every node's, the HTTP SD document, and a cluster's
//     history, each through the real API middleware (no network).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/nodemetrics"
	"github.com/tandemdata/tandem/internal/principal"
)

type admin struct{}

func (admin) Authenticate(context.Context, string) (principal.Principal, error) {
	return principal.Principal{ID: "1", Name: "admin", Admin: true}, nil
}

type noAudit struct{}

func (noAudit) Append(context.Context, *audit.Record) error { return nil }

func main() {
	var (
		nodes     = flag.Int("nodes", 200, "nodes (one driver per cluster of -cluster-size)")
		size      = flag.Int("cluster-size", 4, "nodes per cluster")
		apps      = flag.Int("apps", 2, "running applications per cluster")
		executors = flag.Int("executors", 4, "executors per application")
		calls     = flag.Int("calls", 300, "calls per endpoint measured")
	)
	flag.Parse()
	clock := time.Unix(1_800_000_000, 0)
	svc := &nodemetrics.Service{Now: func() time.Time { return clock }}
	entries := int(nodemetrics.DefaultRetention / nodemetrics.DefaultStep)

	type nodeInfo struct {
		node  nodemetrics.Node
		spark []wire.Sample
	}
	var all []nodeInfo
	for i := 0; i < *nodes; i++ {
		cl := fmt.Sprintf("1206-000000-c%05d", i / *size)
		n := nodemetrics.Node{InstanceID: fmt.Sprintf("i-%016x", i), ClusterID: cl, Role: "worker", NodeType: "tandem.small"}
		var spark []wire.Sample
		if i%*size == 0 {
			n.Role = "driver"
			spark = append(spark, wire.Sample{Name: "spark_workers", Value: float64(*size - 1)}, wire.Sample{Name: "spark_master_alive", Value: 1})
			for a := 0; a < *apps; a++ {
				app := fmt.Sprintf("app-20261206093000-%04d", a)
				spark = append(spark, wire.Sample{Name: "spark_executors", Labels: map[string]string{"app_id": app}, Value: float64(*executors)})
				for e := 0; e < *executors; e++ {
					l := map[string]string{"app_id": app, "executor_id": fmt.Sprint(e)}
					for _, name := range []string{"spark_executor_active_tasks", "spark_executor_completed_tasks_total", "spark_executor_failed_tasks_total",
						"spark_executor_shuffle_read_bytes_total", "spark_executor_shuffle_write_bytes_total", "spark_executor_storage_memory_used_bytes",
						"spark_executor_jvm_heap_peak_bytes"} {
						spark = append(spark, wire.Sample{Name: name, Labels: l, Value: 12345})
					}
				}
			}
		}
		all = append(all, nodeInfo{n, spark})
	}
	metrics := func(k int, spark []wire.Sample) wire.Metrics {
		return wire.Metrics{TimeMillis: clock.UnixMilli(), Load1: 1, CPUSeconds: float64(k), MemoryRSSBytes: 1 << 30, MemoryFreeBytes: 8 << 30,
			MemoryTotalBytes: 24 << 30, DiskUsedBytes: 1 << 20, DiskFreeBytes: 1 << 40, DiskTotalBytes: 2 << 40, Cores: 2, CPUUsage: 0.5,
			NetReceiveBytes: int64(k) << 10, NetTransmitBytes: int64(k) << 10, Processes: 5, Spark: spark}
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for k := 0; k < entries; k++ {
		for _, n := range all {
			svc.Observe(n.node, metrics(k, n.spark))
		}
		clock = clock.Add(nodemetrics.DefaultStep)
	}
	observeTime := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	fmt.Printf("Tandem node metrics benchmark: %d nodes (%d clusters, %d apps x %d executors on each driver), %d history entries each\n\n",
		*nodes, (*nodes+*size-1) / *size, *apps, *executors, entries)
	fmt.Printf("1. memory held with every history full: %.1f MiB, %.0f KiB per node\n", held/(1<<20), held/1024/float64(*nodes))
	fmt.Printf("2. Observe (one report's figures): %.1f µs each (%d reports)\n\n", float64(observeTime.Microseconds())/float64(entries**nodes), entries**nodes)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mux := api.NewMux(api.Config{Auth: admin{}, Audit: noAudit{}, Logger: quiet, ResourceID: "/R"})
	mux.Handle(svc.Routes()...)
	cl := all[0].node.ClusterID
	fmt.Printf("3. API calls through the middleware (no network), %d calls each:\n", *calls)
	fmt.Printf("   %-44s %10s %9s %9s %10s\n", "call", "calls/s", "p50 ms", "p99 ms", "bytes")
	for _, c := range []struct{ name, path string }{
		{"one node's exposition (a driver)", nodemetrics.PathPrometheus + "?instance_id=" + all[0].node.InstanceID},
		{"one node's exposition (a worker)", nodemetrics.PathPrometheus + "?instance_id=" + all[1].node.InstanceID},
		{"one cluster's exposition", nodemetrics.PathPrometheus + "?cluster_id=" + cl},
		{"every node's exposition", nodemetrics.PathPrometheus},
		{"HTTP SD, every node", nodemetrics.PathHTTPSD},
		{"history of one cluster, 1 h, one metric", nodemetrics.PathHistory + "?metric=tandem_node_cpu_usage_ratio&cluster_id=" + cl},
	} {
		var lat []time.Duration
		size := 0
		t0 := time.Now()
		for i := 0; i < *calls; i++ {
			req := httptest.NewRequest(http.MethodGet, c.path, nil)
			req.Header.Set("Authorization", "Bearer x")
			rec := httptest.NewRecorder()
			s := time.Now()
			mux.ServeHTTP(rec, req)
			lat = append(lat, time.Since(s))
			if rec.Code != 200 {
				log.Fatalf("%s: %d %s", c.path, rec.Code, rec.Body)
			}
			size = rec.Body.Len()
		}
		total := time.Since(t0)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		fmt.Printf("   %-44s %10.0f %9.2f %9.2f %10d\n", c.name, float64(*calls)/total.Seconds(), ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), size)
	}
}
