package compute_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/iam"

	"github.com/tandemdata/tandem/internal/agent/agenttest"
	"github.com/tandemdata/tandem/internal/audit"
	tcompute "github.com/tandemdata/tandem/internal/compute"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// The subject here is the control plane: the Clusters and Instance Pools
// APIs, the reconciler, the gateway and real agents. Spark itself is faked
// (agenttest); the e2e group runs real Spark.

func start(t *testing.T, prov *agenttest.Provider, opts ...servertest.Option) *servertest.Server {
	t.Helper()
	opts = append([]servertest.Option{
		func(c *config.Config) { c.Compute.HeartbeatSeconds = 0.3 },
		servertest.WithSetup(func(s *server.Server) { s.Compute.Provider = prov }),
	}, opts...)
	return servertest.Start(t, opts...)
}

func newProvider(t *testing.T) *agenttest.Provider {
	p := agenttest.NewProvider(t.TempDir())
	t.Cleanup(p.Close)
	return p
}

const version = "4.1.x-scala2.13"

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

func wantEvents(t *testing.T, have []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(have, w) {
			t.Fatalf("event %s missing from %v", w, have)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: timed out (last: %s)", what, last)
}

// TestClusterLifecycleThroughTheSDK drives one cluster through every
// state with the SDK's waiters.
func TestClusterLifecycleThroughTheSDK(t *testing.T) {
	prov := newProvider(t)
	srv := start(t, prov)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)

	v, err := w.Clusters.SelectSparkVersion(ctx, compute.SparkVersionRequest{Latest: true})
	if err != nil || v != version {
		t.Fatalf("SelectSparkVersion: %q %v", v, err)
	}
	nt, err := w.Clusters.SelectNodeType(ctx, compute.NodeTypeRequest{LocalDisk: true})
	if err != nil || nt != "tandem.small" {
		t.Fatalf("SelectNodeType: %q %v", nt, err)
	}
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "life", SparkVersion: v, NodeTypeId: nt, NumWorkers: 2,
		SparkConf: map[string]string{"spark.sql.shuffle.partitions": "4"}, CustomTags: map[string]string{"team": "data"}})
	if err != nil {
		t.Fatal(err)
	}
	if cl.State != compute.StateRunning || cl.Driver == nil || len(cl.Executors) != 2 || cl.NumWorkers != 2 ||
		cl.ClusterSource != compute.ClusterSourceApi || cl.CreatorUserName != "admin@tandem.local" || cl.DefaultTags["ClusterId"] != cl.ClusterId ||
		cl.CustomTags["team"] != "data" || cl.SparkContextId == 0 || cl.ClusterCores != 3 {
		t.Fatalf("after CreateAndWait: %+v", cl)
	}
	if got := len(prov.IDs()); got != 3 {
		t.Fatalf("%d instances, want 3", got)
	}
	wantEvents(t, eventTypes(t, w, cl.ClusterId), "CREATING", "DRIVER_HEALTHY", "RUNNING")

	// Start on a running cluster is INVALID_STATE, as on Databricks.
	if _, err := w.Clusters.Start(ctx, compute.StartCluster{ClusterId: cl.ClusterId}); !errors.Is(err, apierr.ErrInvalidState) {
		t.Fatalf("start while running: %v", err)
	}

	resized, err := w.Clusters.ResizeAndWait(ctx, compute.ResizeCluster{ClusterId: cl.ClusterId, NumWorkers: 3})
	if err != nil || len(resized.Executors) != 3 {
		t.Fatalf("resize: %v %+v", err, resized)
	}
	wantEvents(t, eventTypes(t, w, cl.ClusterId), "RESIZING", "UPSIZE_COMPLETED")

	before := cl.SparkContextId
	restarted, err := w.Clusters.RestartAndWait(ctx, compute.RestartCluster{ClusterId: cl.ClusterId})
	if err != nil || restarted.SparkContextId == before || restarted.LastRestartedTime == 0 {
		t.Fatalf("restart: %v %+v", err, restarted)
	}

	edited, err := w.Clusters.EditAndWait(ctx, compute.EditCluster{ClusterId: cl.ClusterId, ClusterName: "life2", SparkVersion: v,
		NodeTypeId: nt, Autoscale: &compute.AutoScale{MinWorkers: 1, MaxWorkers: 4}})
	if err != nil || edited.ClusterName != "life2" || edited.Autoscale == nil || len(edited.Executors) != 3 {
		t.Fatalf("edit: %v %+v", err, edited)
	}
	wantEvents(t, eventTypes(t, w, cl.ClusterId), "EDITED", "RESTARTING")

	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
	got, err := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
	if err != nil || got.State != compute.StateTerminated || got.TerminationReason == nil ||
		got.TerminationReason.Code != compute.TerminationReasonCodeUserRequest || got.TerminatedTime == 0 {
		t.Fatalf("after delete: %v %+v", err, got)
	}
	waitFor(t, "instances deleted", func() (bool, string) { return len(prov.IDs()) == 0, fmt.Sprint(prov.IDs()) })

	// Start brings it back with its spec (autoscaling from min_workers).
	again, err := w.Clusters.StartByClusterIdAndWait(ctx, cl.ClusterId)
	if err != nil || len(again.Executors) != 1 {
		t.Fatalf("start: %v %+v", err, again)
	}
	wantEvents(t, eventTypes(t, w, cl.ClusterId), "STARTING")

	if err := w.Clusters.PermanentDeleteByClusterId(ctx, cl.ClusterId); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Clusters.GetByClusterId(ctx, cl.ClusterId); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Fatalf("get after permanent delete: %v", err)
	}
	all, err := w.Clusters.ListAll(ctx, compute.ListClustersRequest{})
	if err != nil || len(all) != 0 {
		t.Fatalf("list after permanent delete: %v %d", err, len(all))
	}
	waitFor(t, "instances deleted", func() (bool, string) { return len(prov.IDs()) == 0, fmt.Sprint(prov.IDs()) })
}

