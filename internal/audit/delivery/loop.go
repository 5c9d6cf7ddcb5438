// Package delivery moves audit records from the region's journal to one
// destination, at least once. A Loop reads the journal from its cursor,
// hands each batch to the destination, and only then stores the cursor
// (a small file, synced), so a crash at any moment repeats at most the
// batch in flight and never skips one. A destination that fails is retried
// with backoff while its backlog waits in the journal; API calls never
// wait for delivery, only for the journal.
//
// The cursor is local to the region (a file next to the journal, not the
// replicated metadata store): a journal position means nothing to another
// region's journal.
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/audit"
)

// Journal is what a loop reads; *audit.Journal implements it.
type Journal interface {
	Read(from audit.Position, max int) ([]*audit.Record, audit.Position, error)
	End() audit.Position
	Notify() (<-chan struct{}, func())
	Count(from audit.Position) (int64, error)
}

// Destination receives batches of records. Deliver returns nil only once
// every record of the batch is durably accepted; it may be called again
// with records it already accepted (after a crash), so destinations either
// tolerate duplicates or remove them by logId.
type Destination interface {
	Deliver(ctx context.Context, recs []*audit.Record, now time.Time) error
}

// Sealer is a destination that seals what it delivered when a period ends
// (the storage account's digests). Seal is called between batches, never
// while Deliver runs, and must be cheap when no period has ended.
type Sealer interface {
	Seal(ctx context.Context, now time.Time) error
}

// Status is what a loop reports about its destination.
type Status struct {
	Position        audit.Position `json:"-"`
	Delivered       int64          `json:"delivered_records"`
	LagRecords      int64          `json:"lag_records"`
	LagSeconds      float64        `json:"lag_seconds"`
	LastSuccessTime int64          `json:"last_success_time,omitempty"` // epoch ms
	LastErrorTime   int64          `json:"last_error_time,omitempty"`
	LastError       string         `json:"last_error,omitempty"`
}

// Loop delivers the journal to one destination.
type Loop struct {
	// ID names the destination in logs and metrics ("<setting>/<kind>").
	ID      string
	Setting string
	Kind    string
	Journal Journal
	Dest    Destination
	// Accept selects the records this destination receives (its setting's
	// categories); nil accepts all.
	Accept func(*audit.Record) bool
	// CursorFile stores the loop's journal position.
	CursorFile string
	// BatchSize bounds the records read per batch (default 2000).
	BatchSize int
	// MaxBackoff bounds the wait between retries of a failing destination
	// (default 10 s).
	MaxBackoff time.Duration
	// Tick is how often an idle loop wakes to seal periods and refresh its
	// lag (default 1 s).
	Tick    time.Duration
	Metrics *Metrics
	Log     *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	mu     sync.Mutex
	status Status
	oldest time.Time // time of the oldest record not yet delivered; zero when caught up
}

type cursor struct {
	Position audit.Position `json:"position"`
}

// LoadCursor reads a cursor file; a missing file is the journal's start.
func LoadCursor(path string) (audit.Position, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return audit.Position{}, nil
	}
	if err != nil {
		return audit.Position{}, fmt.Errorf("read delivery cursor: %w", err)
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return audit.Position{}, fmt.Errorf("delivery cursor %s is damaged: %w", path, err)
	}
	return c.Position, nil
}

func saveCursor(path string, p audit.Position) error {
	b, _ := json.Marshal(cursor{Position: p})
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("save delivery cursor: %w", err)
	}
	return nil
}

func (l *Loop) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Status reports the loop's progress and its destination's health.
func (l *Loop) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	if !l.oldest.IsZero() {
		s.LagSeconds = max(l.now().Sub(l.oldest).Seconds(), 0)
	} else {
		s.LagSeconds = 0
	}
	return s
}

// Position is the loop's cursor (records before it are delivered).
func (l *Loop) Position() audit.Position {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status.Position
}

func (l *Loop) defaults() {
	if l.BatchSize <= 0 {
		l.BatchSize = 2000
	}
	if l.MaxBackoff <= 0 {
		l.MaxBackoff = 10 * time.Second
	}
	if l.Tick <= 0 {
		l.Tick = time.Second
	}
	if l.Log == nil {
		l.Log = slog.Default()
	}
}

// Init loads the cursor; Run calls it, and callers that need Position
// before Run (journal retention) call it first.
func (l *Loop) Init() error {
	l.defaults()
	pos, err := LoadCursor(l.CursorFile)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.status.Position = pos
	l.mu.Unlock()
	return nil
}

