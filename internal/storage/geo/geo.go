package geo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/storage"
)

// Config configures a Layer.
type Config struct {
	Primary   storage.Backend
	Secondary storage.Backend
	// JournalDir holds the journal of changes to ship.
	JournalDir string
	// ReadAccess (RA-GRS, RA-GZRS) serves reads from the secondary when
	// the primary cannot, and opens the secondary endpoint.
	ReadAccess bool
	// MinBackoff and MaxBackoff bound the retry wait of a failed shipment
	// (defaults 100 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
	// Workers ship objects in parallel (default 4).
	Workers int
	Log     *slog.Logger
	Now     func() time.Time
	// Hold, if set, holds shipments while it returns true: the journal
	// keeps the backlog and shipping resumes within a second of it
	// returning false (a disaster-recovery region ships to its peer only
	// while it leads).
	Hold func() bool
	// Local, if set, names objects that stay in this region: written to
	// the primary only, never shipped nor taken from the secondary by the
	// initial sync. Two disaster-recovery regions share object names, and
	// some objects (a region's own diagnostic logs) are each region's own.
	Local func(name string) bool
	// Last, if set, names objects that refer to others (the storage
	// account's append manifests name their parts): a batch ships the
	// other objects' new contents first, then these, then the other
	// deletions, so the secondary never holds a reference to an object it
	// lacks.
	Last func(name string) bool
}

// Layer is a geo-replicated storage.Backend.
type Layer struct {
	primary, secondary storage.Backend
	j                  *journal
	ra                 bool
	minB, maxB         time.Duration
	workers            int
	log                *slog.Logger
	now                func() time.Time
	hold               func() bool
	local              func(name string) bool
	last               func(name string) bool
	// retry cuts a backoff wait short (Retry).
	retry chan struct{}

	mu          sync.Mutex
	lastErr     string
	lastErrAt   time.Time
	failures    int
	shipped     int64
	initialSync bool
	syncMark    uint64 // the initial sync is done once this entry ships
}

var _ storage.Backend = (*Layer)(nil)

// Open opens the journal; Run ships.
func Open(cfg Config) (*Layer, error) {
	if cfg.Primary == nil || cfg.Secondary == nil {
		return nil, errors.New("geo: Primary and Secondary are required")
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	j, err := openJournal(cfg.JournalDir)
	if err != nil {
		return nil, err
	}
	return &Layer{primary: cfg.Primary, secondary: cfg.Secondary, j: j, ra: cfg.ReadAccess,
		minB: cfg.MinBackoff, maxB: cfg.MaxBackoff, workers: cfg.Workers, log: cfg.Log, now: cfg.Now, hold: cfg.Hold, local: cfg.Local, last: cfg.Last, retry: make(chan struct{}, 1)}, nil
}

// Close closes the journal. Run must have returned.
func (l *Layer) Close() error { return l.j.close() }

// isLocal reports whether name stays in this region (Config.Local).
func (l *Layer) isLocal(name string) bool { return l.local != nil && l.local(name) }

// Put journals the change, then writes the primary.
func (l *Layer) Put(ctx context.Context, name string, r io.Reader) error {
	if l.isLocal(name) {
		return l.primary.Put(ctx, name, r)
	}
	e, err := l.j.append(name, l.now())
	if err != nil {
		return err
	}
	defer l.j.complete(e)
	return l.primary.Put(ctx, name, r)
}

// Delete journals the change, then deletes on the primary.
func (l *Layer) Delete(ctx context.Context, name string) error {
	if l.isLocal(name) {
		return l.primary.Delete(ctx, name)
	}
	e, err := l.j.append(name, l.now())
	if err != nil {
		return err
	}
	defer l.j.complete(e)
	return l.primary.Delete(ctx, name)
}

// fallback reports whether a failed primary read may be served from the
// secondary: with read access, when the primary is unavailable (not when
// the object is missing or the key refused).
func (l *Layer) fallback(err error) bool {
	return l.ra && err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrInvalidName) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// Get reads from the primary (or, with read access, the secondary when the
// primary is unavailable).
func (l *Layer) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	r, err := l.primary.Get(ctx, name, offset, length)
	if l.fallback(err) {
		return l.secondary.Get(ctx, name, offset, length)
	}
	return r, err
}

// Stat describes an object on the primary (or the secondary, as Get).
func (l *Layer) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	oi, err := l.primary.Stat(ctx, name)
	if l.fallback(err) {
		return l.secondary.Stat(ctx, name)
	}
	return oi, err
}