func TestClusterErrorsAreDatabricksErrors(t *testing.T) {
	srv := start(t, newProvider(t))
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	if _, err := w.Clusters.GetByClusterId(ctx, "0000-000000-nothere"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Fatalf("get unknown: %v", err)
	}
	for _, c := range []struct {
		body any
		want string
	}{
		{map[string]any{"spark_version": "15.4.x-scala2.12", "node_type_id": "tandem.small"}, "Invalid spark version"},
		{map[string]any{"spark_version": version, "node_type_id": "m5.large"}, "not supported"},
		{map[string]any{"spark_version": version, "node_type_id": "tandem.small", "autoscale": map[string]int{"min_workers": 2, "max_workers": 1}}, "greater"},
		{map[string]any{"spark_version": version, "instance_pool_id": "nope"}, "does not exist"},
		{`{"spark_version": 5}`, "MALFORMED"},
	} {
		r := srv.Do(srv.AdminToken, "POST", "/api/2.1/clusters/create", c.body)
		if r.Status != 400 || !strings.Contains(string(r.Body), c.want) {
			t.Errorf("create %v: %d %s", c.body, r.Status, r.Body)
		}
	}
	if r := srv.Do(srv.AdminToken, "POST", "/api/2.1/clusters/events", map[string]any{"cluster_id": "x"}); r.Status != 404 {
		t.Errorf("events of unknown cluster: %d %s", r.Status, r.Body)
	}
	if r := srv.Do(srv.AdminToken, "GET", "/api/2.1/clusters/list?page_token=bad", nil); r.Status != 400 {
		t.Errorf("bad page token: %d %s", r.Status, r.Body)
	}
}