// Run delivers until ctx ends.
func (l *Loop) Run(ctx context.Context) {
	l.defaults()
	if err := l.Init(); err != nil {
		l.Log.Error("audit delivery cannot start", "destination", l.ID, "err", err)
		l.fail(err)
		return
	}
	wake, stop := l.Journal.Notify()
	defer stop()
	if l.Metrics != nil {
		l.Metrics.track(l, true)
		defer l.Metrics.track(l, false)
	}
	tick := time.NewTicker(l.Tick)
	defer tick.Stop()
	pos := l.Position()
	var lastCount time.Time
	for ctx.Err() == nil {
		if s, ok := l.Dest.(Sealer); ok {
			if err := s.Seal(ctx, l.now()); err != nil && ctx.Err() == nil {
				l.Log.Warn("audit digest not written yet", "destination", l.ID, "err", err)
				l.fail(err)
			}
		}
		recs, next, err := l.Journal.Read(pos, l.BatchSize)
		if err != nil {
			l.Log.Error("read audit journal", "destination", l.ID, "err", err)
			l.fail(err)
			if !sleep(ctx, l.MaxBackoff) {
				return
			}
			continue
		}
		if len(recs) == 0 {
			l.caughtUp()
			select {
			case <-ctx.Done():
				return
			case <-wake:
			case <-tick.C:
			}
			continue
		}
		if time.Since(lastCount) > 2*time.Second {
			l.countBacklog(pos)
			lastCount = time.Now()
		}
		batch := recs[:0:0]
		for _, r := range recs {
			if l.Accept == nil || l.Accept(r) {
				batch = append(batch, r)
			}
		}
		if !l.deliver(ctx, batch, recs[0], pos) {
			return
		}
		if err := saveCursor(l.CursorFile, next); err != nil {
			// The batch is delivered but the cursor is not stored: it will
			// be delivered again after a restart, which at-least-once allows.
			l.Log.Error("audit delivery cursor not saved", "destination", l.ID, "err", err)
		}
		pos = next
		l.mu.Lock()
		l.status.Position = next
		l.status.Delivered += int64(len(batch))
		l.status.LagRecords = max(l.status.LagRecords-int64(len(recs)), 0)
		l.mu.Unlock()
		if l.Journal.End() == next {
			l.caughtUp()
		}
	}
}

// deliver hands batch to the destination until it succeeds; it returns
// false if ctx ended first. first is the oldest record waiting, for the lag.
func (l *Loop) deliver(ctx context.Context, batch []*audit.Record, first *audit.Record, pos audit.Position) bool {
	if oldest, err := time.Parse(audit.TimeFormat, first.Time); err == nil {
		l.mu.Lock()
		l.oldest = oldest
		l.mu.Unlock()
	}
	backoff := 250 * time.Millisecond
	for {
		now := l.now()
		if len(batch) == 0 {
			return true
		}
		err := l.Dest.Deliver(ctx, batch, now)
		if err == nil {
			l.succeed(batch, l.now())
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		l.Log.Warn("audit destination refused a batch; will retry", "destination", l.ID, "records", len(batch),
			"retry_in", backoff.String(), "err", err)
		l.fail(err)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, l.MaxBackoff)
		l.countBacklog(pos)
	}
}

func (l *Loop) succeed(batch []*audit.Record, now time.Time) {
	l.mu.Lock()
	l.status.LastSuccessTime = now.UnixMilli()
	l.mu.Unlock()
	if m := l.Metrics; m != nil {
		m.Up.WithLabelValues(l.Setting, l.Kind).Set(1)
		m.Delivered.WithLabelValues(l.Setting, l.Kind).Add(float64(len(batch)))
		h := m.Latency.WithLabelValues(l.Kind)
		for _, r := range batch {
			if t, err := time.Parse(audit.TimeFormat, r.Time); err == nil {
				h.Observe(now.Sub(t).Seconds())
			}
		}
	}
}

func (l *Loop) fail(err error) {
	l.mu.Lock()
	l.status.LastError = err.Error()
	l.status.LastErrorTime = l.now().UnixMilli()
	l.mu.Unlock()
	if m := l.Metrics; m != nil {
		m.Up.WithLabelValues(l.Setting, l.Kind).Set(0)
		m.Errors.WithLabelValues(l.Setting, l.Kind).Inc()
	}
}

// countBacklog refreshes the backlog count from pos to the journal's end.
func (l *Loop) countBacklog(pos audit.Position) {
	if n, err := l.Journal.Count(pos); err == nil {
		l.mu.Lock()
		l.status.LagRecords = n
		l.mu.Unlock()
	}
}

func (l *Loop) caughtUp() {
	l.mu.Lock()
	l.status.LagRecords, l.oldest = 0, time.Time{}
	l.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
