//go:build spark

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/jobs"

	"github.com/tandemdata/tandem/internal/agent"
	"github.com/tandemdata/tandem/internal/config"
)

// scratchMounts lists the elastic disk mount points under the region's
// instances, with their capacity.
func scratchMounts(t *testing.T, dataDir string) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(dataDir, "instances") + "/"
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], prefix) && strings.HasSuffix(f[4], "/disk/scratch") {
			var st syscall.Statfs_t
			if syscall.Statfs(f[4], &st) == nil {
				out[f[4]] = int64(st.Blocks) * st.Bsize
			}
		}
	}
	return out
}

// TestElasticDiskLetsAShuffleOutgrowTheFirstVolume runs a job whose
// shuffle writes about three times what an enable_elastic_disk cluster's
// first scratch volume holds, at a few hundred MB/s: the nodes attach
// volumes while it runs (EXPANDED_DISK, several at once when the space
// fills fast), the job finishes, the volumes stay while the cluster
// lives and go when it is deleted.
func TestElasticDiskLetsAShuffleOutgrowTheFirstVolume(t *testing.T) {
	if err := agent.ElasticDiskAvailable(context.Background(), t.TempDir()); err != nil {
		t.Skipf("this host cannot mount elastic disk volumes: %v", err)
	}
	const mb = 1 << 20
	srv := startRegion(t, func(c *config.Config) {
		c.Compute.ElasticDisk = config.ElasticDisk{FirstVolumeMB: 64, VolumeMB: 64, MaxVolumes: 8, FreeBelowMB: 40}
	})
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	conf := map[string]string{"spark.shuffle.compress": "false", "spark.shuffle.spill.compress": "false"}
	for k, v := range sparkConf {
		conf[k] = v
	}
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "elastic", SparkVersion: latest(t, w),
		NodeTypeId: "tandem.small", NumWorkers: 1, EnableElasticDisk: true, SparkConf: conf, AutoterminationMinutes: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Clusters.PermanentDeleteByClusterId(ctx, cl.ClusterId)
	mounts := scratchMounts(t, srv.DataDir)
	if len(mounts) != 2 {
		t.Fatalf("scratch volumes %v, want one per node", mounts)
	}
	for m, size := range mounts {
		if size != 64*mb {
			t.Fatalf("%s: first volume %d bytes, want 64 MiB", m, size)
		}
	}

	// About 190 MiB of uncompressed shuffle output, kept until the
	// application ends: three times the first volume.
	script := `from pyspark.sql import functions as F
df = spark.range(0, 700000).select("id", F.repeat(F.md5(F.col("id").cast("string")), 8).alias("s"))
n = df.repartition(8).selectExpr("length(s) as l").groupBy().sum("l").collect()[0][0]
print("shuffled", n)
`
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/e2e/shuffle.py", []byte(script)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run, err := w.Jobs.SubmitAndWait(ctx, jobs.SubmitRun{RunName: "spill", Tasks: []jobs.SubmitTask{{TaskKey: "shuffle",
		ExistingClusterId: cl.ClusterId, SparkPythonTask: &jobs.SparkPythonTask{PythonFile: "dbfs:/e2e/shuffle.py"}}}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := w.Jobs.GetRunOutputByRunId(ctx, run.Tasks[0].RunId)
	if run.State.ResultState != jobs.RunResultStateSuccess || !strings.Contains(out.Logs, fmt.Sprint("shuffled ", 700000*256)) {
		t.Fatalf("the job: %s %s; %s %s %s", run.State.ResultState, run.State.StateMessage, out.Logs, out.Error, out.ErrorTrace)
	}
	t.Logf("job finished in %s", time.Since(start).Round(time.Second))

	all, err := w.Clusters.EventsAll(ctx, compute.GetEvents{ClusterId: cl.ClusterId, Order: compute.GetEventsOrderAsc})
	if err != nil {
		t.Fatal(err)
	}
	expanded := 0
	for _, e := range all {
		switch e.Type {
		case compute.EventTypeExpandedDisk:
			expanded++
			t.Logf("EXPANDED_DISK on %s: %d -> %d MiB, %d MiB free", e.Details.InstanceId, e.Details.PreviousDiskSize/mb, e.Details.DiskSize/mb, e.Details.FreeSpace/mb)
		case compute.EventTypeFailedToExpandDisk, compute.EventTypeDidNotExpandDisk:
			t.Errorf("%s: %s", e.Type, e.Details.DidNotExpandReason)
		}
	}
	if expanded < 1 {
		t.Fatalf("no EXPANDED_DISK event")
	}
	grown := int64(0)
	for _, size := range scratchMounts(t, srv.DataDir) {
		grown = max(grown, size)
	}
	if grown < 3*64*mb {
		t.Fatalf("largest scratch space after the job %d MiB, want at least 192", grown/mb)
	}

	// The cluster's cost so far, through the usage API and clusters/get.
	r := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/usage?group_by=node_type&cluster_id="+cl.ClusterId, nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"node_type_id":"tandem.small"`) {
		t.Fatalf("usage: %d %s", r.Status, r.Body)
	}
	t.Logf("usage: %s", r.Body)
	if g := srv.Do(srv.AdminToken, "GET", "/api/2.1/clusters/get?cluster_id="+cl.ClusterId, nil); !strings.Contains(string(g.Body), `"usage":{`) {
		t.Fatalf("clusters/get has no usage: %s", g.Body)
	} else {
		t.Logf("clusters/get usage: %s", toJSON(g.JSON(t)["usage"]))
	}

	// Volumes stay while the cluster lives: still there a few seconds on.
	time.Sleep(3 * time.Second)
	if now := scratchMounts(t, srv.DataDir); len(now) != 2 {
		t.Fatalf("volumes after the job: %v", now)
	}
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "volumes released", 60*time.Second, func() (bool, string) {
		m := scratchMounts(t, srv.DataDir)
		return len(m) == 0, fmt.Sprint(m)
	})
}
