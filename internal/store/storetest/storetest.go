// Package storetest is the behaviour suite every store.Store implementation
// must pass. Each implementation's tests call Run with a constructor that
// returns a fresh, empty store.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/store"
)

// Run runs the suite. open must return a new empty store; reopen, if not nil,
// must close the given store and open the same data again.
func Run(t *testing.T, open func(t *testing.T) store.Store, reopen func(t *testing.T, s store.Store) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PutGetDelete", testPutGetDelete},
		{"ScanOrderPrefixAndAfter", testScan},
		{"InsertRefusesExisting", testInsert},
		{"FailedUpdateWritesNothing", testFailedUpdate},
		{"ChangeLogHoldsEveryCommit", testChangeLog},
		{"ChangeLogCompactsRepeatedWrites", testCompactOps},
		{"ReadOnlyUpdateAppendsNoChange", testNoOpUpdate},
		{"ConcurrentUpdatesLoseNothing", testConcurrentUpdates},
		{"ApplyIsIdempotentAndOrdered", testApply},
		{"NotifyAfterCommit", testNotify},
		{"ViewRefusesWrites", testViewReadOnly},
		{"KeysWithUnicodeSortByteWise", testUnicodeKeys},
		{"LocalKindsAreNeverLogged", testLocalKinds},
		{"RewindRestoresDocumentsFromTheLog", testRewind},
		{"RewindKeepsLocalKindsAndContinuesTheSequence", testRewindLocal},
		{"RewindThenApplyFollowsAnotherLog", testRewindThenApply},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			tc.fn(t, s)
		})
	}
	if reopen != nil {
		t.Run("CommittedChangesSurviveReopen", func(t *testing.T) {
			s := open(t)
			testReopen(t, s, reopen)
		})
	}
}

var ctx = context.Background()

type doc struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func mustUpdate(t *testing.T, s store.Store, fn func(store.Tx) error) int64 {
	t.Helper()
	seq, err := s.Update(ctx, fn)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	return seq
}

