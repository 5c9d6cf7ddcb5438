package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Sentinel errors that callers branch on. The API layer maps them to wire
// errors in one table (internal/api/errors.go).
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrReadOnly is returned by Update when the store refuses writes, for
	// example in a passive disaster-recovery region.
	ErrReadOnly = errors.New("store is read-only")
	// ErrSeqGap is returned by Apply when a change does not follow the last
	// applied one.
	ErrSeqGap = errors.New("change does not follow the last applied sequence number")
)

// Kind names a collection of documents, such as "workspace.object". Kinds are
// owned by the domain packages; the store treats them as opaque names.
type Kind string

// Store is the metadata store of one region. Every document lives under a
// (kind, key) pair and is a JSON value. Every committed Update appends one
// Change, holding all of its writes, to the change log with the next sequence
// number, in the same transaction as the writes themselves.
type Store interface {
	// View runs fn in a read-only snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a serializable read-write transaction. fn may be run
	// more than once if the transaction conflicts with another one, so it must
	// not have side effects outside tx. It returns the sequence number of the
	// change it committed (0 when fn wrote nothing, or only local kinds).
	Update(ctx context.Context, fn func(Tx) error) (int64, error)
	// Changes returns up to limit changes with a sequence number above after,
	// in order.
	Changes(ctx context.Context, after int64, limit int) ([]Change, error)
	// LastSeq is the sequence number of the newest change, 0 for none.
	LastSeq(ctx context.Context) (int64, error)
	// Apply writes a change taken from another store's change log, keeping its
	// sequence number. It is idempotent: a change at or below LastSeq is
	// skipped. A change that leaves a gap returns ErrSeqGap. Ops on local
	// kinds are written but not logged.
	Apply(ctx context.Context, c Change) error
	// Rewind undoes every change after toSeq: each document they touched
	// gets back the value the change log had for it at toSeq (or is
	// deleted), the changes leave the log and LastSeq becomes toSeq. It
	// returns the undone changes, oldest first, so the caller can keep them
	// aside. Local kinds are not touched. A disaster-recovery region that
	// comes back after a failover uses it to drop the tail its peer never
	// received before following the peer.
	Rewind(ctx context.Context, toSeq int64) ([]Change, error)
	// Notify returns a channel that receives a value after every commit, and
	// a function that stops the notifications.
	Notify() (<-chan struct{}, func())
	Close() error
}

// Tx is the view of the store inside a transaction. Writes are visible to
// later reads of the same transaction.
type Tx interface {
	// Get returns the document's raw JSON, or ErrNotFound.
	Get(kind Kind, key string) (json.RawMessage, error)
	// Put creates or replaces a document.
	Put(kind Kind, key string, value json.RawMessage) error
	// Delete removes a document; deleting a missing document returns ErrNotFound.
	Delete(kind Kind, key string) error
	// Scan calls fn for each document of kind whose key starts with prefix
	// and sorts after after (byte order), in key order. Returning ErrStopScan
	// from fn ends the scan early without an error.
	Scan(kind Kind, prefix, after string, fn func(key string, value json.RawMessage) error) error
	// NextID returns the next value of the named counter, starting at 1. The
	// counter is itself a document, so it replicates with the change log.
	NextID(name string) (int64, error)
	// Now is the transaction's clock, the same for every write in it.
	Now() time.Time
}

// ErrStopScan ends a Scan early.
var ErrStopScan = errors.New("stop scan")

// Change is one committed transaction in the change log.
type Change struct {
	Seq  int64 `json:"seq"`
	Time int64 `json:"time"` // epoch milliseconds
	Ops  []Op  `json:"ops"`
}

// Op is one write of a change: a put when Value is set, a delete otherwise.
type Op struct {
	Kind  Kind            `json:"kind"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Deleted reports whether the op removes its document.
func (o Op) Deleted() bool { return len(o.Value) == 0 }

// CounterKind holds the counters behind Tx.NextID.
const CounterKind Kind = "store.counter"

// Local kinds hold a region's own state: its disaster-recovery role, the
// cursors of its delivery loops, the runtime state of its instances, upload
// handles. Writes to them are never appended to the change log, so they
// never consume a sequence number, are never replicated to the peer region
// and are never rewound, and a passive region (which applies its peer's
// changes and may not log changes of its own) can still write them.
// Packages declare their local kinds once, at init, with RegisterLocal.
var (
	localMu    sync.RWMutex
	localKinds = map[Kind]bool{}
)

// RegisterLocal declares kinds as local to a region.
func RegisterLocal(kinds ...Kind) {
	localMu.Lock()
	defer localMu.Unlock()
	for _, k := range kinds {
		localKinds[k] = true
	}
}

// IsLocal reports whether kind was declared local with RegisterLocal.
func IsLocal(kind Kind) bool {
	localMu.RLock()
	defer localMu.RUnlock()
	return localKinds[kind]
}

// LoggedOps returns the ops of ops that belong in a change log: all but
// those on local kinds.
func LoggedOps(ops []Op) []Op {
	out := ops[:0:0]
	for _, op := range ops {
		if !IsLocal(op.Kind) {
			out = append(out, op)
		}
	}
	return out
}

// Get decodes the document at (kind, key) into a T.
func Get[T any](tx Tx, kind Kind, key string) (T, error) {
	var v T
	raw, err := tx.Get(kind, key)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("decode %s %q: %w", kind, key, err)
	}
	return v, nil
}

// Put encodes v and stores it at (kind, key).
func Put[T any](tx Tx, kind Kind, key string, v T) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %q: %w", kind, key, err)
	}
	return tx.Put(kind, key, raw)
}

// Insert stores v at (kind, key) unless a document is already there, in which
// case it returns ErrExists.
func Insert[T any](tx Tx, kind Kind, key string, v T) error {
	if _, err := tx.Get(kind, key); err == nil {
		return ErrExists
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	return Put(tx, kind, key, v)
}

// Exists reports whether a document is stored at (kind, key).
func Exists(tx Tx, kind Kind, key string) (bool, error) {
	_, err := tx.Get(kind, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// List decodes every document of kind whose key starts with prefix.
func List[T any](tx Tx, kind Kind, prefix string) ([]T, error) {
	var out []T
	err := ScanPrefix(tx, kind, prefix, func(key string, v T) error {
		out = append(out, v)
		return nil
	})
	return out, err
}

// ScanPrefix calls fn with each decoded document of kind whose key starts
// with prefix, in key order.
func ScanPrefix[T any](tx Tx, kind Kind, prefix string, fn func(key string, v T) error) error {
	return tx.Scan(kind, prefix, "", func(key string, raw json.RawMessage) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode %s %q: %w", kind, key, err)
		}
		return fn(key, v)
	})
}

// ValidKey reports whether key can be stored: keys are UTF-8 text without NUL
// (PostgreSQL text cannot hold it) and at most 4096 bytes.
func ValidKey(key string) bool {
	return len(key) <= 4096 && !strings.ContainsRune(key, 0)
}
