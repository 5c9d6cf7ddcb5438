package dr

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/tandemdata/tandem/internal/store"
)

// Gate is the store every domain service of a region writes through. While
// the region leads it passes writes on; otherwise it refuses every write to
// a replicated kind with store.ErrReadOnly, whoever makes it (an API call
// the guard let through, a scheduler, a sweep). Local kinds stay writable.
// It is the last line of the fence: a region that is not the epoch's leader
// never logs a change of its own.
//
// Refuse waits for the writes in flight to commit, so after it returns the
// region's last sequence number is final: what a planned failover waits
// for the peer to reach.
type Gate struct {
	store.Store

	mu      sync.RWMutex // Update holds it shared for its whole run; Refuse exclusively
	open    bool
	refusal func() error
}

// NewGate returns a closed gate over st; refusal makes the error a refused
// write wraps (it names the active region).
func NewGate(st store.Store, refusal func() error) *Gate {
	return &Gate{Store: st, refusal: refusal}
}

// Allow lets writes through.
func (g *Gate) Allow() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

// Refuse refuses writes from now on, once the writes in flight are done.
func (g *Gate) Refuse() {
	g.mu.Lock()
	g.open = false
	g.mu.Unlock()
}

// IsOpen reports whether writes go through.
func (g *Gate) IsOpen() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.open
}

// Update runs fn with writes to replicated kinds refused when the gate is
// closed.
func (g *Gate) Update(ctx context.Context, fn func(store.Tx) error) (int64, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.open {
		return g.Store.Update(ctx, fn)
	}
	return g.Store.Update(ctx, func(tx store.Tx) error { return fn(closedTx{Tx: tx, g: g}) })
}

// Apply and Rewind are for the replication machinery, which uses the raw
// store; through the gate they are refused.
func (g *Gate) Apply(ctx context.Context, c store.Change) error {
	return fmt.Errorf("apply change %d through the write gate: %w", c.Seq, store.ErrReadOnly)
}

// Rewind is refused through the gate; see Apply.
func (g *Gate) Rewind(ctx context.Context, toSeq int64) ([]store.Change, error) {
	return nil, fmt.Errorf("rewind through the write gate: %w", store.ErrReadOnly)
}

type closedTx struct {
	store.Tx
	g *Gate
}

func (t closedTx) refuse(kind store.Kind) error {
	if err := t.g.refusal(); err != nil {
		return fmt.Errorf("write %s: %w: %w", kind, store.ErrReadOnly, err)
	}
	return fmt.Errorf("write %s: %w", kind, store.ErrReadOnly)
}

func (t closedTx) Put(kind store.Kind, key string, value json.RawMessage) error {
	if !store.IsLocal(kind) {
		return t.refuse(kind)
	}
	return t.Tx.Put(kind, key, value)
}

func (t closedTx) Delete(kind store.Kind, key string) error {
	if !store.IsLocal(kind) {
		return t.refuse(kind)
	}
	return t.Tx.Delete(kind, key)
}

func (t closedTx) NextID(name string) (int64, error) {
	return 0, t.refuse(store.CounterKind)
}