// List lists the primary (or the secondary, as Get).
func (l *Layer) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	called := false
	err := l.primary.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		called = true
		return fn(oi)
	})
	if !called && l.fallback(err) {
		return l.secondary.List(ctx, prefix, fn)
	}
	return err
}

// Secondary is the secondary endpoint: reads from the secondary region's
// copy, writes refused. Without read access it refuses reads too, as an
// account without RA- has no secondary endpoint.
func (l *Layer) Secondary() storage.Backend { return readOnly{b: l.secondary, readable: l.ra} }

// Status is the state of geo-replication.
type Status struct {
	// LastSyncTime: every change before it is in the secondary. Unset
	// during the initial sync.
	LastSyncTime    time.Time
	HasLastSyncTime bool
	Backlog         int
	OldestPending   time.Time
	Shipped         int64
	LastError       string
	LastErrorAt     time.Time
	// SecondaryAvailable is false while shipments fail.
	SecondaryAvailable bool
	InitialSync        bool
	// Held is set while Config.Hold holds shipments.
	Held bool
}

// Status reports the replication state.
func (l *Layer) Status() Status {
	n, oldest := l.j.backlog()
	l.mu.Lock()
	defer l.mu.Unlock()
	lst, ok := LastSyncTime(oldest, n, l.initialSync, l.now())
	return Status{LastSyncTime: lst, HasLastSyncTime: ok, Backlog: n, OldestPending: oldest, Shipped: l.shipped,
		LastError: l.lastErr, LastErrorAt: l.lastErrAt, SecondaryAvailable: l.failures == 0, InitialSync: l.initialSync,
		Held: l.held()}
}

// InitialSync journals every object of the primary and every object only
// the secondary has, so the shipper makes the secondary a copy of the
// primary: when geo-replication is turned on for an account with data, or
// turned back on after a failover.
func (l *Layer) InitialSync(ctx context.Context) error {
	l.mu.Lock()
	l.initialSync = true
	l.mu.Unlock()
	seen := map[string]bool{}
	var last *entry
	add := func(oi storage.ObjectInfo) error {
		if seen[oi.Name] || l.isLocal(oi.Name) {
			return nil
		}
		seen[oi.Name] = true
		e, err := l.j.append(oi.Name, l.now())
		if err != nil {
			return err
		}
		l.j.complete(e)
		last = e
		return nil
	}
	if err := l.primary.List(ctx, "", add); err != nil {
		return fmt.Errorf("list the primary for the initial sync: %w", err)
	}
	if err := l.secondary.List(ctx, "", add); err != nil {
		return fmt.Errorf("list the secondary for the initial sync: %w", err)
	}
	l.mu.Lock()
	if last == nil {
		l.initialSync = false
	} else {
		l.syncMark = last.Seq
	}
	l.mu.Unlock()
	return nil
}

// Run ships journaled changes until ctx ends.
func (l *Layer) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		var batch []*entry
		if !l.held() {
			batch = l.j.batch(256)
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-l.j.wake:
			case <-tick.C:
			}
			continue
		}
		if err := l.ship(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return
			}
			l.mu.Lock()
			l.lastErr, l.lastErrAt = err.Error(), l.now()
			l.failures++
			wait := Backoff(l.failures-1, l.minB, l.maxB)
			l.mu.Unlock()
			l.log.Warn("geo-replication shipment failed; retrying", "err", err, "backlog", len(batch), "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			case <-l.retry:
			}
			continue
		}
		last := batch[len(batch)-1].Seq
		if err := l.j.shippedUpTo(last); err != nil {
			l.log.Error("geo-replication cursor not saved", "err", err)
		}
		l.mu.Lock()
		l.failures = 0
		l.shipped += int64(len(batch))
		if l.initialSync && last >= l.syncMark {
			l.initialSync = false
		}
		l.mu.Unlock()
	}
}

// Retry makes a shipper that backs off after failures try again now: the
// secondary is known to be back (a disaster-recovery peer that follows
// again after an outage), so the backlog need not wait out the backoff.
func (l *Layer) Retry() {
	select {
	case l.retry <- struct{}{}:
	default:
	}
}

func (l *Layer) held() bool { return l.hold != nil && l.hold() }

// ship copies the current state of each name in the batch to the
// secondary, once per name, with a few workers.
func (l *Layer) ship(ctx context.Context, batch []*entry) error {
	names := make([]string, 0, len(batch))
	seen := map[string]bool{}
	for _, e := range batch {
		if !seen[e.Name] {
			seen[e.Name] = true
			names = append(names, e.Name)
		}
	}
	if l.last == nil {
		return l.shipNames(ctx, names, nil)
	}
	var first, last []string
	for _, n := range names {
		if l.last(n) {
			last = append(last, n)
		} else {
			first = append(first, n)
		}
	}
	d := &deferred{}
	if err := l.shipNames(ctx, first, d); err != nil {
		return err
	}
	if err := l.shipLast(ctx, last, batch[len(batch)-1].Seq, first, d); err != nil {
		return err
	}
	for _, n := range d.names {
		if err := l.secondary.Delete(ctx, n); err != nil {
			return fmt.Errorf("delete %s on the secondary: %w", n, err)
		}
	}
	return nil
}

