package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

var ctx = context.Background()

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// leaderSource serves a real store's log the way the peer endpoint does,
// without the network; cut makes every call fail, as a blocked port would.
type leaderSource struct {
	st    store.Store
	info  LeaderInfo
	keys  *keys.Keyring
	cut   atomic.Bool
	calls atomic.Int64
}

var errCut = errors.New("connection refused")

func (l *leaderSource) Changes(ctx context.Context, after int64, limit int, wait time.Duration) (Batch, error) {
	l.calls.Add(1)
	if l.cut.Load() {
		return Batch{}, errCut
	}
	notify, stop := l.st.Notify()
	defer stop()
	deadline := time.After(wait)
	for {
		cs, err := l.st.Changes(ctx, after, limit)
		if err != nil {
			return Batch{}, err
		}
		if len(cs) > 0 || wait == 0 {
			last, _ := l.st.LastSeq(ctx)
			return Batch{LeaderInfo: l.info, LastSeq: last, Changes: cs}, nil
		}
		select {
		case <-notify:
		case <-deadline:
			wait = 0
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		}
	}
}

func (l *leaderSource) Keys(ctx context.Context, names []string) (map[string][][]byte, error) {
	if l.cut.Load() {
		return nil, errCut
	}
	out := map[string][][]byte{}
	for _, n := range names {
		v, err := l.keys.Export(n)
		if err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, nil
}

func put(t *testing.T, s store.Store, kind store.Kind, key, value string) int64 {
	t.Helper()
	seq, err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(kind, key, json.RawMessage(value)) })
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func del(t *testing.T, s store.Store, kind store.Kind, key string) {
	t.Helper()
	if _, err := s.Update(ctx, func(tx store.Tx) error { return tx.Delete(kind, key) }); err != nil {
		t.Fatal(err)
	}
}

func docs(t *testing.T, s store.Store, kinds ...store.Kind) map[string]string {
	t.Helper()
	out := map[string]string{}
	s.View(ctx, func(tx store.Tx) error {
		for _, k := range kinds {
			tx.Scan(k, "", "", func(key string, v json.RawMessage) error {
				var x any
				json.Unmarshal(v, &x)
				b, _ := json.Marshal(x)
				out[string(k)+"/"+key] = string(b)
				return nil
			})
		}
		return nil
	})
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startFollower(t *testing.T, f *Follower) (stop func() error) {
	t.Helper()
	c, cancel := context.WithCancel(ctx)
	var err error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); err = f.Run(c) }()
	var once sync.Once
	stop = func() error { once.Do(func() { cancel(); wg.Wait() }); return err }
	t.Cleanup(func() { stop() })
	return stop
}

func caughtUp(leader, follower store.Store) func() bool {
	return func() bool {
		a, _ := leader.LastSeq(ctx)
		b, _ := follower.LastSeq(ctx)
		return a == b
	}
}

func TestFollowerReplicatesWithPostureAndWithoutLocalKinds(t *testing.T) {
	leader, follower := openStore(t), openStore(t)
	src := &leaderSource{st: leader, info: LeaderInfo{Region: "primary", Epoch: 1, Role: "active"}}
	put(t, leader, "test.notebook", "/a", `{"path":"/a","id":1}`)
	put(t, leader, testPostureKind, "pool-1", `{"min_idle_instances":5,"max_capacity":9}`)
	put(t, leader, testLocalKind, "agent-1", `{"host":"10.0.0.1"}`)
	stop := startFollower(t, &Follower{Store: follower, Source: src, Wait: 200 * time.Millisecond})
	waitFor(t, "catch-up", caughtUp(leader, follower))

	// Later changes arrive through the long poll, deletes included.
	put(t, leader, "test.notebook", "/b", `{"path":"/b","id":2}`)
	del(t, leader, "test.notebook", "/a")
	put(t, leader, testPostureKind, "pool-2", `{"min_idle_instances":1}`)
	del(t, leader, testPostureKind, "pool-1")
	waitFor(t, "catch-up", caughtUp(leader, follower))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"test.notebook//b":                        `{"id":2,"path":"/b"}`,
		"test.pool/pool-2":                        `{"min_idle_instances":0}`,
		"replication.posture/test.pool\x1fpool-2": `{"min_idle_instances":1}`,
	}
	if diff := cmp.Diff(want, docs(t, follower, "test.notebook", testPostureKind, PostureKind, testLocalKind)); diff != "" {
		t.Errorf("follower documents (-want +got):\n%s", diff)
	}
	// Promotion puts the real values back.
	if _, err := follower.Update(ctx, func(tx store.Tx) error { _, err := RestorePostures(tx); return err }); err != nil {
		t.Fatal(err)
	}
	if got := docs(t, follower, testPostureKind, PostureKind); len(got) != 1 || got["test.pool/pool-2"] != `{"min_idle_instances":1}` {
		t.Errorf("after RestorePostures: %v", got)
	}
}

