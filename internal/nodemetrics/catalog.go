package nodemetrics

import (
	"math"
	"sort"
	"strings"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// Prefix starts every series name of this package.
const Prefix = "tandem_"

// Metric types, as Prometheus names them.
const (
	gauge   = "gauge"
	counter = "counter"
)

// def describes one series: its full name, help text and type.
type def struct {
	Name string
	Help string
	Type string
}

// nodeDef is a node figure and how to read it from a report.
type nodeDef struct {
	def
	value func(m wire.Metrics) float64
}

// nodeDefs are the node series, in exposition order.
var nodeDefs = []nodeDef{
	{def{"tandem_node_cpu_cores", "CPUs of the instance's node type.", gauge}, func(m wire.Metrics) float64 { return float64(m.Cores) }},
	{def{"tandem_node_cpu_usage_ratio", "Busy share of the host's CPUs (0 to 1) between the node's last two reports.", gauge}, func(m wire.Metrics) float64 { return m.CPUUsage }},
	{def{"tandem_node_load1", "One-minute load average of the host.", gauge}, func(m wire.Metrics) float64 { return m.Load1 }},
	{def{"tandem_node_process_cpu_seconds_total", "CPU time used by the instance's processes (agent, Spark daemons, tasks).", counter}, func(m wire.Metrics) float64 { return m.CPUSeconds }},
	{def{"tandem_node_memory_rss_bytes", "Resident memory of the instance's processes.", gauge}, func(m wire.Metrics) float64 { return float64(m.MemoryRSSBytes) }},
	{def{"tandem_node_memory_available_bytes", "Memory available on the host (MemAvailable).", gauge}, func(m wire.Metrics) float64 { return float64(m.MemoryFreeBytes) }},
	{def{"tandem_node_memory_total_bytes", "Memory of the host (MemTotal).", gauge}, func(m wire.Metrics) float64 { return float64(m.MemoryTotalBytes) }},
	{def{"tandem_node_disk_used_bytes", "Bytes in the instance's directory (logs, Spark scratch, task files).", gauge}, func(m wire.Metrics) float64 { return float64(m.DiskUsedBytes) }},
	{def{"tandem_node_disk_free_bytes", "Free bytes of the file system holding the instance's directory.", gauge}, func(m wire.Metrics) float64 { return float64(m.DiskFreeBytes) }},
	{def{"tandem_node_disk_total_bytes", "Size of the file system holding the instance's directory.", gauge}, func(m wire.Metrics) float64 { return float64(m.DiskTotalBytes) }},
	{def{"tandem_node_scratch_used_bytes", "Bytes in Spark's local and work directories (shuffle, spill, executor files).", gauge}, func(m wire.Metrics) float64 { return float64(m.ScratchUsedBytes) }},
	{def{"tandem_node_network_receive_bytes_total", "Bytes received by the host's interfaces but loopback.", counter}, func(m wire.Metrics) float64 { return float64(m.NetReceiveBytes) }},
	{def{"tandem_node_network_transmit_bytes_total", "Bytes sent by the host's interfaces but loopback.", counter}, func(m wire.Metrics) float64 { return float64(m.NetTransmitBytes) }},
	{def{"tandem_node_processes", "Processes of the instance.", gauge}, func(m wire.Metrics) float64 { return float64(m.Processes) }},
}

// ageDef is written for every node: how old its figures are.
var ageDef = def{"tandem_node_report_age_seconds", "Seconds since the node's figures arrived at the control plane.", gauge}

// sparkDef is a Spark series an agent may send, with the labels it may
// carry.
type sparkDef struct {
	def
	labels []string
}

// sparkDefs are the Spark series, read on a cluster's driver, in
// exposition order. Agents send them without the prefix.
var sparkDefs = []sparkDef{
	{def{"tandem_spark_master_alive", "1 when the cluster's Spark master is ALIVE.", gauge}, nil},
	{def{"tandem_spark_workers", "Workers registered and ALIVE with the cluster's master.", gauge}, nil},
	{def{"tandem_spark_cores", "Cores the master's workers offer.", gauge}, nil},
	{def{"tandem_spark_cores_used", "Cores in use by applications.", gauge}, nil},
	{def{"tandem_spark_applications", "Running Spark applications.", gauge}, nil},
	{def{"tandem_spark_executors", "Active executors of an application (the driver not counted).", gauge}, []string{"app_id"}},
	{def{"tandem_spark_executor_active_tasks", "Tasks running on an executor.", gauge}, []string{"app_id", "executor_id"}},
	{def{"tandem_spark_executor_completed_tasks_total", "Tasks an executor completed.", counter}, []string{"app_id", "executor_id"}},
	{def{"tandem_spark_executor_failed_tasks_total", "Tasks that failed on an executor.", counter}, []string{"app_id", "executor_id"}},
	{def{"tandem_spark_executor_shuffle_read_bytes_total", "Shuffle bytes an executor read.", counter}, []string{"app_id", "executor_id"}},
	{def{"tandem_spark_executor_shuffle_write_bytes_total", "Shuffle bytes an executor wrote.", counter}, []string{"app_id", "executor_id"}},
	{def{"tandem_spark_executor_storage_memory_used_bytes", "Storage memory an executor uses (cached blocks).", gauge}, []string{"app_id", "executor_id"}},
	{def{"tandem_spark_executor_jvm_heap_peak_bytes", "Peak JVM heap of an executor, as its heartbeats report it.", gauge}, []string{"app_id", "executor_id"}},
}

// maxSparkSamples bounds the Spark samples kept per node; maxLabelValue
// the length of a label value.
const (
	maxSparkSamples = 1024
	maxLabelValue   = 128
)

var sparkByName = func() map[string]int {
	m := map[string]int{}
	for i, d := range sparkDefs {
		m[strings.TrimPrefix(d.Name, Prefix)] = i
	}
	return m
}()

// Sample is a Spark figure the control plane kept: a known series, its
// allowed labels, a finite value.
type Sample struct {
	def    int // index in sparkDefs
	labels []string
	Value  float64
}

// cleanSpark keeps the samples an agent sent that name a known series,
// carry exactly its labels with printable values, and hold a finite value;
// at most maxSparkSamples of them.
func cleanSpark(in []wire.Sample) []Sample {
	var out []Sample
	for _, s := range in {
		if len(out) >= maxSparkSamples {
			break
		}
		i, ok := sparkByName[s.Name]
		if !ok || math.IsNaN(s.Value) || math.IsInf(s.Value, 0) || len(s.Labels) != len(sparkDefs[i].labels) {
			continue
		}
		vals := make([]string, 0, len(s.Labels))
		for _, name := range sparkDefs[i].labels {
			v, ok := s.Labels[name]
			if !ok || !validLabelValue(v) {
				vals = nil
				break
			}
			vals = append(vals, v)
		}
		if vals == nil && len(sparkDefs[i].labels) > 0 {
			continue
		}
		out = append(out, Sample{def: i, labels: vals, Value: s.Value})
	}
	return out
}

// validLabelValue admits the ids Spark makes (app-20260101-0001, driver,
// 0): 1 to maxLabelValue letters, digits and _ . : - (a loop, not a
// regexp: it runs for every sample of every report).
func validLabelValue(v string) bool {
	if len(v) == 0 || len(v) > maxLabelValue {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// historyNames are the series kept in history: every node series, and
// every Spark series summed over its labels (all executors of all
// applications on the node).
var historyNames = func() []string {
	var out []string
	for _, d := range nodeDefs {
		out = append(out, d.Name)
	}
	for _, d := range sparkDefs {
		out = append(out, d.Name)
	}
	return out
}()

var historyIndex = func() map[string]int {
	m := map[string]int{}
	for i, n := range historyNames {
		m[n] = i
	}
	return m
}()

// MetricNames lists the series the history API serves, sorted.
func MetricNames() []string {
	out := append([]string(nil), historyNames...)
	sort.Strings(out)
	return out
}

// historyValues is one report reduced to the history's fixed vector. A
// Spark series the report does not carry is NaN (absent), not zero.
func historyValues(m wire.Metrics, spark []Sample) []float64 {
	v := make([]float64, len(historyNames))
	for i, d := range nodeDefs {
		v[i] = d.value(m)
	}
	for i := range sparkDefs {
		v[len(nodeDefs)+i] = math.NaN()
	}
	for _, s := range spark {
		j := len(nodeDefs) + s.def
		if math.IsNaN(v[j]) {
			v[j] = 0
		}
		v[j] += s.Value
	}
	return v
}