// shipLast ships the objects that refer to others. Each is read now, so
// it may name objects written after the batch was taken: those (done in
// the journal by the time it was read) ship first, then it.
func (l *Layer) shipLast(ctx context.Context, names []string, after uint64, shipped []string, d *deferred) error {
	if len(names) == 0 {
		return nil
	}
	snaps := make(map[string][]byte, len(names))
	for _, n := range names {
		r, err := l.primary.Get(ctx, n, 0, -1)
		if errors.Is(err, storage.ErrNotFound) {
			snaps[n] = nil
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s from the primary: %w", n, err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return fmt.Errorf("read %s from the primary: %w", n, err)
		}
		snaps[n] = b
	}
	seen := map[string]bool{}
	for _, n := range shipped {
		seen[n] = true
	}
	var extra []string
	for _, n := range l.j.doneAfter(after) {
		if !seen[n] && !l.last(n) {
			seen[n] = true
			extra = append(extra, n)
		}
	}
	if err := l.shipNames(ctx, extra, d); err != nil {
		return err
	}
	for _, n := range names {
		if snaps[n] == nil {
			if err := l.secondary.Delete(ctx, n); err != nil {
				return fmt.Errorf("delete %s on the secondary: %w", n, err)
			}
			continue
		}
		if err := l.secondary.Put(ctx, n, bytes.NewReader(snaps[n])); err != nil {
			return fmt.Errorf("write %s to the secondary: %w", n, err)
		}
	}
	return nil
}

// deferred collects the deletions a shipment makes last.
type deferred struct {
	mu    sync.Mutex
	names []string
}

// shipNames ships names with a few workers; deletions go to d if set.
func (l *Layer) shipNames(ctx context.Context, names []string, d *deferred) error {
	if len(names) == 0 {
		return nil
	}
	work := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for w := 0; w < min(l.workers, len(names)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				if err := l.shipOneDeferring(ctx, name, d); err != nil {
					errs <- err
				}
			}
		}()
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	close(errs)
	var first error
	failed := 0
	for err := range errs {
		if first == nil {
			first = err
		}
		failed++
	}
	if failed == 0 {
		return nil
	}
	if failed == 1 {
		return first
	}
	return fmt.Errorf("%d of %d objects not shipped; first: %w", failed, len(names), first)
}

func (l *Layer) shipOneDeferring(ctx context.Context, name string, d *deferred) error {
	r, err := l.primary.Get(ctx, name, 0, -1)
	if errors.Is(err, storage.ErrNotFound) && d != nil {
		d.mu.Lock()
		d.names = append(d.names, name)
		d.mu.Unlock()
		return nil
	}
	if errors.Is(err, storage.ErrNotFound) {
		if err := l.secondary.Delete(ctx, name); err != nil {
			return fmt.Errorf("delete %s on the secondary: %w", name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s from the primary: %w", name, err)
	}
	defer r.Close()
	if err := l.secondary.Put(ctx, name, r); err != nil {
		return fmt.Errorf("write %s to the secondary: %w", name, err)
	}
	return nil
}

// readOnly is the secondary endpoint.
type readOnly struct {
	b        storage.Backend
	readable bool
}

func (r readOnly) refuse() error {
	if !r.readable {
		return fmt.Errorf("%w: the account has no read access to its secondary (use RA-GRS or RA-GZRS)", storage.ErrReadOnly)
	}
	return nil
}

func (r readOnly) Put(context.Context, string, io.Reader) error {
	return fmt.Errorf("%w: the secondary endpoint takes no writes", storage.ErrReadOnly)
}

func (r readOnly) Delete(context.Context, string) error {
	return fmt.Errorf("%w: the secondary endpoint takes no writes", storage.ErrReadOnly)
}

func (r readOnly) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if err := r.refuse(); err != nil {
		return nil, err
	}
	return r.b.Get(ctx, name, off, n)
}

func (r readOnly) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := r.refuse(); err != nil {
		return storage.ObjectInfo{}, err
	}
	return r.b.Stat(ctx, name)
}

func (r readOnly) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := r.refuse(); err != nil {
		return err
	}
	return r.b.List(ctx, prefix, fn)
}
