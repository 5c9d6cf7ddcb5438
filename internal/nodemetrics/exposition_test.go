package nodemetrics

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

func testNodes() []current {
	driver := current{
		node: Node{InstanceID: "i-driver", ClusterID: "0101-000000-abc", Role: "driver", NodeType: "tandem.small"},
		age:  1500 * time.Millisecond,
		latest: wire.Metrics{Cores: 2, CPUUsage: 0.25, Load1: 0.5, CPUSeconds: 12.5, MemoryRSSBytes: 1 << 30, MemoryFreeBytes: 2 << 30,
			MemoryTotalBytes: 8 << 30, DiskUsedBytes: 1000, DiskFreeBytes: 5000, DiskTotalBytes: 9000, ScratchUsedBytes: 300,
			NetReceiveBytes: 42, NetTransmitBytes: 43, Processes: 3},
		spark: cleanSpark([]wire.Sample{
			{Name: "spark_workers", Value: 1},
			{Name: "spark_executors", Labels: map[string]string{"app_id": "app-1"}, Value: 1},
			{Name: "spark_executor_completed_tasks_total", Labels: map[string]string{"app_id": "app-1", "executor_id": "0"}, Value: 8},
		}),
	}
	idle := current{node: Node{InstanceID: "i-idle", NodeType: "tandem.small"}, latest: wire.Metrics{Cores: 2}}
	return []current{driver, idle}
}

// TestExpositionMatchesGolden pins the text Prometheus scrapes: names,
// help, types, the node labels and the Spark labels.
func TestExpositionMatchesGolden(t *testing.T) {
	got, err := exposition(testNodes())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "exposition.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(golden, got, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (UPDATE_GOLDEN=1 writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("exposition differs from %s:\n%s", golden, got)
	}
}

// TestExpositionParsesBackWithEveryNodeLabel reads the exposition with
// Prometheus' own parser.
func TestExpositionParsesBackWithEveryNodeLabel(t *testing.T) {
	b, err := exposition(testNodes())
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Prometheus cannot parse the exposition: %v", err)
	}
	rss := fams["tandem_node_memory_rss_bytes"]
	if rss == nil || len(rss.Metric) != 2 {
		t.Fatalf("tandem_node_memory_rss_bytes: %v", rss)
	}
	labels := map[string]string{}
	for _, l := range rss.Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	want := map[string]string{"cluster_id": "0101-000000-abc", "instance_id": "i-driver", "role": "driver", "node_type": "tandem.small"}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, labels[k], v)
		}
	}
	if got := rss.Metric[0].GetGauge().GetValue(); got != 1<<30 {
		t.Errorf("rss = %v", got)
	}
	tasks := fams["tandem_spark_executor_completed_tasks_total"]
	if tasks == nil || len(tasks.Metric) != 1 || tasks.Metric[0].GetCounter().GetValue() != 8 {
		t.Fatalf("completed tasks: %v", tasks)
	}
	for name := range fams {
		if !model.LegacyValidation.IsValidMetricName(name) {
			t.Errorf("invalid metric name %q", name)
		}
	}
}

func TestCleanSparkKeepsOnlyKnownSeriesWithTheirLabels(t *testing.T) {
	ok := map[string]string{"app_id": "app-20260101-0001", "executor_id": "driver"}
	tests := []struct {
		name string
		in   wire.Sample
		keep bool
	}{
		{"known, no labels", wire.Sample{Name: "spark_workers", Value: 2}, true},
		{"known with labels", wire.Sample{Name: "spark_executor_active_tasks", Labels: ok, Value: 1}, true},
		{"unknown name", wire.Sample{Name: "node_evil", Value: 1}, false},
		{"prefixed name", wire.Sample{Name: "tandem_spark_workers", Value: 1}, false},
		{"missing label", wire.Sample{Name: "spark_executor_active_tasks", Labels: map[string]string{"app_id": "a"}, Value: 1}, false},
		{"extra label", wire.Sample{Name: "spark_workers", Labels: map[string]string{"x": "y"}, Value: 1}, false},
		{"wrong label", wire.Sample{Name: "spark_executors", Labels: map[string]string{"user": "a"}, Value: 1}, false},
		{"label value with a quote", wire.Sample{Name: "spark_executors", Labels: map[string]string{"app_id": `a"b`}, Value: 1}, false},
		{"label value too long", wire.Sample{Name: "spark_executors", Labels: map[string]string{"app_id": strings.Repeat("a", maxLabelValue+1)}, Value: 1}, false},
		{"empty label value", wire.Sample{Name: "spark_executors", Labels: map[string]string{"app_id": ""}, Value: 1}, false},
		{"NaN", wire.Sample{Name: "spark_workers", Value: math.NaN()}, false},
		{"infinity", wire.Sample{Name: "spark_workers", Value: math.Inf(1)}, false},
	}
	for _, tt := range tests {
		if got := len(cleanSpark([]wire.Sample{tt.in})) == 1; got != tt.keep {
			t.Errorf("%s: kept = %v, want %v", tt.name, got, tt.keep)
		}
	}
	many := make([]wire.Sample, maxSparkSamples+10)
	for i := range many {
		many[i] = wire.Sample{Name: "spark_workers", Value: 1}
	}
	if n := len(cleanSpark(many)); n != maxSparkSamples {
		t.Errorf("kept %d samples, want at most %d", n, maxSparkSamples)
	}
}
