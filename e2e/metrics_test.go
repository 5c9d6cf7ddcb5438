//go:build spark

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/jobs"

	"github.com/tandemdata/tandem/internal/proc"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// prometheusBin is the Prometheus server scripts/setup installs (Debian
// package prometheus).
const prometheusBin = "/usr/bin/prometheus"

// TestPrometheusFindsNodeAndSparkSeries runs the real Prometheus server
// against a running cluster: it finds the nodes through the control
// plane's HTTP service discovery (TLS with the region's CA, an admin's
// bearer token), scrapes each node's exposition, and its query API then
// answers with node series and Spark series (executors, tasks) of the
// cluster. The history API has the same figures for charts.
func TestPrometheusFindsNodeAndSparkSeries(t *testing.T) {
	if _, err := os.Stat(prometheusBin); err != nil {
		t.Skipf("%s is missing (scripts/setup installs the Debian package prometheus): %v", prometheusBin, err)
	}
	srv := startRegion(t)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "metrics", SparkVersion: latest(t, w),
		NodeTypeId: "tandem.small", NumWorkers: 1, SparkConf: sparkConf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Clusters.PermanentDeleteByClusterId(context.Background(), cl.ClusterId) })

	prom := startPrometheus(t, srv)

	// A Spark application that keeps its executor busy for a while, so
	// that Prometheus scrapes it running.
	script := `import time
from pyspark.sql import functions as F
end = time.time() + 40
n = 0
while time.time() < end:
    spark.range(0, 200000).withColumn("k", F.col("id") % 13).groupBy("k").count().collect()
    n += 1
    time.sleep(0.5)
print("rounds", n)
`
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/e2e/metrics.py", []byte(script)); err != nil {
		t.Fatal(err)
	}
	sub, err := w.Jobs.Submit(ctx, jobs.SubmitRun{RunName: "metrics", Tasks: []jobs.SubmitTask{{TaskKey: "busy",
		ExistingClusterId: cl.ClusterId, SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/e2e/metrics.py"}}}})
	if err != nil {
		t.Fatal(err)
	}

	id := cl.ClusterId
	waitFor(t, "both nodes' memory in Prometheus", 90*time.Second, func() (bool, string) {
		res, err := prom.query(fmt.Sprintf(`tandem_node_memory_rss_bytes{cluster_id=%q}`, id))
		return err == nil && len(res) == 2 && res[0].value > 0 && res[1].value > 0, fmt.Sprint(res, err)
	})
	res, _ := prom.query(fmt.Sprintf(`tandem_node_memory_rss_bytes{cluster_id=%q}`, id))
	roles := map[string]string{}
	for _, r := range res {
		roles[r.labels["instance_id"]] = r.labels["role"]
		if r.labels["node_type"] != "tandem.small" || r.labels["instance"] != r.labels["instance_id"] {
			t.Errorf("node series labels: %v", r.labels)
		}
	}
	if roles[cl.Driver.InstanceId] != "driver" || roles[cl.Executors[0].InstanceId] != "worker" {
		t.Errorf("roles in Prometheus: %v", roles)
	}
	waitFor(t, "the cluster's worker in Prometheus", 30*time.Second, func() (bool, string) {
		res, err := prom.query(fmt.Sprintf(`tandem_spark_workers{cluster_id=%q}`, id))
		return err == nil && len(res) == 1 && res[0].value == 1, fmt.Sprint(res, err)
	})
	waitFor(t, "the application's executor and its tasks in Prometheus", 3*time.Minute, func() (bool, string) {
		ex, err := prom.query(fmt.Sprintf(`max_over_time(tandem_spark_executors{cluster_id=%q}[10m])`, id))
		// One series per application: the shared driver is one too.
		if err != nil || len(ex) < 1 || ex[0].value < 1 {
			return false, fmt.Sprint("executors ", ex, err)
		}
		tasks, err := prom.query(fmt.Sprintf(`max_over_time(tandem_spark_executor_completed_tasks_total{cluster_id=%q,executor_id!="driver"}[10m])`, id))
		if err != nil || len(tasks) == 0 || tasks[0].value < 1 {
			return false, fmt.Sprint("completed tasks ", tasks, err)
		}
		return true, ""
	})
	// What a scrape of the driver's target returns, for the docs.
	r := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/metrics/prometheus?instance_id="+cl.Driver.InstanceId, nil)
	for _, line := range strings.Split(string(r.Body), "\n") {
		if strings.HasPrefix(line, "tandem_node_memory_rss_bytes") || strings.HasPrefix(line, "tandem_spark_") {
			t.Logf("exposition: %s", line)
		}
	}
	for _, q := range []string{
		`max_over_time(tandem_spark_executor_shuffle_write_bytes_total{cluster_id=%q,executor_id!="driver"}[10m])`,
		`tandem_node_cpu_usage_ratio{cluster_id=%q}`,
		`tandem_node_network_receive_bytes_total{cluster_id=%q}`,
	} {
		res, err := prom.query(fmt.Sprintf(q, id))
		t.Logf("%s: %v %v", fmt.Sprintf(q, id), res, err)
		if err != nil || len(res) == 0 {
			t.Errorf("%s: %v %v", q, res, err)
		}
	}

	run, err := w.Jobs.WaitGetRunJobTerminatedOrSkipped(ctx, sub.Response.RunId, 4*time.Minute, nil)
	if err != nil || run.State.ResultState != jobs.RunResultStateSuccess {
		t.Fatalf("the busy run: %v %+v", err, run)
	}

	// The executors' JVM heap comes from their heartbeats (every 10 s);
	// the 40 s application has had several.
	heap, err := prom.query(fmt.Sprintf(`max_over_time(tandem_spark_executor_jvm_heap_peak_bytes{cluster_id=%q}[10m])`, id))
	t.Logf("JVM heap peaks after the run: %v %v", heap, err)
	if err != nil || len(heap) == 0 || heap[0].value <= 0 {
		t.Errorf("no executor JVM heap in Prometheus: %v %v", heap, err)
	}

	// The history API has the same figures, for charts.
	h := history(t, srv, id, "tandem_spark_executor_completed_tasks_total")
	best := 0.0
	for _, s := range h {
		for _, p := range s.Points {
			best = max(best, p.Value)
		}
	}
	if best < 1 {
		t.Errorf("history of completed tasks: %+v", h)
	}
	if h := history(t, srv, id, "tandem_node_cpu_usage_ratio"); len(h) != 2 || len(h[0].Points) < 2 {
		t.Errorf("history of node CPU: %+v", h)
	}
}

type historySeries struct {
	InstanceID string `json:"instance_id"`
	Role       string `json:"role"`
	Points     []struct {
		Timestamp int64   `json:"timestamp"`
		Value     float64 `json:"value"`
	} `json:"points"`
}

func history(t *testing.T, srv *servertest.Server, clusterID, metric string) []historySeries {
	t.Helper()
	r := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/metrics/history?cluster_id="+clusterID+"&metric="+metric, nil)
	var h struct {
		Series []historySeries `json:"series"`
	}
	if r.Status != 200 || json.Unmarshal(r.Body, &h) != nil {
		t.Fatalf("history of %s: %d %s", metric, r.Status, r.Body)
	}
	return h.Series
}

// prometheus is a running Prometheus server.
type prometheus struct {
	url string
}

// startPrometheus runs Prometheus with a configuration that discovers the
// region's nodes over HTTP SD, and stops it when the test ends.
func startPrometheus(t *testing.T, srv *servertest.Server) *prometheus {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(srv.AdminToken), 0o600); err != nil {
		t.Fatal(err)
	}
	// The SD's authorization names its type: Prometheus 2.42 (Debian 12)
	// sends the bare token to SD endpoints otherwise.
	config := fmt.Sprintf(`global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: tandem-nodes
    scheme: https
    authorization:
      credentials_file: %[1]s
    tls_config:
      ca_file: %[2]s
    http_sd_configs:
      - url: %[3]s/api/2.0/tandem/metrics/http-sd
        refresh_interval: 2s
        authorization:
          type: Bearer
          credentials_file: %[1]s
        tls_config:
          ca_file: %[2]s
`, tokenFile, srv.CAFile, srv.URL)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proc.Start(proc.Spec{Path: prometheusBin, Dir: dir, Stdout: logFile, Stderr: logFile, Args: []string{
		"--config.file=" + configFile, "--storage.tsdb.path=" + filepath.Join(dir, "tsdb"),
		"--web.listen-address=" + addr, "--log.level=warn",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(10 * time.Second)
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	prom := &prometheus{url: "http://" + addr}
	waitFor(t, "Prometheus ready", 60*time.Second, func() (bool, string) {
		resp, err := http.Get(prom.url + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	return prom
}

// promSample is one element of an instant query's vector.
type promSample struct {
	labels map[string]string
	value  float64
}

func (s promSample) String() string { return fmt.Sprintf("%v=%g", s.labels, s.value) }

// query runs an instant query.
func (p *prometheus) query(q string) ([]promSample, error) {
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, body.Error)
	}
	var out []promSample
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, _ := strconv.ParseFloat(s, 64)
		out = append(out, promSample{labels: r.Metric, value: v})
	}
	return out, nil
}
