package replication

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/store"
)

// Source is where a follower reads its leader's change log and keys.
type Source interface {
	Changes(ctx context.Context, after int64, limit int, wait time.Duration) (Batch, error)
	Keys(ctx context.Context, names []string) (map[string][][]byte, error)
}

// ErrDiverged stops a follower whose log does not match its leader's at
// the point where it would resume: applying more would mix two histories.
var ErrDiverged = errors.New("this region's change log differs from the leader's")

// Follower applies a leader region's change log to this region's store.
type Follower struct {
	// Store is the raw store (Apply is never refused by a write gate).
	Store  store.Store
	Source Source
	// Keys and SharedKeys: the platform keys to adopt from the leader.
	Keys       *keys.Keyring
	SharedKeys []string
	// Accept checks each batch's leader (its role and epoch) before its
	// changes are applied; an error stops the follower with that error.
	Accept func(LeaderInfo) error
	Log    *slog.Logger
	// Wait is how long the leader may hold a call (5 s); Batch the most
	// changes per call.
	Wait  time.Duration
	Batch int
	// KeyRefresh is how often shared keys are fetched again (5 min).
	KeyRefresh time.Duration
	Now        func() time.Time

	mu      sync.Mutex
	link    Link
	leader  LeaderInfo
	lastErr string

	applied  atomic.Int64 // changes applied since start
	failures atomic.Int64 // failed calls since start
	keysOK   atomic.Bool
}

func (f *Follower) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Stats are the follower's counters since it was made.
type Stats struct {
	Applied    int64      `json:"applied_changes"`
	Failures   int64      `json:"failed_calls"`
	KeysShared bool       `json:"keys_shared"`
	Leader     LeaderInfo `json:"leader"`
	LastError  string     `json:"last_error,omitempty"`
}

// Stats returns the follower's counters.
func (f *Follower) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{Applied: f.applied.Load(), Failures: f.failures.Load(), KeysShared: f.keysOK.Load(), Leader: f.leader, LastError: f.lastErr}
}

// Lag is the follower's lag at now.
func (f *Follower) Lag(now time.Time) Lag {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ComputeLag(f.link, now)
}

// Link returns what the follower knows of its link.
func (f *Follower) Link() Link {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.link
}