func testPutGetDelete(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error {
		return store.Put(tx, "t.doc", "a", doc{Name: "a", N: 1})
	})
	err := s.View(ctx, func(tx store.Tx) error {
		got, err := store.Get[doc](tx, "t.doc", "a")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(doc{Name: "a", N: 1}, got); diff != "" {
			t.Errorf("Get (-want +got):\n%s", diff)
		}
		if _, err := tx.Get("t.doc", "missing"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get missing = %v, want ErrNotFound", err)
		}
		if _, err := tx.Get("t.other", "a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get in another kind = %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.Delete("t.doc", "a") })
	_, err = s.Update(ctx, func(tx store.Tx) error { return tx.Delete("t.doc", "a") })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
}

func testScan(t *testing.T, s store.Store) {
	keys := []string{"b/2", "a/1", "b/1", "b/10", "c", "b", "b/"}
	mustUpdate(t, s, func(tx store.Tx) error {
		for i, k := range keys {
			if err := store.Put(tx, "t.scan", k, doc{Name: k, N: i}); err != nil {
				return err
			}
		}
		return store.Put(tx, "t.other", "b/3", doc{})
	})
	scan := func(prefix, after string, stopAfter int) []string {
		var got []string
		err := s.View(ctx, func(tx store.Tx) error {
			return tx.Scan("t.scan", prefix, after, func(key string, _ json.RawMessage) error {
				got = append(got, key)
				if stopAfter > 0 && len(got) == stopAfter {
					return store.ErrStopScan
				}
				return nil
			})
		})
		if err != nil {
			t.Fatalf("Scan(%q, %q): %v", prefix, after, err)
		}
		return got
	}
	cases := []struct {
		prefix, after string
		stop          int
		want          []string
	}{
		{"", "", 0, []string{"a/1", "b", "b/", "b/1", "b/10", "b/2", "c"}},
		{"b/", "", 0, []string{"b/", "b/1", "b/10", "b/2"}},
		{"b/", "b/1", 0, []string{"b/10", "b/2"}},
		{"b/", "a", 0, []string{"b/", "b/1", "b/10", "b/2"}},
		{"b/", "z", 0, nil},
		{"", "", 2, []string{"a/1", "b"}},
		{"d", "", 0, nil},
	}
	for _, c := range cases {
		if diff := cmp.Diff(c.want, scan(c.prefix, c.after, c.stop)); diff != "" {
			t.Errorf("Scan(%q, after %q) (-want +got):\n%s", c.prefix, c.after, diff)
		}
	}
	err := s.View(ctx, func(tx store.Tx) error {
		got, err := store.List[doc](tx, "t.scan", "b/1")
		if err != nil {
			return err
		}
		if len(got) != 2 || got[0].Name != "b/1" || got[1].Name != "b/10" {
			t.Errorf("List(b/1) = %+v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testInsert(t *testing.T, s store.Store) {
	mustUpdate(t, s, func(tx store.Tx) error { return store.Insert(tx, "t.doc", "x", doc{N: 1}) })
	_, err := s.Update(ctx, func(tx store.Tx) error { return store.Insert(tx, "t.doc", "x", doc{N: 2}) })
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Insert = %v, want ErrExists", err)
	}
	s.View(ctx, func(tx store.Tx) error {
		got, _ := store.Get[doc](tx, "t.doc", "x")
		if got.N != 1 {
			t.Errorf("after refused Insert N = %d, want 1", got.N)
		}
		return nil
	})
}

func testFailedUpdate(t *testing.T, s store.Store) {
	before, _ := s.LastSeq(ctx)
	boom := errors.New("boom")
	_, err := s.Update(ctx, func(tx store.Tx) error {
		if err := store.Put(tx, "t.doc", "half", doc{N: 1}); err != nil {
			return err
		}
		if _, err := tx.NextID("ids"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	after, _ := s.LastSeq(ctx)
	if after != before {
		t.Errorf("LastSeq moved from %d to %d after a failed update", before, after)
	}
	s.View(ctx, func(tx store.Tx) error {
		if _, err := tx.Get("t.doc", "half"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("half-written document is visible: %v", err)
		}
		return nil
	})
	// The counter did not advance either.
	mustUpdate(t, s, func(tx store.Tx) error {
		id, err := tx.NextID("ids")
		if id != 1 {
			t.Errorf("NextID after rollback = %d, want 1", id)
		}
		return err
	})
}

func testChangeLog(t *testing.T, s store.Store) {
	var seqs []int64
	for i := 0; i < 5; i++ {
		seqs = append(seqs, mustUpdate(t, s, func(tx store.Tx) error {
			return store.Put(tx, "t.doc", fmt.Sprint(i), doc{N: i})
		}))
	}
	seqs = append(seqs, mustUpdate(t, s, func(tx store.Tx) error { return tx.Delete("t.doc", "0") }))
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("sequence numbers %v are not consecutive", seqs)
		}
	}
	last, err := s.LastSeq(ctx)
	if err != nil || last != seqs[len(seqs)-1] {
		t.Fatalf("LastSeq = %d, %v; want %d", last, err, seqs[len(seqs)-1])
	}
	changes, err := s.Changes(ctx, seqs[0], 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3 || changes[0].Seq != seqs[1] || changes[2].Seq != seqs[3] {
		t.Fatalf("Changes(after %d, 3) = %+v", seqs[0], changes)
	}
	if got := changes[0].Ops; len(got) != 1 || got[0].Kind != "t.doc" || got[0].Key != "1" || got[0].Deleted() {
		t.Errorf("change %d ops = %+v", changes[0].Seq, got)
	}
	if changes[0].Time <= 0 {
		t.Errorf("change time = %d", changes[0].Time)
	}
	tail, _ := s.Changes(ctx, seqs[len(seqs)-2], 100)
	if len(tail) != 1 || !tail[0].Ops[0].Deleted() {
		t.Errorf("delete change = %+v", tail)
	}
	none, _ := s.Changes(ctx, last, 100)
	if len(none) != 0 {
		t.Errorf("Changes after the last = %+v", none)
	}
}

func testCompactOps(t *testing.T, s store.Store) {
	seq := mustUpdate(t, s, func(tx store.Tx) error {
		for i := 0; i < 3; i++ {
			if err := store.Put(tx, "t.doc", "a", doc{N: i}); err != nil {
				return err
			}
		}
		if err := store.Put(tx, "t.doc", "b", doc{N: 9}); err != nil {
			return err
		}
		return tx.Delete("t.doc", "b")
	})
	cs, _ := s.Changes(ctx, seq-1, 1)
	if len(cs) != 1 || len(cs[0].Ops) != 2 {
		t.Fatalf("change = %+v, want two ops", cs)
	}
	var d doc
	json.Unmarshal(cs[0].Ops[0].Value, &d)
	if d.N != 2 || !cs[0].Ops[1].Deleted() {
		t.Errorf("ops = %s / deleted %v", cs[0].Ops[0].Value, cs[0].Ops[1].Deleted())
	}
}

func testNoOpUpdate(t *testing.T, s store.Store) {
	before, _ := s.LastSeq(ctx)
	seq := mustUpdate(t, s, func(tx store.Tx) error {
		_, err := tx.Get("t.doc", "nothing")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	after, _ := s.LastSeq(ctx)
	if seq != 0 || after != before {
		t.Errorf("read-only Update returned seq %d and moved LastSeq %d -> %d", seq, before, after)
	}
}

func testConcurrentUpdates(t *testing.T, s store.Store) {
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := s.Update(ctx, func(tx store.Tx) error {
					d, err := store.Get[doc](tx, "t.doc", "counter")
					if err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
					d.N++
					if _, err := tx.NextID("ids"); err != nil {
						return err
					}
					return store.Put(tx, "t.doc", "counter", d)
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.View(ctx, func(tx store.Tx) error {
		d, _ := store.Get[doc](tx, "t.doc", "counter")
		if d.N != workers*each {
			t.Errorf("counter = %d, want %d (lost updates)", d.N, workers*each)
		}
		return nil
	})
	cs, err := s.Changes(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != workers*each {
		t.Fatalf("%d changes, want %d", len(cs), workers*each)
	}
	for i, c := range cs {
		if c.Seq != int64(i+1) {
			t.Fatalf("change %d has seq %d: the log has a gap or is out of order", i, c.Seq)
		}
	}
}

func testApply(t *testing.T, s store.Store) {
	c1 := store.Change{Seq: 1, Time: time.Now().UnixMilli(), Ops: []store.Op{
		{Kind: "t.doc", Key: "a", Value: json.RawMessage(`{"name":"a","n":1}`)},
		{Kind: "t.doc", Key: "gone", Value: nil},
	}}
	c2 := store.Change{Seq: 2, Time: time.Now().UnixMilli(), Ops: []store.Op{
		{Kind: "t.doc", Key: "a", Value: json.RawMessage(`{"name":"a","n":2}`)},
	}}
	c4 := store.Change{Seq: 4, Time: time.Now().UnixMilli(), Ops: c2.Ops}
	for _, c := range []store.Change{c1, c1, c2, c1, c2} {
		if err := s.Apply(ctx, c); err != nil {
			t.Fatalf("Apply(%d): %v", c.Seq, err)
		}
	}
	if err := s.Apply(ctx, c4); !errors.Is(err, store.ErrSeqGap) {
		t.Errorf("Apply with a gap = %v, want ErrSeqGap", err)
	}
	last, _ := s.LastSeq(ctx)
	if last != 2 {
		t.Errorf("LastSeq = %d, want 2", last)
	}
	cs, _ := s.Changes(ctx, 0, 10)
	if diff := cmp.Diff([]int64{1, 2}, []int64{cs[0].Seq, cs[1].Seq}); diff != "" || len(cs) != 2 {
		t.Errorf("applied change log: %+v", cs)
	}
	s.View(ctx, func(tx store.Tx) error {
		d, _ := store.Get[doc](tx, "t.doc", "a")
		if d.N != 2 {
			t.Errorf("after Apply n = %d, want 2", d.N)
		}
		return nil
	})
	// Local writes continue the applied sequence.
	seq := mustUpdate(t, s, func(tx store.Tx) error { return store.Put(tx, "t.doc", "b", doc{}) })
	if seq != 3 {
		t.Errorf("Update after Apply got seq %d, want 3", seq)
	}
}

func testNotify(t *testing.T, s store.Store) {
	ch, stop := s.Notify()
	defer stop()
	mustUpdate(t, s, func(tx store.Tx) error { return store.Put(tx, "t.doc", "n", doc{}) })
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after a commit")
	}
}

func testViewReadOnly(t *testing.T, s store.Store) {
	err := s.View(ctx, func(tx store.Tx) error { return store.Put(tx, "t.doc", "v", doc{}) })
	if err == nil {
		t.Fatal("Put inside View succeeded")
	}
}

func testUnicodeKeys(t *testing.T, s store.Store) {
	keys := []string{"/a/é", "/a/z", "/a/Z", "/a/日本", "/a/ä"}
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, k := range keys {
			if err := store.Put(tx, "t.u", k, doc{Name: k}); err != nil {
				return err
			}
		}
		return nil
	})
	var got []string
	s.View(ctx, func(tx store.Tx) error {
		return tx.Scan("t.u", "/a/", "", func(k string, _ json.RawMessage) error {
			got = append(got, k)
			return nil
		})
	})
	want := []string{"/a/Z", "/a/z", "/a/ä", "/a/é", "/a/日本"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("byte-order scan (-want +got):\n%s", diff)
	}
}

func testReopen(t *testing.T, s store.Store, reopen func(*testing.T, store.Store) store.Store) {
	var last int64
	for i := 0; i < 3; i++ {
		last = mustUpdate(t, s, func(tx store.Tx) error {
			return store.Put(tx, "t.doc", fmt.Sprint(i), doc{N: i})
		})
	}
	s = reopen(t, s)
	got, err := s.LastSeq(ctx)
	if err != nil || got != last {
		t.Fatalf("LastSeq after reopen = %d, %v; want %d", got, err, last)
	}
	s.View(ctx, func(tx store.Tx) error {
		d, err := store.Get[doc](tx, "t.doc", "2")
		if err != nil || d.N != 2 {
			t.Errorf("document after reopen = %+v, %v", d, err)
		}
		return nil
	})
	next := mustUpdate(t, s, func(tx store.Tx) error { return store.Put(tx, "t.doc", "x", doc{}) })
	if next != last+1 {
		t.Errorf("first seq after reopen = %d, want %d", next, last+1)
	}
}

// localKind is declared local for the suite.
const localKind store.Kind = "t.local"

func init() { store.RegisterLocal(localKind) }

func testLocalKinds(t *testing.T, s store.Store) {
	seq := mustUpdate(t, s, func(tx store.Tx) error { return store.Put(tx, localKind, "a", doc{N: 1}) })
	if seq != 0 {
		t.Errorf("Update writing only a local kind returned seq %d, want 0", seq)
	}
	if last, _ := s.LastSeq(ctx); last != 0 {
		t.Errorf("LastSeq after a local write = %d, want 0", last)
	}
	seq = mustUpdate(t, s, func(tx store.Tx) error {
		if err := store.Put(tx, localKind, "b", doc{N: 2}); err != nil {
			return err
		}
		return store.Put(tx, "t.doc", "x", doc{N: 3})
	})
	cs, _ := s.Changes(ctx, 0, 10)
	if len(cs) != 1 || cs[0].Seq != seq || len(cs[0].Ops) != 1 || cs[0].Ops[0].Kind != "t.doc" {
		t.Fatalf("mixed change logged as %+v, want only the t.doc op", cs)
	}
	// An applied change keeps its number and logs only its replicated ops,
	// but writes the local ones.
	c := store.Change{Seq: seq + 1, Time: time.Now().UnixMilli(), Ops: []store.Op{
		{Kind: "t.doc", Key: "y", Value: json.RawMessage(`{"n":4}`)},
		{Kind: localKind, Key: "c", Value: json.RawMessage(`{"n":5}`)},
	}}
	if err := s.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	cs, _ = s.Changes(ctx, seq, 10)
	if len(cs) != 1 || cs[0].Seq != seq+1 || len(cs[0].Ops) != 1 || cs[0].Ops[0].Key != "y" {
		t.Fatalf("applied change logged as %+v", cs)
	}
	s.View(ctx, func(tx store.Tx) error {
		for _, k := range []string{"a", "b", "c"} {
			if _, err := tx.Get(localKind, k); err != nil {
				t.Errorf("local document %s: %v", k, err)
			}
		}
		return nil
	})
}

type snapshot map[string]string

func snap(t *testing.T, s store.Store, kinds ...store.Kind) snapshot {
	t.Helper()
	out := snapshot{}
	err := s.View(ctx, func(tx store.Tx) error {
		for _, k := range kinds {
			err := tx.Scan(k, "", "", func(key string, v json.RawMessage) error {
				var norm any
				json.Unmarshal(v, &norm)
				b, _ := json.Marshal(norm)
				out[string(k)+"/"+key] = string(b)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testRewind(t *testing.T, s store.Store) {
	put := func(key string, n int) int64 {
		return mustUpdate(t, s, func(tx store.Tx) error { return store.Put(tx, "t.doc", key, doc{Name: key, N: n}) })
	}
	put("a", 1)
	put("b", 1)
	mustUpdate(t, s, func(tx store.Tx) error {
		_, err := tx.NextID("ids")
		return err
	})
	put("a", 2)
	mid := mustUpdate(t, s, func(tx store.Tx) error { return tx.Delete("t.doc", "b") })
	want := snap(t, s, "t.doc", store.CounterKind)

	// The tail: updates, a re-creation, a delete, a new document, a counter.
	put("a", 3)
	put("b", 9)
	put("c", 1)
	mustUpdate(t, s, func(tx store.Tx) error {
		if _, err := tx.NextID("ids"); err != nil {
			return err
		}
		if err := store.Put(tx, "t.doc", "d", doc{}); err != nil {
			return err
		}
		return tx.Delete("t.doc", "d")
	})
	last := put("a", 4)

	undone, err := s.Rewind(ctx, mid)
	if err != nil {
		t.Fatalf("Rewind: %v", err)
	}
	if len(undone) != int(last-mid) || undone[0].Seq != mid+1 || undone[len(undone)-1].Seq != last {
		t.Fatalf("Rewind returned changes %+v, want %d..%d", undone, mid+1, last)
	}
	if diff := cmp.Diff(want, snap(t, s, "t.doc", store.CounterKind)); diff != "" {
		t.Errorf("state after Rewind(%d) (-want +got):\n%s", mid, diff)
	}
	if got, _ := s.LastSeq(ctx); got != mid {
		t.Errorf("LastSeq after Rewind = %d, want %d", got, mid)
	}
	if cs, _ := s.Changes(ctx, mid, 100); len(cs) != 0 {
		t.Errorf("changes after the rewind point remain: %+v", cs)
	}
	// Rewinding to or past the end changes nothing.
	if undone, err := s.Rewind(ctx, mid); err != nil || len(undone) != 0 {
		t.Errorf("second Rewind = %v, %v", undone, err)
	}
	// The counter continues from its value at the rewind point.
	mustUpdate(t, s, func(tx store.Tx) error {
		id, err := tx.NextID("ids")
		if id != 2 {
			t.Errorf("NextID after Rewind = %d, want 2", id)
		}
		return err
	})
}

func testRewindLocal(t *testing.T, s store.Store) {
	base := mustUpdate(t, s, func(tx store.Tx) error { return store.Put(tx, "t.doc", "a", doc{N: 1}) })
	mustUpdate(t, s, func(tx store.Tx) error {
		if err := store.Put(tx, localKind, "fenced", doc{N: 7}); err != nil {
			return err
		}
		return store.Put(tx, "t.doc", "a", doc{N: 2})
	})
	if _, err := s.Rewind(ctx, 0); err != nil {
		t.Fatal(err)
	}
	s.View(ctx, func(tx store.Tx) error {
		if _, err := tx.Get("t.doc", "a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("document created after the rewind point survives: %v", err)
		}
		if d, err := store.Get[doc](tx, localKind, "fenced"); err != nil || d.N != 7 {
			t.Errorf("local document after Rewind = %+v, %v; want it untouched", d, err)
		}
		return nil
	})
	if seq := mustUpdate(t, s, func(tx store.Tx) error { return store.Put(tx, "t.doc", "z", doc{}) }); seq != base {
		t.Errorf("first change after Rewind(0) has seq %d, want %d", seq, base)
	}
}

// testRewindThenApply is the failback path: a region drops the tail its peer
// never received, then applies the peer's changes from the common point.
func testRewindThenApply(t *testing.T, s store.Store) {
	common := mustUpdate(t, s, func(tx store.Tx) error { return store.Put(tx, "t.doc", "shared", doc{N: 1}) })
	mustUpdate(t, s, func(tx store.Tx) error { return store.Put(tx, "t.doc", "lost", doc{N: 1}) })
	if _, err := s.Rewind(ctx, common); err != nil {
		t.Fatal(err)
	}
	peer := store.Change{Seq: common + 1, Time: time.Now().UnixMilli(), Ops: []store.Op{
		{Kind: "t.doc", Key: "shared", Value: json.RawMessage(`{"name":"","n":2}`)},
	}}
	if err := s.Apply(ctx, peer); err != nil {
		t.Fatalf("Apply after Rewind: %v", err)
	}
	got := snap(t, s, "t.doc")
	want := snapshot{"t.doc/shared": `{"n":2,"name":""}`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}
