package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

func TestSparkLogFileStreams(t *testing.T) {
	exec := []struct {
		rel, want string
		ok        bool
	}{
		{"app-20261206093000-0000/0/stdout", "executor/app-20261206093000-0000/0/stdout", true},
		{"app-20261206093000-0000/12/stderr", "executor/app-20261206093000-0000/12/stderr", true},
		{"app-20261206093000-0000/0/spark-core.jar", "", false},
		{"driver-20261206/stdout", "", false},
		{"app-1/stdout", "", false},
	}
	for _, c := range exec {
		got, ok := executorStream(c.rel)
		if got != c.want || ok != c.ok {
			t.Errorf("executor %s: got %q %v, want %q %v", c.rel, got, ok, c.want, c.ok)
		}
	}
	ev := []struct {
		rel, want string
		ok        bool
	}{
		{"app-20261206093000-0000.inprogress", "eventlog/1206-c1_10.0.0.1/app-20261206093000-0000/eventlog", true},
		{"app-20261206093000-0000", "eventlog/1206-c1_10.0.0.1/app-20261206093000-0000/eventlog", true},
		{"local-1700000000000", "eventlog/1206-c1_10.0.0.1/local-1700000000000/eventlog", true},
		{"eventlog_v2_app-1/events_1_app-1", "", false},
		{".hidden", "", false},
	}
	for _, c := range ev {
		got, ok := eventLogStream("1206-c1", "10.0.0.1", c.rel)
		if got != c.want || ok != c.ok {
			t.Errorf("event log %s: got %q %v, want %q %v", c.rel, got, ok, c.want, c.ok)
		}
	}
}

// TestFileShipperFollowsGrowthAndRename tails an event log that grows and
// is renamed when its application ends, and executor output.
func TestFileShipperFollowsGrowthAndRename(t *testing.T) {
	dir := t.TempDir()
	spool, err := newLogSpool(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	spark := filepath.Join(dir, "spark")
	evdir := filepath.Join(spark, eventLogDir)
	os.MkdirAll(evdir, 0o700)
	f := newFileShipper(spool)
	f.on, f.role, f.clusterID, f.host, f.sparkDir = true, wire.RoleDriver, "c1", "h", spark
	ev := filepath.Join(evdir, "app-1.inprogress")
	os.WriteFile(ev, []byte("one\n"), 0o600)
	f.pass()
	fh, _ := os.OpenFile(ev, os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString("two\n")
	fh.Close()
	f.pass()
	os.Rename(ev, filepath.Join(evdir, "app-1"))
	fh, _ = os.OpenFile(filepath.Join(evdir, "app-1"), os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString("end\n")
	fh.Close()
	f.last()
	got, err := spool.read("eventlog/c1_h/app-1/eventlog")
	if err != nil || string(got) != "one\ntwo\nend\n" {
		t.Fatalf("event log stream: %q, %v", got, err)
	}

	w := newFileShipper(spool)
	w.on, w.role, w.sparkDir = true, wire.RoleWorker, spark
	os.MkdirAll(filepath.Join(spark, "work", "app-1", "0"), 0o700)
	os.WriteFile(filepath.Join(spark, "work", "app-1", "0", "stdout"), []byte("printed\n"), 0o600)
	w.pass()
	w.pass()
	got, err = spool.read("executor/app-1/0/stdout")
	if err != nil || string(got) != "printed\n" {
		t.Fatalf("executor stream: %q, %v", got, err)
	}
}