func TestFollowerResumesAfterRestartAndCutLink(t *testing.T) {
	leader, follower := openStore(t), openStore(t)
	src := &leaderSource{st: leader, info: LeaderInfo{Region: "primary", Epoch: 1, Role: "active"}}
	for i := 0; i < 20; i++ {
		put(t, leader, "test.notebook", fmt.Sprint(i), fmt.Sprintf(`{"n":%d}`, i))
	}
	f := &Follower{Store: follower, Source: src, Wait: 100 * time.Millisecond, Batch: 7}
	stop := startFollower(t, f)
	waitFor(t, "catch-up", caughtUp(leader, follower))
	stop()

	// Writes while no follower runs, then a new follower (a restart).
	for i := 20; i < 30; i++ {
		put(t, leader, "test.notebook", fmt.Sprint(i), fmt.Sprintf(`{"n":%d}`, i))
	}
	f2 := &Follower{Store: follower, Source: src, Wait: 100 * time.Millisecond, Batch: 7}
	startFollower(t, f2)
	waitFor(t, "catch-up after restart", caughtUp(leader, follower))

	// Cut the link: writes pile up, the lag shows it, then the link heals.
	src.cut.Store(true)
	for i := 30; i < 40; i++ {
		put(t, leader, "test.notebook", fmt.Sprint(i), fmt.Sprintf(`{"n":%d}`, i))
	}
	waitFor(t, "a failed call", func() bool { return f2.Stats().Failures > 0 })
	if lag := f2.Lag(time.Now()); lag.LinkUp {
		t.Errorf("lag during a cut = %+v, want the link down", lag)
	}
	src.cut.Store(false)
	waitFor(t, "catch-up after the cut heals", caughtUp(leader, follower))
	waitFor(t, "link up", func() bool { return f2.Lag(time.Now()).LinkUp })
	if diff := cmp.Diff(docs(t, leader, "test.notebook"), docs(t, follower, "test.notebook")); diff != "" {
		t.Errorf("documents differ (-leader +follower):\n%s", diff)
	}
	lc, _ := leader.Changes(ctx, 0, 1000)
	fc, _ := follower.Changes(ctx, 0, 1000)
	if len(lc) != len(fc) {
		t.Fatalf("leader has %d changes, follower %d", len(lc), len(fc))
	}
	for i := range lc {
		if lc[i].Seq != fc[i].Seq || lc[i].Time != fc[i].Time {
			t.Fatalf("change %d: leader seq %d time %d, follower seq %d time %d", i, lc[i].Seq, lc[i].Time, fc[i].Seq, fc[i].Time)
		}
	}
}

func TestFollowerRefusesADivergedLog(t *testing.T) {
	leader, follower := openStore(t), openStore(t)
	src := &leaderSource{st: leader, info: LeaderInfo{Region: "primary", Epoch: 1, Role: "active"}}
	put(t, leader, "test.notebook", "a", `{"n":1}`)
	put(t, leader, "test.notebook", "b", `{"n":2}`)
	// The follower wrote its own change 1 and 2 (it was a primary once).
	put(t, follower, "test.notebook", "a", `{"n":1}`)
	put(t, follower, "test.notebook", "x", `{"n":99}`)
	err := (&Follower{Store: follower, Source: src, Wait: 50 * time.Millisecond}).Run(ctx)
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("Run = %v, want ErrDiverged", err)
	}
	if got := docs(t, follower, "test.notebook"); got["test.notebook/x"] == "" {
		t.Errorf("the follower's own history was touched: %v", got)
	}
}

func TestFollowerSweepsItsOwnDocumentsIntoThePosture(t *testing.T) {
	leader, follower := openStore(t), openStore(t)
	src := &leaderSource{st: leader, info: LeaderInfo{Region: "secondary", Epoch: 2, Role: "active"}}
	// Both regions share change 1; the follower (a former primary) holds a
	// pool written as primary, the leader then writes change 2.
	c1 := put(t, leader, testPostureKind, "p", `{"min_idle_instances":3}`)
	cs, _ := leader.Changes(ctx, 0, 1)
	if err := follower.Apply(ctx, cs[0]); err != nil {
		t.Fatal(err)
	}
	put(t, leader, "test.notebook", "n", `{}`)
	startFollower(t, &Follower{Store: follower, Source: src, Wait: 50 * time.Millisecond})
	waitFor(t, "catch-up", caughtUp(leader, follower))
	got := docs(t, follower, testPostureKind, PostureKind)
	want := map[string]string{
		"test.pool/p":                        `{"min_idle_instances":0}`,
		"replication.posture/test.pool\x1fp": `{"min_idle_instances":3}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after following (-want +got):\n%s", diff)
	}
	_ = c1
}

func TestFollowerStopsWhenTheLeaderIsRefused(t *testing.T) {
	leader, follower := openStore(t), openStore(t)
	put(t, leader, "test.notebook", "a", `{}`)
	src := &leaderSource{st: leader, info: LeaderInfo{Region: "primary", Epoch: 1, Role: "passive"}}
	stale := errors.New("leader is passive")
	err := (&Follower{Store: follower, Source: src, Accept: func(l LeaderInfo) error {
		if l.Role != "active" {
			return stale
		}
		return nil
	}}).Run(ctx)
	if !errors.Is(err, stale) {
		t.Fatalf("Run = %v, want the Accept error", err)
	}
	if last, _ := follower.LastSeq(ctx); last != 0 {
		t.Errorf("applied %d changes from a refused leader", last)
	}
}

func TestFollowerAdoptsSharedKeys(t *testing.T) {
	leader, follower := openStore(t), openStore(t)
	lk, _ := keys.OpenKeyring(t.TempDir())
	fk, _ := keys.OpenKeyring(t.TempDir())
	kek, _ := lk.KEK("secrets")
	dek := keys.NewDEK()
	wrapped, _ := kek.Wrap(ctx, dek)
	src := &leaderSource{st: leader, keys: lk, info: LeaderInfo{Region: "primary", Epoch: 1, Role: "active"}}
	f := &Follower{Store: follower, Source: src, Keys: fk, SharedKeys: []string{"secrets"}, Wait: 50 * time.Millisecond}
	startFollower(t, f)
	waitFor(t, "keys", func() bool { return f.Stats().KeysShared })
	fkek, _ := fk.KEK("secrets")
	if got, err := fkek.Unwrap(ctx, wrapped); err != nil || string(got) != string(dek) {
		t.Fatalf("follower cannot unwrap the leader's data key: %v", err)
	}
}
