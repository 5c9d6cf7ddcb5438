package compute_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/databricks/databricks-sdk-go/service/compute"

	"github.com/tandemdata/tandem/internal/agent"
	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// TestElasticDiskEventsReachTheEventLog runs an enable_elastic_disk
// cluster on an in-process agent (real size-limited tmpfs volumes, fake
// Spark), fills its scratch space, and reads EXPANDED_DISK and then
// DID_NOT_EXPAND_DISK through the SDK; deleting the cluster unmounts the
// volumes.
func TestElasticDiskEventsReachTheEventLog(t *testing.T) {
	if err := agent.ElasticDiskAvailable(context.Background(), t.TempDir()); err != nil {
		t.Skipf("this host cannot mount elastic disk volumes: %v", err)
	}
	const mb = 1 << 20
	prov := newProvider(t)
	srv := start(t, prov, servertest.WithSetup(func(s *server.Server) {
		s.Compute.ElasticDisk = wire.ElasticDisk{FirstVolumeBytes: 16 * mb, VolumeBytes: 16 * mb, MaxVolumes: 2, FreeBelowBytes: 6 * mb}
	}))
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "elastic", SparkVersion: version, NodeTypeId: "tandem.small",
		NumWorkers: 0, EnableElasticDisk: true})
	if err != nil {
		t.Fatal(err)
	}
	ids := prov.IDs()
	if len(ids) != 1 {
		t.Fatalf("instances %v", ids)
	}
	scratch := filepath.Join(prov.Dir, ids[0], "disk", "scratch")
	waitFor(t, "the first volume", func() (bool, string) {
		_, err := os.Stat(filepath.Join(scratch, "local"))
		return err == nil && isMount(scratch), fmt.Sprint(err)
	})
	fill := func(name string, n int) error {
		return os.WriteFile(filepath.Join(scratch, "local", name), bytes.Repeat([]byte{1}, n*mb), 0o600)
	}
	if err := fill("a", 12); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EXPANDED_DISK", func() (bool, string) {
		evs := eventTypes(t, w, cl.ClusterId)
		return strings.Contains(strings.Join(evs, ","), "EXPANDED_DISK"), fmt.Sprint(evs)
	})
	// 16 MiB more than the first volume held: it fits now.
	if err := fill("b", 16); err != nil {
		t.Fatalf("write past the first volume: %v", err)
	}
	waitFor(t, "DID_NOT_EXPAND_DISK", func() (bool, string) {
		evs := eventTypes(t, w, cl.ClusterId)
		return strings.Contains(strings.Join(evs, ","), "DID_NOT_EXPAND_DISK"), fmt.Sprint(evs)
	})
	all, err := w.Clusters.EventsAll(ctx, compute.GetEvents{ClusterId: cl.ClusterId})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		switch e.Type {
		case compute.EventTypeExpandedDisk:
			if e.Details.DiskSize != 32*mb || e.Details.PreviousDiskSize != 16*mb || e.Details.InstanceId != ids[0] {
				t.Errorf("EXPANDED_DISK details %+v", e.Details)
			}
		case compute.EventTypeDidNotExpandDisk:
			if !strings.Contains(e.Details.DidNotExpandReason, "maximum of 2 volumes") || e.Details.DiskSize != 32*mb {
				t.Errorf("DID_NOT_EXPAND_DISK details %+v", e.Details)
			}
		}
	}
	count := map[string]int{}
	for _, e := range eventTypes(t, w, cl.ClusterId) {
		count[e]++
	}
	if count["EXPANDED_DISK"] != 1 || count["DID_NOT_EXPAND_DISK"] != 1 || count["FAILED_TO_EXPAND_DISK"] != 0 {
		t.Errorf("disk events recorded %v", count)
	}
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "volumes released", func() (bool, string) { return !isMount(scratch), "still mounted" })
}

func isMount(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
