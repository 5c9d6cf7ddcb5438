package compute

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

// TestSharedDriverMasterOfASingleNodeCluster: the driver of a single-node
// cluster runs its shared driver in local mode with the node's cores, as
// its tasks' Spark runs (withLocalMaster); every other node and cluster
// uses the standalone master.
func TestSharedDriverMasterOfASingleNodeCluster(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &Service{Store: st, Log: slog.New(slog.DiscardHandler),
		Catalog: Catalog{NodeTypes: []NodeType{{NodeTypeID: "n4", NumCores: 4}}}}
	cases := []struct {
		name string
		spec ClusterSpec
		role string
		want string
	}{
		{"single node, driver", ClusterSpec{NodeTypeID: "n4"}, wire.RoleDriver, "local[4]"},
		{"single node, unknown node type: one core", ClusterSpec{NodeTypeID: "other"}, wire.RoleDriver, "local[1]"},
		{"workers", ClusterSpec{NodeTypeID: "n4", NumWorkers: 2}, wire.RoleDriver, ""},
		{"autoscaling", ClusterSpec{NodeTypeID: "n4", Autoscale: &AutoScale{MinWorkers: 0, MaxWorkers: 2}}, wire.RoleDriver, ""},
		{"a worker's assignment", ClusterSpec{NodeTypeID: "n4"}, wire.RoleWorker, ""},
	}
	for i, c := range cases {
		cl := Cluster{ID: "c" + string(rune('a'+i)), Spec: c.spec}
		if _, err := st.Update(ctx, func(tx store.Tx) error { return store.Put(tx, kindCluster, cl.ID, cl) }); err != nil {
			t.Fatal(err)
		}
		asg, err := s.assignmentFor(ctx, Instance{ID: "i-" + cl.ID, ClusterID: cl.ID, Role: c.role, NodeType: c.spec.NodeTypeID, Generation: 1})
		if err != nil {
			t.Fatal(err)
		}
		if asg.SharedDriverMaster != c.want {
			t.Errorf("%s: shared driver master %q, want %q", c.name, asg.SharedDriverMaster, c.want)
		}
	}
}
