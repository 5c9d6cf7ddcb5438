package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tandemdata/tandem/internal/agent/agenttest"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// TestNodeMetricsAreExposedDiscoveredAndKeptInHistory runs a cluster on
// in-process agents (fake Spark) and reads its nodes' figures through the
// three node metrics endpoints, and the errors they answer.
func TestNodeMetricsAreExposedDiscoveredAndKeptInHistory(t *testing.T) {
	prov := agenttest.NewProvider(t.TempDir())
	t.Cleanup(prov.Close)
	srv := servertest.Start(t, func(c *config.Config) { c.Compute.HeartbeatSeconds = 0.3 },
		servertest.WithSetup(func(s *server.Server) { s.Compute.Provider = prov }))
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "metrics", SparkVersion: "4.1.x-scala2.13",
		NodeTypeId: "tandem.small", NumWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	driver := cl.Driver.InstanceId

	// The exposition of the cluster: both nodes, with their labels.
	var fams map[string]*dtoFamily
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/metrics/prometheus?cluster_id="+cl.ClusterId, nil)
		if r.Status != 200 {
			t.Fatalf("exposition: %d %s", r.Status, r.Body)
		}
		fams = parseExposition(t, r.Body)
		if len(fams["tandem_node_memory_rss_bytes"].series) == 2 && len(fams["tandem_spark_workers"].series) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster's two nodes and its Spark master are not in the exposition:\n%s", r.Body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	roles := map[string]string{}
	for _, s := range fams["tandem_node_memory_rss_bytes"].series {
		if s["cluster_id"] != cl.ClusterId || s["node_type"] != "tandem.small" {
			t.Errorf("node labels: %v", s)
		}
		roles[s["instance_id"]] = s["role"]
	}
	if roles[driver] != "driver" || len(roles) != 2 {
		t.Errorf("roles: %v (driver %s)", roles, driver)
	}
	if w := fams["tandem_spark_workers"]; w.values[0] != 1 || w.series[0]["instance_id"] != driver {
		t.Errorf("tandem_spark_workers: %+v", w)
	}

	// One node's exposition, as a discovered target scrapes it.
	r := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/metrics/prometheus?instance_id="+driver, nil)
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("one node: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	if one := parseExposition(t, r.Body)["tandem_node_memory_rss_bytes"]; len(one.series) != 1 || one.series[0]["instance_id"] != driver {
		t.Fatalf("one node's exposition: %+v", one)
	}

	// Service discovery: a target per node, on the control plane.
	r = srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/metrics/http-sd?cluster_id="+cl.ClusterId, nil)
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(r.Body, &groups); err != nil || len(groups) != 2 {
		t.Fatalf("http-sd: %v %s", err, r.Body)
	}
	host := strings.TrimPrefix(srv.URL, "https://")
	for _, g := range groups {
		l := g.Labels
		if len(g.Targets) != 1 || g.Targets[0] != host || l["__scheme__"] != "https" ||
			l["__metrics_path__"] != "/api/2.0/tandem/metrics/prometheus" || l["__param_instance_id"] != l["instance"] ||
			roles[l["instance"]] == "" || l["__meta_tandem_cluster_id"] != cl.ClusterId || l["__meta_tandem_role"] != roles[l["instance"]] {
			t.Errorf("target group: %+v", g)
		}
	}

	// History, for charts.
	r = srv.Do(srv.AdminToken, "GET", fmt.Sprintf("/api/2.0/tandem/metrics/history?cluster_id=%s&metric=node_memory_rss_bytes", cl.ClusterId), nil)
	var h struct {
		Metric string `json:"metric"`
		Series []struct {
			InstanceID string `json:"instance_id"`
			Role       string `json:"role"`
			Points     []struct {
				Timestamp int64   `json:"timestamp"`
				Value     float64 `json:"value"`
			} `json:"points"`
		} `json:"series"`
	}
	if err := json.Unmarshal(r.Body, &h); err != nil || r.Status != 200 || h.Metric != "tandem_node_memory_rss_bytes" || len(h.Series) != 2 {
		t.Fatalf("history: %d %v %s", r.Status, err, r.Body)
	}
	for _, s := range h.Series {
		if len(s.Points) == 0 || s.Points[0].Value <= 0 || s.Role != roles[s.InstanceID] {
			t.Errorf("history series: %+v", s)
		}
	}

	// Errors.
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/2.0/tandem/metrics/history?cluster_id=" + cl.ClusterId, 400, "INVALID_PARAMETER_VALUE"},
		{"/api/2.0/tandem/metrics/history?metric=bogus", 400, "INVALID_PARAMETER_VALUE"},
		{"/api/2.0/tandem/metrics/history?metric=tandem_node_load1&start_time=10&end_time=5", 400, "INVALID_PARAMETER_VALUE"},
		{"/api/2.0/tandem/metrics/prometheus?instance_id=i-none", 404, "RESOURCE_DOES_NOT_EXIST"},
	} {
		r := srv.Do(srv.AdminToken, "GET", tc.path, nil)
		if r.Status != tc.status || r.JSON(t)["error_code"] != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.path, r.Status, r.Body, tc.status, tc.code)
		}
	}
	user := srv.NewUser("nobody@example.com", false)
	if r := srv.Do(user.Token, "GET", "/api/2.0/tandem/metrics/history?metric=tandem_node_load1", nil); r.Status != 403 {
		t.Errorf("a user reading every node's history: %d %s", r.Status, r.Body)
	}
}

type dtoFamily struct {
	series []map[string]string
	values []float64
}

// parseExposition reads a text exposition with Prometheus' parser.
func parseExposition(t *testing.T, b []byte) map[string]*dtoFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, b)
	}
	out := map[string]*dtoFamily{}
	// Every known name has a family, empty when the exposition lacks it.
	for _, name := range []string{"tandem_node_memory_rss_bytes", "tandem_spark_workers"} {
		out[name] = &dtoFamily{}
	}
	for name, f := range fams {
		d := &dtoFamily{}
		for _, m := range f.Metric {
			l := map[string]string{}
			for _, lp := range m.Label {
				l[lp.GetName()] = lp.GetValue()
			}
			d.series = append(d.series, l)
			d.values = append(d.values, m.GetGauge().GetValue()+m.GetCounter().GetValue())
		}
		out[name] = d
	}
	return out
}
