//go:build spark

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/service/compute"

	"github.com/tandemdata/tandem/internal/compute/provider/local"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/testenv"
)

// TestMain: testenv's watchdog names a hung test before go test's timeout.
func TestMain(m *testing.M) { testenv.Main(m) }

// sparkConf keeps Spark small on a two-core test machine.
var sparkConf = map[string]string{
	"spark.executor.memory":        "512m",
	"spark.driver.memory":          "512m",
	"spark.sql.shuffle.partitions": "4",
	"spark.ui.showConsoleProgress": "false",
}

// needSpark skips unless the test group has what real clusters need: the
// tandem binary the instances run, and the virtualenv with pyspark.
func needSpark(t *testing.T) {
	t.Helper()
	if os.Getenv("TANDEM_BIN") == "" || os.Getenv("TANDEM_VENV") == "" {
		t.Skip("set TANDEM_BIN and TANDEM_VENV (make test-spark does)")
	}
}

// startRegion starts a region whose clusters run on real local instances,
// and removes every instance it made when the test ends.
func startRegion(t *testing.T, opts ...servertest.Option) *servertest.Server {
	t.Helper()
	needSpark(t)
	// The data directory, then the instances' cleanup, then the server:
	// cleanups run in reverse, so the server stops first (a running
	// reconciler would replace the instances deleted), then the instances
	// go, then their directory.
	dir := t.TempDir()
	opts = append([]servertest.Option{func(c *config.Config) { c.Compute.HeartbeatSeconds = 1; c.DataDir = dir }}, opts...)
	var dataDir string
	t.Cleanup(func() {
		if dataDir != "" {
			deleteInstances(dataDir)
		}
	})
	srv := servertest.Start(t, opts...)
	dataDir = srv.DataDir
	return srv
}

// cleanupInstances kills the agents of a data directory (and so their
// Spark processes) when the test ends: instances outlive the control plane
// by design.
func cleanupInstances(t *testing.T, dataDir string) {
	t.Cleanup(func() { deleteInstances(dataDir) })
}

func deleteInstances(dataDir string) {
	p := &local.Provider{Dir: filepath.Join(dataDir, "instances")}
	list, _ := p.List(context.Background())
	for _, in := range list {
		p.Delete(context.Background(), in.ID)
	}
}

// latest is the newest runtime, picked as SDK users do.
func latest(t *testing.T, w *databricks.WorkspaceClient) string {
	t.Helper()
	v, err := w.Clusters.SelectSparkVersion(context.Background(), compute.SparkVersionRequest{Latest: true})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// eventTypes lists a cluster's event types, oldest first.
func eventTypes(t *testing.T, w *databricks.WorkspaceClient, id string) []string {
	t.Helper()
	evs, err := w.Clusters.EventsAll(context.Background(), compute.GetEvents{ClusterId: id, Order: compute.GetEventsOrderAsc})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Type))
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (last: %s)", what, timeout, last)
}

func hasAll(have []string, want ...string) (bool, string) {
	joined := "," + strings.Join(have, ",") + ","
	for _, w := range want {
		if !strings.Contains(joined, ","+w+",") {
			return false, "missing " + w + " in " + strings.Join(have, ",")
		}
	}
	return true, ""
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