func TestClusterPermissionsAndEntitlements(t *testing.T) {
	srv := start(t, newProvider(t))
	ctx := context.Background()
	alice := srv.NewUser("alice@example.com", false)
	bob := srv.NewUser("bob@example.com", false)
	aw, bw := srv.SDK(alice.Token), srv.SDK(bob.Token)
	spec := compute.CreateCluster{ClusterName: "a", SparkVersion: version, NodeTypeId: "tandem.small"}

	if _, err := aw.Clusters.Create(ctx, spec); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Fatalf("create without allow-cluster-create: %v", err)
	}
	admin := srv.SDK(srv.AdminToken)
	if err := admin.Users.Patch(ctx, iam.PartialUpdate{Id: alice.ID, Operations: []iam.Patch{{Op: iam.PatchOpAdd, Path: "entitlements",
		Value: []map[string]string{{"value": "allow-cluster-create"}}}}, Schemas: []iam.PatchSchema{iam.PatchSchemaUrnIetfParamsScimApiMessages20PatchOp}}); err != nil {
		t.Fatal(err)
	}
	cl, err := aw.Clusters.CreateAndWait(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// The creator manages it; bob sees nothing until granted.
	perms, err := aw.Clusters.GetPermissionsByClusterId(ctx, cl.ClusterId)
	if err != nil || !strings.Contains(fmt.Sprint(perms.AccessControlList), "CAN_MANAGE") {
		t.Fatalf("creator's permissions: %v %+v", err, perms)
	}
	if _, err := bw.Clusters.GetByClusterId(ctx, cl.ClusterId); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Fatalf("bob get: %v", err)
	}
	if list, _ := bw.Clusters.ListAll(ctx, compute.ListClustersRequest{}); len(list) != 0 {
		t.Fatalf("bob lists %d clusters", len(list))
	}
	if _, err := aw.Clusters.UpdatePermissions(ctx, compute.ClusterPermissionsRequest{ClusterId: cl.ClusterId,
		AccessControlList: []compute.ClusterAccessControlRequest{{UserName: bob.UserName, PermissionLevel: compute.ClusterPermissionLevelCanAttachTo}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := bw.Clusters.GetByClusterId(ctx, cl.ClusterId); err != nil {
		t.Fatalf("bob get with CAN_ATTACH_TO: %v", err)
	}
	if _, err := bw.Clusters.Restart(ctx, compute.RestartCluster{ClusterId: cl.ClusterId}); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Fatalf("bob restart with CAN_ATTACH_TO: %v", err)
	}
	// Pinning is for admins.
	if err := aw.Clusters.PinByClusterId(ctx, cl.ClusterId); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Fatalf("alice pin: %v", err)
	}
	if err := admin.Clusters.PinByClusterId(ctx, cl.ClusterId); err != nil {
		t.Fatal(err)
	}
	pinned, _ := admin.Clusters.ListAll(ctx, compute.ListClustersRequest{FilterBy: &compute.ListClustersFilterBy{IsPinned: true}})
	if len(pinned) != 1 {
		t.Fatalf("pinned list: %d", len(pinned))
	}
	if err := admin.Clusters.UnpinByClusterId(ctx, cl.ClusterId); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, eventTypes(t, admin, cl.ClusterId), "PINNED", "UNPINNED")
	if _, err := aw.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
}

// TestPoolsServeClustersAndTakeInstancesBack: clusters take idle instances
// first, then new ones up to max_capacity, then wait and say why; released
// instances go back idle.
func TestPoolsServeClustersAndTakeInstancesBack(t *testing.T) {
	prov := newProvider(t)
	srv := start(t, prov)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	pool, err := w.InstancePools.Create(ctx, compute.CreateInstancePool{InstancePoolName: "small", NodeTypeId: "tandem.small",
		MinIdleInstances: 2, MaxCapacity: 3, IdleInstanceAutoterminationMinutes: 30})
	if err != nil {
		t.Fatal(err)
	}
	stats := func() compute.InstancePoolStats {
		p, err := w.InstancePools.GetByInstancePoolId(ctx, pool.InstancePoolId)
		if err != nil || p.Stats == nil {
			t.Fatalf("get pool: %v", err)
		}
		return *p.Stats
	}
	waitFor(t, "two idle", func() (bool, string) { s := stats(); return s.IdleCount == 2, fmt.Sprintf("%+v", s) })
	idle := prov.IDs()

	a, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "a", SparkVersion: version, InstancePoolId: pool.InstancePoolId, NumWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(idle, a.Driver.InstanceId) || !slices.Contains(idle, a.Executors[0].InstanceId) || a.NodeTypeId != "tandem.small" {
		t.Fatalf("cluster did not take the idle instances %v: driver %s worker %s", idle, a.Driver.InstanceId, a.Executors[0].InstanceId)
	}
	// The pool makes one more (its capacity is 3) to keep instances idle.
	waitFor(t, "refill to capacity", func() (bool, string) {
		s := stats()
		return s.UsedCount == 2 && s.IdleCount == 1, fmt.Sprintf("%+v", s)
	})

	// A second cluster needs two: one idle, and then the pool is full.
	b, err := w.Clusters.Create(ctx, compute.CreateCluster{ClusterName: "b", SparkVersion: version, InstancePoolId: pool.InstancePoolId, NumWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b waits for capacity", func() (bool, string) {
		c, _ := w.Clusters.GetByClusterId(ctx, b.ClusterId)
		return c.State == compute.StatePending && strings.Contains(c.StateMessage, "max capacity of 3"), c.StateMessage
	})
	// Terminating a gives its instances back, and b gets them.
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: a.ClusterId}); err != nil {
		t.Fatal(err)
	}
	bc, err := b.GetWithTimeout(20 * time.Second)
	if err != nil || bc.State != compute.StateRunning {
		t.Fatalf("b: %v %+v", err, bc)
	}
	if len(prov.IDs()) != 3 {
		t.Fatalf("%d instances; the pool's capacity is 3", len(prov.IDs()))
	}
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: b.ClusterId}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all idle again", func() (bool, string) {
		s := stats()
		return s.IdleCount == 3 && s.UsedCount == 0, fmt.Sprintf("%+v", s)
	})

	// A smaller pool lets the extra idle instances go at once.
	if err := w.InstancePools.Edit(ctx, compute.EditInstancePool{InstancePoolId: pool.InstancePoolId, InstancePoolName: "small",
		NodeTypeId: "tandem.small", MinIdleInstances: 1, MaxCapacity: 3, IdleInstanceAutoterminationMinutes: 0,
		ForceSendFields: []string{"IdleInstanceAutoterminationMinutes"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "idle shrinks to min", func() (bool, string) { return len(prov.IDs()) == 1, fmt.Sprint(prov.IDs()) })

	if err := w.InstancePools.DeleteByInstancePoolId(ctx, pool.InstancePoolId); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pool emptied", func() (bool, string) { return len(prov.IDs()) == 0, fmt.Sprint(prov.IDs()) })
	if _, err := w.InstancePools.GetByInstancePoolId(ctx, pool.InstancePoolId); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Fatalf("get deleted pool: %v", err)
	}
}

