package compute

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

func TestPurgeKeepsWhatDatabricksKeeps(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	days := func(n int) int64 { return now.Add(-time.Duration(n) * 24 * time.Hour).UnixMilli() }
	_, err = st.Update(ctx, func(tx store.Tx) error {
		for _, c := range []Cluster{
			{ID: "old", State: Terminated, TerminatedTime: days(61)},
			{ID: "pinned", State: Terminated, TerminatedTime: days(61), Pinned: true},
			{ID: "recent", State: Terminated, TerminatedTime: days(40)},
			{ID: "running", State: Running},
		} {
			store.Put(tx, kindCluster, c.ID, c)
			store.Put(tx, kindEvent, eventKey(c.ID, 1), Event{ClusterID: c.ID, Timestamp: days(70)})
			store.Put(tx, kindEvent, eventKey(c.ID, 2), Event{ClusterID: c.ID, Timestamp: days(1)})
		}
		store.Put(tx, kindTask, "done-long-ago", taskRecord{ID: "done-long-ago", State: TaskFinished, Ended: days(8)})
		store.Put(tx, kindTask, "done-today", taskRecord{ID: "done-today", State: TaskFinished, Ended: days(0)})
		return store.Put(tx, kindTask, "running", taskRecord{ID: "running", State: TaskRunning})
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Store: st, Now: func() time.Time { return now }}
	if err := s.purge(ctx); err != nil {
		t.Fatal(err)
	}
	st.View(ctx, func(tx store.Tx) error {
		for key, want := range map[string]bool{"old": false, "pinned": true, "recent": true, "running": true} {
			if ok, _ := store.Exists(tx, kindCluster, key); ok != want {
				t.Errorf("cluster %s kept: %v, want %v", key, ok, want)
			}
		}
		for key, want := range map[string]bool{eventKey("old", 2): false, eventKey("pinned", 1): false, eventKey("pinned", 2): true,
			eventKey("running", 1): false, eventKey("running", 2): true} {
			if ok, _ := store.Exists(tx, kindEvent, key); ok != want {
				t.Errorf("event %s kept: %v, want %v", key, ok, want)
			}
		}
		for key, want := range map[string]bool{"done-long-ago": false, "done-today": true, "running": true} {
			if ok, _ := store.Exists(tx, kindTask, key); ok != want {
				t.Errorf("task %s kept: %v, want %v", key, ok, want)
			}
		}
		return nil
	})
}
