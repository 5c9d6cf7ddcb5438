package dr_test

import (
	"context"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"

	"github.com/tandemdata/tandem/internal/agent/agenttest"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// TestPassiveRegionStartsNoComputeUntilPromoted: a primary with a pool of
// two idle instances and a running cluster; its secondary runs no instance
// while passive (the pool shows min_idle_instances 0, the cluster
// TERMINATED because of disaster-recovery replication); after a planned
// failover the pool fills to two in the secondary and the cluster, still
// terminated, starts there with the same id. A failback with the
// --start-clusters policy starts it again in the primary.
func TestPassiveRegionStartsNoComputeUntilPromoted(t *testing.T) {
	provs := map[string]*agenttest.Provider{}
	for _, r := range []string{"primary", "secondary"} {
		p := agenttest.NewProvider(t.TempDir())
		t.Cleanup(p.Close)
		provs[r] = p
	}
	p := servertest.NewPair(t)
	p.Start(t,
		func(c *config.Config) { c.Compute.HeartbeatSeconds = 0.3 },
		servertest.WithSetup(func(s *server.Server) { s.Compute.Provider = provs[s.DR.State().Region] }))
	w := p.Primary.SDK(p.Primary.AdminToken)
	pool, err := w.InstancePools.Create(ctx, compute.CreateInstancePool{InstancePoolName: "warm", NodeTypeId: "tandem.small",
		MinIdleInstances: 2, MaxCapacity: 4, IdleInstanceAutoterminationMinutes: 30})
	if err != nil {
		t.Fatal(err)
	}
	idle := func(w interface {
		GetByInstancePoolId(context.Context, string) (*compute.GetInstancePool, error)
	}) int {
		g, err := w.GetByInstancePoolId(ctx, pool.InstancePoolId)
		if err != nil || g.Stats == nil {
			return -1
		}
		return g.Stats.IdleCount
	}
	waitFor(t, "two idle instances in the primary", 30*time.Second, func() bool { return idle(w.InstancePools) == 2 })
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "etl", SparkVersion: "4.1.x-scala2.13",
		NodeTypeId: "tandem.small", NumWorkers: 1, AutoterminationMinutes: 60})
	if err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, p)

	// Passive: nothing runs, and the documents say so.
	sw := p.Secondary.SDK(p.Secondary.AdminToken)
	time.Sleep(2 * time.Second) // a reconciler that ran would have started something by now
	if ids := provs["secondary"].IDs(); len(ids) != 0 {
		t.Fatalf("the passive secondary runs instances %v", ids)
	}
	sp, err := sw.InstancePools.GetByInstancePoolId(ctx, pool.InstancePoolId)
	if err != nil || sp.MinIdleInstances != 0 || sp.Stats == nil || sp.Stats.IdleCount != 0 {
		t.Errorf("the pool in the passive secondary: %+v %v", sp, err)
	}
	sc, err := sw.Clusters.GetByClusterId(ctx, cl.ClusterId)
	if err != nil || sc.State != compute.StateTerminated || sc.TerminationReason == nil ||
		sc.TerminationReason.Code != compute.TerminationReasonCodeDisasterRecoveryReplication || sc.NumWorkers != 1 {
		t.Fatalf("the running cluster in the passive secondary: %+v %v", sc, err)
	}
	if pc, _ := w.Clusters.GetByClusterId(ctx, cl.ClusterId); pc.State != compute.StateRunning {
		t.Errorf("the cluster in the primary: %s", pc.State)
	}

	o := orchestrator(t, pairRegions(p), nil)
	rep, err := o.Run(ctx, dr.Plan{Kind: dr.PlannedFailover, From: "primary", To: "secondary"})
	if err != nil || rep.Outcome != "succeeded" {
		t.Fatalf("planned failover: %v %+v", err, rep)
	}
	// Promoted: the pool's real minimum is back and is filled here.
	waitFor(t, "two idle instances in the promoted secondary", 30*time.Second, func() bool { return idle(sw.InstancePools) == 2 })
	if sp, _ := sw.InstancePools.GetByInstancePoolId(ctx, pool.InstancePoolId); sp.MinIdleInstances != 2 {
		t.Errorf("min_idle_instances after promotion: %d", sp.MinIdleInstances)
	}
	// The cluster is not started by the failover; the user starts it.
	sc, err = sw.Clusters.GetByClusterId(ctx, cl.ClusterId)
	if err != nil || sc.State != compute.StateTerminated || sc.TerminationReason == nil ||
		sc.TerminationReason.Code != compute.TerminationReasonCodeDisasterRecoveryReplication {
		t.Fatalf("the cluster after promotion: %+v %v", sc, err)
	}
	if len(provs["secondary"].IDs()) != 2 {
		t.Errorf("instances in the secondary before the start: %v", provs["secondary"].IDs())
	}
	started, err := sw.Clusters.StartByClusterIdAndWait(ctx, cl.ClusterId)
	if err != nil || started.State != compute.StateRunning || started.ClusterId != cl.ClusterId {
		t.Fatalf("start after failover: %+v %v", started, err)
	}
	if n := len(provs["secondary"].IDs()); n < 4 {
		t.Errorf("the secondary runs %d instances, want the pool's 2 and the cluster's 2", n)
	}
	// The former primary, now following, ran its instances down and shows
	// its cluster as the passive posture has it.
	waitFor(t, "the former primary to release its instances", 30*time.Second, func() bool { return len(provs["primary"].IDs()) == 0 })
	waitFor(t, "the former primary to show the cluster as not running there", 20*time.Second, func() bool {
		pc, err := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
		return err == nil && pc.State == compute.StateTerminated && pc.TerminationReason != nil &&
			pc.TerminationReason.Code == compute.TerminationReasonCodeDisasterRecoveryReplication
	})

	// Failback with the --start-clusters policy: the cluster that runs in
	// the secondary runs in the primary afterwards, and the secondary keeps
	// no instance.
	rep, err = o.Run(ctx, dr.Plan{Kind: dr.Failback, From: "secondary", To: "primary", StartClusters: true})
	if err != nil || rep.Outcome != "succeeded" {
		t.Fatalf("failback: %v %+v", err, rep)
	}
	back, err := w.Clusters.WaitGetClusterRunning(ctx, cl.ClusterId, 30*time.Second, nil)
	if err != nil || back.ClusterId != cl.ClusterId {
		t.Fatalf("the cluster after a failback that starts clusters: %+v %v", back, err)
	}
	waitFor(t, "the secondary to release its instances", 30*time.Second, func() bool { return len(provs["secondary"].IDs()) == 0 })
}