// Run follows the leader until ctx ends (it returns nil then) or until the
// leader is refused by Accept or the logs diverge (it returns that error).
// Failed calls are retried with backoff; the store's LastSeq is the only
// cursor, so Run resumes exactly where any earlier run stopped.
func (f *Follower) Run(ctx context.Context) error {
	wait, batch := f.Wait, f.Batch
	if wait == 0 {
		wait = 5 * time.Second
	}
	if batch == 0 {
		batch = 500
	}
	refresh := f.KeyRefresh
	if refresh == 0 {
		refresh = 5 * time.Minute
	}
	applied, err := f.Store.LastSeq(ctx)
	if err != nil {
		return err
	}
	appliedTime, err := f.changeTime(ctx, applied)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.link = Link{Started: f.now(), Applied: applied, AppliedTime: appliedTime, LeaderSeq: applied, Wait: wait}
	f.mu.Unlock()

	var nextKeys time.Time
	verified := applied == 0
	swept := false
	backoff := 100 * time.Millisecond
	fail := func(err error) {
		f.failures.Add(1)
		f.mu.Lock()
		f.link.Failing, f.link.PollStarted = true, time.Time{}
		f.lastErr = err.Error()
		f.mu.Unlock()
		if f.Log != nil {
			f.Log.Warn("replication: call to the leader failed", "seq", applied, "err", err, "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	for ctx.Err() == nil {
		if len(f.SharedKeys) > 0 && f.now().After(nextKeys) {
			if err := f.shareKeys(ctx); err != nil {
				if f.Log != nil && ctx.Err() == nil {
					f.Log.Warn("replication: shared keys not fetched", "err", err)
				}
				nextKeys = f.now().Add(10 * time.Second)
			} else {
				nextKeys = f.now().Add(refresh)
			}
		}
		if !verified {
			if err := f.verify(ctx, applied); err != nil {
				if errors.Is(err, ErrDiverged) {
					return err
				}
				if ctx.Err() == nil {
					fail(err)
				}
				continue
			}
			verified = true
		}
		f.mu.Lock()
		f.link.PollStarted = f.now()
		f.mu.Unlock()
		b, err := f.Source.Changes(ctx, applied, batch, wait)
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			continue
		}
		if f.Accept != nil {
			if err := f.Accept(b.LeaderInfo); err != nil {
				return err
			}
		}
		backoff = 100 * time.Millisecond
		f.mu.Lock()
		f.leader = b.LeaderInfo
		f.link.Failing, f.link.PollStarted, f.lastErr = false, time.Time{}, ""
		f.link.LastContact, f.link.LeaderSeq = f.now(), b.LastSeq
		f.mu.Unlock()
		for _, c := range b.Changes {
			if c.Seq <= applied {
				continue
			}
			ops, perrs := passiveOps(c.Ops)
			for _, e := range perrs {
				if f.Log != nil {
					f.Log.Error("replication: document kept as the primary has it", "seq", c.Seq, "err", e)
				}
			}
			if !swept {
				sweep, err := f.sweep(ctx)
				if err != nil {
					return err
				}
				ops = append(sweep, ops...)
			}
			if err := f.Store.Apply(ctx, store.Change{Seq: c.Seq, Time: c.Time, Ops: ops}); err != nil {
				if ctx.Err() == nil {
					fail(fmt.Errorf("apply change %d: %w", c.Seq, err))
				}
				break
			}
			swept = true
			applied = c.Seq
			f.applied.Add(1)
			f.mu.Lock()
			f.link.Applied, f.link.AppliedTime = c.Seq, time.UnixMilli(c.Time)
			f.mu.Unlock()
		}
	}
	return nil
}

func (f *Follower) sweep(ctx context.Context) ([]store.Op, error) {
	var ops []store.Op
	err := f.Store.View(ctx, func(tx store.Tx) error {
		var err error
		ops, err = SweepOps(tx)
		return err
	})
	if len(ops) > 0 && f.Log != nil {
		f.Log.Info("replication: documents written as primary put into the passive posture", "documents", len(ops)/2)
	}
	return ops, err
}

func (f *Follower) changeTime(ctx context.Context, seq int64) (time.Time, error) {
	if seq == 0 {
		return time.Time{}, nil
	}
	cs, err := f.Store.Changes(ctx, seq-1, 1)
	if err != nil || len(cs) == 0 {
		return time.Time{}, err
	}
	return time.UnixMilli(cs[0].Time), nil
}

// verify compares this region's change at seq with the leader's: resuming
// after it is only right if both logs hold the same change there.
func (f *Follower) verify(ctx context.Context, seq int64) error {
	mine, err := f.Store.Changes(ctx, seq-1, 1)
	if err != nil {
		return err
	}
	b, err := f.Source.Changes(ctx, seq-1, 1, 0)
	if err != nil {
		return err
	}
	if len(mine) == 0 {
		return nil // our log was trimmed there; nothing to compare
	}
	if len(b.Changes) == 0 || b.Changes[0].Seq != seq {
		return fmt.Errorf("%w: the leader %s has no change %d (its last is %d)", ErrDiverged, b.Region, seq, b.LastSeq)
	}
	if !sameChange(mine[0], b.Changes[0]) {
		return fmt.Errorf("%w: change %d is not the same in both regions", ErrDiverged, seq)
	}
	return nil
}

// sameChange reports whether a change of this region's log holds every
// replicated write of the leader's change of the same number. Documents with
// a passive posture are compared by kind, key and whether they were
// deleted: one region holds them in the passive posture, the other as
// written.
func sameChange(mine, theirs store.Change) bool {
	if mine.Seq != theirs.Seq {
		return false
	}
	type k struct {
		kind store.Kind
		key  string
	}
	have := map[k]json.RawMessage{}
	for _, op := range mine.Ops {
		have[k{op.Kind, op.Key}] = op.Value
	}
	for _, op := range theirs.Ops {
		if store.IsLocal(op.Kind) {
			continue
		}
		v, ok := have[k{op.Kind, op.Key}]
		if !ok || (len(v) == 0) != op.Deleted() {
			return false
		}
		if _, postured := PostureOf(op.Kind); postured || op.Deleted() {
			continue
		}
		if !jsonEqual(v, op.Value) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func (f *Follower) shareKeys(ctx context.Context) error {
	got, err := f.Source.Keys(ctx, f.SharedKeys)
	if err != nil {
		return err
	}
	defer func() {
		for _, vs := range got {
			for _, v := range vs {
				clear(v)
			}
		}
	}()
	suffix := strconv.FormatInt(f.now().UnixMilli(), 10)
	for _, name := range f.SharedKeys {
		vs, ok := got[name]
		if !ok {
			return fmt.Errorf("the leader did not share key %s", name)
		}
		changed, err := f.Keys.Adopt(name, vs, suffix)
		if err != nil {
			return err
		}
		if changed && f.Log != nil {
			f.Log.Info("replication: adopted the leader's key", "key", name, "versions", len(vs))
		}
	}
	f.keysOK.Store(true)
	return nil
}

// CatchUp waits until this region has applied every change up to seq, or
// ctx ends.
func CatchUp(ctx context.Context, st store.Store, seq int64) error {
	notify, stop := st.Notify()
	defer stop()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		last, err := st.LastSeq(ctx)
		if err != nil {
			return err
		}
		if last >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("caught up to %d of %d: %w", last, seq, ctx.Err())
		case <-notify:
		case <-t.C:
		}
	}
}
