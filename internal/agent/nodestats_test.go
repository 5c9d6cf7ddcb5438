package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

func TestParseCPUTimesCountsIdleAndIOWaitAsNotBusy(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want cpuTimes
		ok   bool
	}{
		{"aggregate line", "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n", cpuTimes{busy: 160, total: 1000}, true},
		{"old kernel, four fields", "cpu 10 0 10 80\n", cpuTimes{busy: 20, total: 100}, true},
		{"not the cpu line", "intr 1 2 3 4 5\n", cpuTimes{}, false},
		{"garbage", "cpu a b c d e\n", cpuTimes{}, false},
		{"empty", "", cpuTimes{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseCPUTimes([]byte(tt.in))
			if ok != tt.ok || got != tt.want {
				t.Fatalf("parseCPUTimes = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCPUUsageIsTheBusyShareBetweenReadings(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur cpuTimes
		want      float64
	}{
		{"half busy", cpuTimes{100, 1000}, cpuTimes{150, 1100}, 0.5},
		{"idle", cpuTimes{100, 1000}, cpuTimes{100, 1100}, 0},
		{"no time passed", cpuTimes{100, 1000}, cpuTimes{100, 1000}, 0},
		{"counters went back (reboot)", cpuTimes{100, 1000}, cpuTimes{10, 50}, 0},
	}
	for _, tt := range tests {
		if got := cpuUsage(tt.prev, tt.cur); got != tt.want {
			t.Errorf("%s: cpuUsage = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseNetDevSumsEveryInterfaceButLoopback(t *testing.T) {
	in := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 9999999    100    0    0    0     0          0         0  9999999     100    0    0    0     0       0          0
  eth0: 1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
  eth1:   30       1    0    0    0     0          0         0       40       1    0    0    0     0       0          0
`
	rx, tx := parseNetDev([]byte(in))
	if rx != 1030 || tx != 2040 {
		t.Fatalf("parseNetDev = %d, %d; want 1030, 2040", rx, tx)
	}
}

func TestParseMeminfo(t *testing.T) {
	total, avail := parseMeminfo([]byte("MemTotal:       2048 kB\nMemFree:         100 kB\nMemAvailable:   1024 kB\n"))
	if total != 2048*1024 || avail != 1024*1024 {
		t.Fatalf("parseMeminfo = %d, %d", total, avail)
	}
}

func TestMasterSamples(t *testing.T) {
	got := masterSamples(&wire.SparkSnapshot{Status: "ALIVE", Workers: []string{"a", "b"}, Cores: 4, CoresUsed: 2, ActiveApps: []string{"app-1"}})
	want := []wire.Sample{
		{Name: "spark_master_alive", Value: 1},
		{Name: "spark_workers", Value: 2},
		{Name: "spark_cores", Value: 4},
		{Name: "spark_cores_used", Value: 2},
		{Name: "spark_applications", Value: 1},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("masterSamples (-want +got):\n%s", d)
	}
	if masterSamples(nil) != nil {
		t.Fatal("no snapshot must give no samples")
	}
}

func TestExecutorSamplesCountsExecutorsButNotTheDriverAndSkipsUnmeasuredHeaps(t *testing.T) {
	execs := []executorSummary{
		{ID: "driver", IsActive: true, PeakMemoryMetrics: &struct {
			JVMHeapMemory int64 `json:"JVMHeapMemory"`
		}{JVMHeapMemory: 300}},
		{ID: "0", IsActive: true, ActiveTasks: 2, CompletedTasks: 10, FailedTasks: 1, TotalShuffleRead: 5, TotalShuffleWrite: 6, MemoryUsed: 7},
		{ID: "1", IsActive: false, CompletedTasks: 99},
		{ID: "2", IsActive: true, PeakMemoryMetrics: &struct {
			JVMHeapMemory int64 `json:"JVMHeapMemory"`
		}{JVMHeapMemory: 0}},
	}
	got := executorSamples("app-1", execs)
	d := map[string]string{"app_id": "app-1", "executor_id": "driver"}
	e := map[string]string{"app_id": "app-1", "executor_id": "0"}
	e2 := map[string]string{"app_id": "app-1", "executor_id": "2"}
	want := []wire.Sample{
		{Name: "spark_executor_active_tasks", Labels: d},
		{Name: "spark_executor_completed_tasks_total", Labels: d},
		{Name: "spark_executor_failed_tasks_total", Labels: d},
		{Name: "spark_executor_shuffle_read_bytes_total", Labels: d},
		{Name: "spark_executor_shuffle_write_bytes_total", Labels: d},
		{Name: "spark_executor_storage_memory_used_bytes", Labels: d},
		{Name: "spark_executor_jvm_heap_peak_bytes", Labels: d, Value: 300},
		{Name: "spark_executor_active_tasks", Labels: e, Value: 2},
		{Name: "spark_executor_completed_tasks_total", Labels: e, Value: 10},
		{Name: "spark_executor_failed_tasks_total", Labels: e, Value: 1},
		{Name: "spark_executor_shuffle_read_bytes_total", Labels: e, Value: 5},
		{Name: "spark_executor_shuffle_write_bytes_total", Labels: e, Value: 6},
		{Name: "spark_executor_storage_memory_used_bytes", Labels: e, Value: 7},
		{Name: "spark_executor_active_tasks", Labels: e2},
		{Name: "spark_executor_completed_tasks_total", Labels: e2},
		{Name: "spark_executor_failed_tasks_total", Labels: e2},
		{Name: "spark_executor_shuffle_read_bytes_total", Labels: e2},
		{Name: "spark_executor_shuffle_write_bytes_total", Labels: e2},
		{Name: "spark_executor_storage_memory_used_bytes", Labels: e2},
		{Name: "spark_executors", Labels: map[string]string{"app_id": "app-1"}, Value: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("executorSamples (-want +got):\n%s", diff)
	}
}

// FuzzProcParsers feeds the /proc parsers arbitrary text: they never
// panic, and what they return is sane.
func FuzzProcParsers(f *testing.F) {
	f.Add("cpu  100 5 50 800 40 3 2 0 7 0\n")
	f.Add("  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n")
	f.Add("MemTotal: 2048 kB\nMemAvailable: 1024 kB\n")
	f.Fuzz(func(t *testing.T, s string) {
		if c, ok := parseCPUTimes([]byte(s)); ok && c.busy > c.total {
			t.Fatalf("busy %d > total %d", c.busy, c.total)
		}
		parseNetDev([]byte(s))
		parseMeminfo([]byte(s))
	})
}
