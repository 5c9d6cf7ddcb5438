package dr

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

func TestGateRefusesReplicatedWritesAndWaitsForThoseInFlight(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	refusal := errors.New("region b leads")
	g := NewGate(st, func() error { return refusal })

	put := func(kind store.Kind) error {
		_, err := g.Update(ctx, func(tx store.Tx) error { return tx.Put(kind, "k", json.RawMessage(`{}`)) })
		return err
	}
	cases := []struct {
		name string
		open bool
		op   func() error
		ok   bool
	}{
		{"open: replicated put", true, func() error { return put("t.doc") }, true},
		{"closed: replicated put", false, func() error { return put("t.doc") }, false},
		{"closed: local put", false, func() error { return put(kindState) }, true},
		{"closed: delete", false, func() error {
			_, err := g.Update(ctx, func(tx store.Tx) error { return tx.Delete("t.doc", "k") })
			return err
		}, false},
		{"closed: NextID", false, func() error {
			_, err := g.Update(ctx, func(tx store.Tx) error { _, err := tx.NextID("ids"); return err })
			return err
		}, false},
		{"closed: an update that only reads", false, func() error {
			_, err := g.Update(ctx, func(tx store.Tx) error { _, err := tx.Get("t.doc", "k"); return err })
			return err
		}, true},
		{"closed: Apply through the gate", false, func() error { return g.Apply(ctx, store.Change{Seq: 99}) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.open {
				g.Allow()
			} else {
				g.Refuse()
			}
			err := c.op()
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && !errors.Is(err, store.ErrReadOnly) {
				t.Fatalf("err = %v, want ErrReadOnly", err)
			}
			if !c.ok && c.name != "closed: Apply through the gate" && !errors.Is(err, refusal) {
				t.Errorf("the refusal does not say who leads: %v", err)
			}
		})
	}

	// Refuse waits for an update in flight, so the last sequence number is
	// final when it returns.
	g.Allow()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan int64)
	go func() {
		seq, _ := g.Update(ctx, func(tx store.Tx) error {
			close(started)
			<-release
			return tx.Put("t.doc", "late", json.RawMessage(`{}`))
		})
		done <- seq
	}()
	<-started
	refused := make(chan struct{})
	go func() { g.Refuse(); close(refused) }()
	select {
	case <-refused:
		t.Fatal("Refuse returned while a write was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	seq := <-done
	<-refused
	if last, _ := st.LastSeq(ctx); last != seq || seq == 0 {
		t.Errorf("last sequence number %d after Refuse, the write in flight committed %d", last, seq)
	}
}