// TestLostNodeIsReplaced: an instance that dies produces NODES_LOST and
// the cluster returns to its size.
func TestLostNodeIsReplaced(t *testing.T) {
	prov := newProvider(t)
	srv := start(t, prov)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "lose", SparkVersion: version, NodeTypeId: "tandem.small", NumWorkers: 2})
	if err != nil {
		t.Fatal(err)
	}
	victim := cl.Executors[0].InstanceId
	prov.Kill(victim)
	waitFor(t, "back to two workers without the victim", func() (bool, string) {
		c, _ := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
		ids := []string{}
		for _, e := range c.Executors {
			ids = append(ids, e.InstanceId)
		}
		return c.State == compute.StateRunning && len(ids) == 2 && !slices.Contains(ids, victim), fmt.Sprint(c.State, ids)
	})
	wantEvents(t, eventTypes(t, w, cl.ClusterId), "NODES_LOST", "RESIZING", "UPSIZE_COMPLETED")
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestControlPlaneRestartKeepsRunningClusters: the control plane restarts
// while a cluster runs; its instances keep running, their agents
// reconnect, and the cluster is still RUNNING and usable.
func TestControlPlaneRestartKeepsRunningClusters(t *testing.T) {
	prov := newProvider(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	listen := func(c *config.Config) { c.Listen = addr }
	srv := start(t, prov, servertest.WithDataDir(dir), listen)
	ctx := context.Background()
	cl, err := srv.SDK(srv.AdminToken).Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "survivor",
		SparkVersion: version, NodeTypeId: "tandem.small", NumWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	ids := prov.IDs()
	srv.Close()

	srv2 := start(t, prov, servertest.WithDataDir(dir), listen)
	w := srv2.SDK(srv2.AdminToken)
	// Give the agents more than the lost-heartbeat time to reconnect.
	time.Sleep(2 * time.Second)
	got, err := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
	if err != nil || got.State != compute.StateRunning {
		t.Fatalf("after restart: %v %+v", err, got)
	}
	if after := prov.IDs(); !slices.Equal(after, ids) {
		t.Fatalf("instances changed across the restart: %v -> %v", ids, after)
	}
	if slices.Contains(eventTypes(t, w, cl.ClusterId), "NODES_LOST") {
		t.Fatalf("nodes lost across a control-plane restart: %v", eventTypes(t, w, cl.ClusterId))
	}
	// It still does what it is told.
	if _, err := w.Clusters.ResizeAndWait(ctx, compute.ResizeCluster{ClusterId: cl.ClusterId, NumWorkers: 2}); err != nil {
		t.Fatal(err)
	}
}

// TestRunTaskOnTheDriver: the internal task API hands a task to the
// driver's agent, streams its output back and keeps its result.
func TestRunTaskOnTheDriver(t *testing.T) {
	prov := newProvider(t)
	srv := start(t, prov)
	ctx := context.Background()
	cl, err := srv.SDK(srv.AdminToken).Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "tasks",
		SparkVersion: version, NodeTypeId: "tandem.small", NumWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	svc := srv.Compute
	id, err := svc.RunTask(ctx, cl.ClusterId, tcompute.TaskSpec{ID: "t1", RunAs: "admin@tandem.local",
		Runtime: []byte(`{"kind":"python","fake_output":"hello from the driver\n","fake_result":{"notebook_result":"42"},"fake_seconds":0.2}`)})
	if err != nil || id != "t1" {
		t.Fatalf("RunTask: %q %v", id, err)
	}
	// Asking again with the same id is the same task.
	if again, err := svc.RunTask(ctx, cl.ClusterId, tcompute.TaskSpec{ID: "t1", Runtime: []byte(`{}`)}); err != nil || again != "t1" {
		t.Fatalf("RunTask again: %q %v", again, err)
	}
	var st tcompute.TaskStatus
	waitFor(t, "task finished", func() (bool, string) {
		st, err = svc.Task(ctx, id)
		return err == nil && st.State == tcompute.TaskFinished, fmt.Sprint(st.State, err)
	})
	if !st.Succeeded() || !strings.Contains(string(st.Result), `"notebook_result":"42"`) {
		t.Fatalf("task status %+v", st)
	}
	waitFor(t, "output kept", func() (bool, string) {
		out, _, err := svc.TaskOutput(ctx, id, "stdout", 0, 1<<20)
		return err == nil && string(out) == "hello from the driver\n", string(out)
	})
	// A failing task reports its exit status.
	if _, err := svc.RunTask(ctx, cl.ClusterId, tcompute.TaskSpec{ID: "t2", Runtime: []byte(`{"fake_exit_code":3}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task failed", func() (bool, string) {
		st, _ = svc.Task(ctx, "t2")
		return st.State == tcompute.TaskFinished && st.ExitCode == 3 && !st.Succeeded(), fmt.Sprintf("%+v", st)
	})
	// A long task can be canceled.
	if _, err := svc.RunTask(ctx, cl.ClusterId, tcompute.TaskSpec{ID: "t3", Runtime: []byte(`{"fake_seconds":60}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task running", func() (bool, string) { st, _ = svc.Task(ctx, "t3"); return st.State == tcompute.TaskRunning, st.State })
	if err := svc.CancelTask(ctx, "t3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task canceled", func() (bool, string) {
		st, _ = svc.Task(ctx, "t3")
		return st.State == tcompute.TaskFinished && strings.Contains(st.Error, "canceled"), fmt.Sprintf("%+v", st)
	})
	// A terminated cluster takes no tasks.
	if _, err := srv.SDK(srv.AdminToken).Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RunTask(ctx, cl.ClusterId, tcompute.TaskSpec{Runtime: []byte(`{}`)}); !errors.Is(err, tcompute.ErrClusterNotReady) {
		t.Fatalf("task on a terminated cluster: %v", err)
	}
}

// TestAgentsNeedTheirInstanceCertificate: the gateway answers only
// clients with a certificate issued for a live instance.
func TestAgentsNeedTheirInstanceCertificate(t *testing.T) {
	srv := start(t, newProvider(t))
	// A PAT is not an agent credential.
	if r := srv.Do(srv.AdminToken, "POST", "/gateway/v1/poll", map[string]any{}); r.Status != 401 {
		t.Fatalf("poll with a token: %d %s", r.Status, r.Body)
	}
	// A certificate of the region's CA for something that is not an
	// instance is refused too.
	iss, err := srv.CA.IssueClient("i-0000000000000000", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.pem"), iss.CertPEM, 0o600)
	cert, err := iss.TLS()
	if err != nil {
		t.Fatal(err)
	}
	tr := srv.Transport()
	tr.TLSClientConfig.Certificates = append(tr.TLSClientConfig.Certificates, cert)
	resp, err := (&httpClient{tr}).post(srv.URL + "/gateway/v1/poll")
	if err != nil || resp != 401 {
		t.Fatalf("poll with an unknown instance's certificate: %d %v", resp, err)
	}
}

type httpClient struct{ tr *http.Transport }

func (c *httpClient) post(url string) (int, error) {
	resp, err := (&http.Client{Transport: c.tr}).Post(url, "application/json", strings.NewReader("{}"))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestAsynchronousOutcomesAreAudited: create and delete are recorded when
// called, and their outcomes (createResult, deleteResult) as their own
// records sharing the call's requestId.
func TestAsynchronousOutcomesAreAudited(t *testing.T) {
	srv := start(t, newProvider(t))
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "audited", SparkVersion: version, NodeTypeId: "tandem.small"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
	byAction := map[string][]string{} // action -> request ids
	waitFor(t, "results recorded", func() (bool, string) {
		recs, _, err := srv.Journal.Read(audit.Position{}, 100000)
		if err != nil {
			return false, err.Error()
		}
		byAction = map[string][]string{}
		for _, r := range recs {
			if r.Category == "clusters" && (r.Properties.RequestParams["cluster_id"] == cl.ClusterId || r.Properties.ActionName == "create") {
				byAction[r.Properties.ActionName] = append(byAction[r.Properties.ActionName], r.Properties.RequestID)
			}
		}
		return len(byAction["createResult"]) == 1 && len(byAction["deleteResult"]) == 1, fmt.Sprint(byAction)
	})
	if byAction["createResult"][0] != byAction["create"][0] || byAction["deleteResult"][0] != byAction["delete"][0] {
		t.Fatalf("results do not share their call's requestId: %v", byAction)
	}
}

// TestAutoscalerHandle: SetTargetWorkers grows an autoscaling cluster
// within its range and shrinks it releasing the named workers first.
func TestAutoscalerHandle(t *testing.T) {
	srv := start(t, newProvider(t))
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "auto", SparkVersion: version, NodeTypeId: "tandem.small",
		Autoscale: &compute.AutoScale{MinWorkers: 1, MaxWorkers: 3}})
	if err != nil || len(cl.Executors) != 1 {
		t.Fatalf("create: %v %+v", err, cl)
	}
	if n, err := srv.Compute.SetTargetWorkers(ctx, cl.ClusterId, 9, nil, ""); err != nil || n != 3 {
		t.Fatalf("SetTargetWorkers(9): %d %v", n, err)
	}
	var grown *compute.ClusterDetails
	waitFor(t, "three workers", func() (bool, string) {
		grown, _ = w.Clusters.GetByClusterId(ctx, cl.ClusterId)
		return grown.State == compute.StateRunning && len(grown.Executors) == 3, fmt.Sprint(grown.State, len(grown.Executors))
	})
	snap, err := srv.Compute.SparkState(ctx, cl.ClusterId)
	if err != nil || snap == nil || len(snap.Workers) != 3 {
		t.Fatalf("SparkState: %v %+v", err, snap)
	}
	drained := grown.Executors[2].InstanceId
	if n, err := srv.Compute.SetTargetWorkers(ctx, cl.ClusterId, 2, []string{drained}, ""); err != nil || n != 2 {
		t.Fatalf("SetTargetWorkers(2): %d %v", n, err)
	}
	waitFor(t, "the drained worker released", func() (bool, string) {
		c, _ := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
		var ids []string
		for _, e := range c.Executors {
			ids = append(ids, e.InstanceId)
		}
		return len(ids) == 2 && !slices.Contains(ids, drained), fmt.Sprint(ids)
	})
	evs, _ := w.Clusters.EventsAll(ctx, compute.GetEvents{ClusterId: cl.ClusterId, EventTypes: []compute.EventType{compute.EventTypeResizing}})
	if len(evs) != 2 || evs[0].Details.Cause != compute.EventDetailsCauseAutoscale {
		t.Fatalf("RESIZING events: %+v", evs)
	}
	fixed, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "fixed", SparkVersion: version, NodeTypeId: "tandem.small"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Compute.SetTargetWorkers(ctx, fixed.ClusterId, 2, nil, ""); !errors.Is(err, tcompute.ErrNotAutoscaling) {
		t.Fatalf("SetTargetWorkers on a fixed cluster: %v", err)
	}
}
