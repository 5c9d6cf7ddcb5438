package redundancy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/storage"
)

// Copy is one place the layer keeps a copy of every object.
type Copy struct {
	// Name names the copy in health reports ("copy-1", "zone-2").
	Name    string
	Backend storage.Backend
}

// Config configures a Layer.
type Config struct {
	Copies []Copy
	// StateFile keeps which copies are degraded across restarts.
	StateFile string
	// Quorum is how many copies a write needs (default: a majority).
	Quorum int
	// BlockSize is the checksum block (default 1 MiB).
	BlockSize int64
	Log       *slog.Logger
	Now       func() time.Time
}

// CopyState is a copy's health.
type CopyState string

// Copy states.
const (
	// Healthy copies take reads and writes and count for the quorum.
	Healthy CopyState = "HEALTHY"
	// Degraded copies missed a write or lost their data: they still take
	// writes (best effort) but no reads until the scrubber has repaired
	// them.
	Degraded CopyState = "DEGRADED"
)

// Health describes one copy.
type Health struct {
	Name      string    `json:"name"`
	State     CopyState `json:"state"`
	LastError string    `json:"last_error,omitempty"`
	// Since is when the copy entered its state.
	Since time.Time `json:"since"`
	// Repaired counts objects repaired on this copy since the start.
	Repaired int64 `json:"repaired"`
}

// Layer is a redundant storage.Backend over its copies.
type Layer struct {
	copies    []Copy
	stateFile string
	quorum    int
	block     int64
	log       *slog.Logger
	now       func() time.Time

	mu       sync.Mutex
	health   []Health
	failures []int64 // write failures per copy, for the scrubber's pass
	lastGen  uint64

	locks   sync.Mutex
	lockMap map[string]*nameLock

	repairs sync.WaitGroup
	closed  atomic.Bool
	pending sync.Map // names being repaired in the background
}

// nameLock orders writes (exclusive) and the start of reads (shared) of
// one object, so a read's trailer and data come from the same version.
type nameLock struct {
	mu   sync.RWMutex
	refs int
}

var _ storage.Backend = (*Layer)(nil)

const markerName = storage.ReservedPrefix + "copy"

type stateDoc struct {
	Copies []Health `json:"copies"`
}

// Open opens the layer: it loads the copies' health and checks each copy's
// marker; a copy without its marker while others have theirs was lost and
// is degraded until rebuilt.
func Open(ctx context.Context, cfg Config) (*Layer, error) {
	if len(cfg.Copies) == 0 {
		return nil, errors.New("redundancy: no copies")
	}
	if cfg.Quorum == 0 {
		cfg.Quorum = len(cfg.Copies)/2 + 1
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 1 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Layer{copies: cfg.Copies, stateFile: cfg.StateFile, quorum: cfg.Quorum, block: cfg.BlockSize,
		log: cfg.Log, now: cfg.Now, lockMap: map[string]*nameLock{}, failures: make([]int64, len(cfg.Copies))}
	l.health = make([]Health, len(cfg.Copies))
	for i, c := range cfg.Copies {
		l.health[i] = Health{Name: c.Name, State: Healthy, Since: l.now()}
	}
	if cfg.StateFile != "" {
		b, err := os.ReadFile(cfg.StateFile)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read copy health: %w", err)
		}
		if err == nil {
			var doc stateDoc
			if err := json.Unmarshal(b, &doc); err != nil {
				return nil, fmt.Errorf("decode copy health %s: %w", cfg.StateFile, err)
			}
			for _, h := range doc.Copies {
				for i := range l.health {
					if l.health[i].Name == h.Name {
						l.health[i].State, l.health[i].Since, l.health[i].LastError = h.State, h.Since, h.LastError
					}
				}
			}
		}
	}
	if err := l.checkMarkers(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// checkMarkers degrades copies whose marker is missing while another copy
// has one, and writes the markers of a new account.
func (l *Layer) checkMarkers(ctx context.Context) error {
	has := make([]bool, len(l.copies))
	anyMarker := false
	for i, c := range l.copies {
		_, err := c.Backend.Stat(ctx, markerName)
		switch {
		case err == nil:
			has[i], anyMarker = true, true
		case errors.Is(err, storage.ErrNotFound):
		default:
			l.degrade(i, fmt.Errorf("check copy marker: %w", err))
		}
	}
	for i, c := range l.copies {
		if has[i] {
			continue
		}
		if anyMarker {
			l.degrade(i, errors.New("copy marker missing: the copy's data was lost; rebuilding"))
		}
		doc, _ := json.Marshal(map[string]any{"copy": c.Name, "created": l.now().UTC()})
		if err := c.Backend.Put(ctx, markerName, bytes.NewReader(doc)); err != nil {
			l.degrade(i, fmt.Errorf("write copy marker: %w", err))
		}
	}
	return l.saveState()
}

// Copies returns the layer's copies.
func (l *Layer) Copies() []Copy { return append([]Copy(nil), l.copies...) }

// Health returns every copy's health.
func (l *Layer) Health() []Health {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Health(nil), l.health...)
}

func (l *Layer) healthyMask() []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make([]bool, len(l.health))
	for i, h := range l.health {
		m[i] = h.State == Healthy
	}
	return m
}

func (l *Layer) degrade(i int, cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures[i]++
	h := &l.health[i]
	if cause != nil {
		h.LastError = cause.Error()
	}
	if h.State != Degraded {
		h.State, h.Since = Degraded, l.now()
		l.log.Warn("storage copy degraded", "copy", h.Name, "err", cause)
	}
}

func (l *Layer) saveState() error {
	if l.stateFile == "" {
		return nil
	}
	l.mu.Lock()
	b, _ := json.MarshalIndent(stateDoc{Copies: l.health}, "", "  ")
	l.mu.Unlock()
	if err := atomicfile.Write(l.stateFile, b, 0o600); err != nil {
		return fmt.Errorf("save copy health: %w", err)
	}
	return nil
}

func (l *Layer) lock(name string) func()  { return l.lockName(name, false) }
func (l *Layer) rlock(name string) func() { return l.lockName(name, true) }

func (l *Layer) lockName(name string, shared bool) func() {
	l.locks.Lock()
	nl := l.lockMap[name]
	if nl == nil {
		nl = &nameLock{}
		l.lockMap[name] = nl
	}
	nl.refs++
	l.locks.Unlock()
	if shared {
		nl.mu.RLock()
	} else {
		nl.mu.Lock()
	}
	return func() {
		if shared {
			nl.mu.RUnlock()
		} else {
			nl.mu.Unlock()
		}
		l.locks.Lock()
		nl.refs--
		if nl.refs == 0 {
			delete(l.lockMap, name)
		}
		l.locks.Unlock()
	}
}

func (l *Layer) nextGen() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := uint64(l.now().UnixNano())
	if g <= l.lastGen {
		g = l.lastGen + 1
	}
	l.lastGen = g
	return g
}

func (l *Layer) check(name string) error {
	if name == markerName {
		return fmt.Errorf("%w: %q is the copy marker", storage.ErrInvalidName, name)
	}
	return nil
}

// Put writes the object to every copy at once.
func (l *Layer) Put(ctx context.Context, name string, r io.Reader) error {
	if err := l.check(name); err != nil {
		return err
	}
	unlock := l.lock(name)
	defer unlock()
	healthy := l.healthyMask()
	n := 0
	for _, h := range healthy {
		if h {
			n++
		}
	}
	if n < l.quorum {
		return fmt.Errorf("%w: %d of %d copies are healthy, writes need %d", storage.ErrUnavailable, n, len(l.copies), l.quorum)
	}
	gen := l.nextGen()
	errs := l.fanOut(ctx, name, r, gen)
	ok := make([]bool, len(errs))
	for i, err := range errs {
		ok[i] = err == nil
	}
	success, degrade := WriteOutcome(healthy, ok, l.quorum)
	for _, i := range degrade {
		cause := errs[i]
		if cause == nil {
			cause = errors.New("took a write that failed on the other copies")
		}
		l.degrade(i, cause)
	}
	for i, err := range errs {
		if err != nil && !healthy[i] {
			l.degrade(i, err)
		}
	}
	if len(degrade) > 0 {
		if err := l.saveState(); err != nil {
			return err
		}
	}
	if success {
		return nil
	}
	return l.writeError(name, healthy, errs)
}

func (l *Layer) writeError(name string, healthy []bool, errs []error) error {
	var first error
	space := false
	failed := 0
	for i, err := range errs {
		if healthy[i] && err != nil {
			failed++
			if first == nil {
				first = err
			}
			space = space || errors.Is(err, storage.ErrNoSpace)
		}
	}
	if first == nil {
		first = errors.New("no copy completed the write")
	}
	if space {
		return fmt.Errorf("write %s: %w (%d copies failed: %v)", name, storage.ErrNoSpace, failed, first)
	}
	if errors.Is(first, context.Canceled) || errors.Is(first, context.DeadlineExceeded) {
		return first
	}
	if errors.Is(first, errSource) {
		return errors.Unwrap(first)
	}
	return fmt.Errorf("write %s: %w: %d copies failed: %v", name, storage.ErrUnavailable, failed, first)
}

var errSource = errors.New("reading the object failed")

type sourceError struct{ err error }

func (s sourceError) Error() string { return s.err.Error() }
func (s sourceError) Unwrap() error { return s.err }
func (s sourceError) Is(t error) bool {
	return t == errSource
}

// fanOut streams r, followed by its trailer, to every copy, and returns
// each copy's result.
func (l *Layer) fanOut(ctx context.Context, name string, r io.Reader, gen uint64) []error {
	errs := make([]error, len(l.copies))
	pws := make([]*io.PipeWriter, len(l.copies))
	var wg sync.WaitGroup
	for i, c := range l.copies {
		pr, pw := io.Pipe()
		pws[i] = pw
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Backend.Put(ctx, name, pr)
			if err == nil {
				// A backend that returns before reading everything did
				// not store the whole object.
				if n, _ := pr.Read(make([]byte, 1)); n > 0 {
					err = errors.New("backend stopped reading early")
				}
			}
			pr.CloseWithError(errClosed(err))
			errs[i] = err
		}()
	}
	live := make([]bool, len(pws))
	for i := range live {
		live[i] = true
	}
	write := func(p []byte) {
		for i, pw := range pws {
			if live[i] {
				if _, err := pw.Write(p); err != nil {
					live[i] = false
				}
			}
		}
	}
	var tr trailer
	buf := make([]byte, l.block)
	var srcErr error
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			tr.blocks = append(tr.blocks, sha256.Sum256(buf[:n]))
			tr.size += int64(n)
			write(buf[:n])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			srcErr = err
			break
		}
		if ctx.Err() != nil {
			srcErr = ctx.Err()
			break
		}
	}
	if srcErr != nil {
		for _, pw := range pws {
			pw.CloseWithError(srcErr)
		}
		wg.Wait()
		for i := range errs {
			errs[i] = sourceError{srcErr}
		}
		return errs
	}
	tr.gen = gen
	write(tr.encode())
	for _, pw := range pws {
		pw.Close()
	}
	wg.Wait()
	return errs
}

func errClosed(err error) error {
	if err == nil {
		return io.ErrClosedPipe
	}
	return err
}

// readTrailer reads and checks a copy's trailer.
func (l *Layer) readTrailer(ctx context.Context, i int, name string) (*trailer, int64, error) {
	b := l.copies[i].Backend
	oi, err := b.Stat(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	size, ok := payloadSize(oi.Size, l.block)
	if !ok {
		return nil, 0, fmt.Errorf("%s on %s: stored size %d: %w", name, l.copies[i].Name, oi.Size, storage.ErrCorrupt)
	}
	r, err := b.Get(ctx, name, size, -1)
	if err != nil {
		return nil, 0, err
	}
	raw, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return nil, 0, err
	}
	t, err := decodeTrailer(raw, size, l.block)
	if err != nil {
		return nil, 0, fmt.Errorf("%s on %s: %w", name, l.copies[i].Name, err)
	}
	return t, size, nil
}

// readOrder is the order copies are tried in: healthy copies first.
func (l *Layer) readOrder() []int {
	h := l.healthyMask()
	var order []int
	for i := range h {
		if h[i] {
			order = append(order, i)
		}
	}
	return order
}

// Get reads a range, verifying every block against the copy's trailer and
// going on from another copy when one fails.
func (l *Layer) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := l.check(name); err != nil {
		return nil, err
	}
	order := l.readOrder()
	if len(order) == 0 {
		return nil, fmt.Errorf("%w: no healthy copy", storage.ErrUnavailable)
	}
	g := &getReader{l: l, ctx: ctx, name: name, order: order}
	// The trailer and the data stream are opened under the name's shared
	// lock: a replace cannot slip in between them.
	unlock := l.rlock(name)
	err := g.start()
	if err == nil {
		if offset < 0 {
			offset = 0
		}
		end := g.size
		if length >= 0 && offset+length < end {
			end = offset + length
		}
		g.pos, g.end = min(offset, g.size), end
		if g.pos < g.end {
			err = g.open(g.pos / l.block)
			for err != nil && ctx.Err() == nil {
				if ferr := g.failover(err); ferr != nil {
					err = ferr
					break
				}
				err = g.open(g.pos / l.block)
			}
		}
	}
	unlock()
	if err != nil {
		g.finish()
		return nil, err
	}
	return g, nil
}

type getReader struct {
	l     *Layer
	ctx   context.Context
	name  string
	order []int
	next  int // index in order of the next copy to try

	cur   int // copy being read
	tr    *trailer
	size  int64
	src   io.ReadCloser
	block int64 // block src is positioned at (-1: none)

	pos, end int64
	buf, out []byte
	bad      []int
	missing  []int
	err      error
}

// start finds the first copy with a good trailer.
func (g *getReader) start() error {
	var lastErr error
	for g.next < len(g.order) {
		i := g.order[g.next]
		g.next++
		tr, size, err := g.l.readTrailer(g.ctx, i, g.name)
		if err == nil {
			g.cur, g.tr, g.size, g.block = i, tr, size, -1
			return nil
		}
		if errors.Is(err, storage.ErrNotFound) {
			g.missing = append(g.missing, i)
		} else {
			g.bad = append(g.bad, i)
		}
		lastErr = err
		if ctx := g.ctx.Err(); ctx != nil {
			return ctx
		}
	}
	if len(g.bad) == 0 {
		return storage.ErrNotFound
	}
	if len(g.bad) > 0 && !errors.Is(lastErr, storage.ErrCorrupt) {
		return lastErr
	}
	return fmt.Errorf("%s: %w", g.name, storage.ErrCorrupt)
}

// failover moves to the next copy holding the same object.
func (g *getReader) failover(cause error) error {
	g.bad = append(g.bad, g.cur)
	g.l.log.Warn("storage copy failed a read", "copy", g.l.copies[g.cur].Name, "object", g.name, "err", cause)
	if g.src != nil {
		g.src.Close()
		g.src = nil
	}
	for g.next < len(g.order) {
		i := g.order[g.next]
		g.next++
		tr, _, err := g.l.readTrailer(g.ctx, i, g.name)
		if err != nil {
			if !errors.Is(err, storage.ErrNotFound) {
				g.bad = append(g.bad, i)
			} else {
				g.missing = append(g.missing, i)
			}
			continue
		}
		if tr.sum != g.tr.sum {
			// Another version (a concurrent replace): not a source for
			// the rest of this read.
			continue
		}
		g.cur, g.block = i, -1
		return nil
	}
	return fmt.Errorf("%s: no copy passes its checksum: %w", g.name, storage.ErrCorrupt)
}

func (g *getReader) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.err != nil {
			return 0, g.err
		}
		if g.pos >= g.end {
			return 0, io.EOF
		}
		g.err = g.fill()
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// fill reads and verifies the block holding pos.
func (g *getReader) fill() error {
	bi := g.pos / g.l.block
	for {
		data, err := g.readBlock(bi)
		if err == nil {
			from := g.pos - bi*g.l.block
			to := min(int64(len(data)), g.end-bi*g.l.block)
			g.out = data[from:to]
			g.pos += to - from
			return nil
		}
		if cerr := g.ctx.Err(); cerr != nil {
			return cerr
		}
		if ferr := g.failover(err); ferr != nil {
			return ferr
		}
	}
}

// open opens the current copy's data from block bi to the end of the range.
func (g *getReader) open(bi int64) error {
	if g.src != nil {
		g.src.Close()
	}
	endBlock := (g.end + g.l.block - 1) / g.l.block
	var err error
	g.src, err = g.l.copies[g.cur].Backend.Get(g.ctx, g.name, bi*g.l.block, (endBlock-bi)*g.l.block)
	if err != nil {
		g.src = nil
		return err
	}
	g.block = bi
	return nil
}

func (g *getReader) readBlock(bi int64) ([]byte, error) {
	if g.src == nil || g.block != bi {
		if err := g.open(bi); err != nil {
			return nil, err
		}
	}
	want := min(g.l.block, g.size-bi*g.l.block)
	if g.buf == nil {
		g.buf = make([]byte, g.l.block)
	}
	n, err := io.ReadFull(g.src, g.buf[:want])
	if err != nil {
		g.block = -1
		return nil, fmt.Errorf("read block %d: %w", bi, err)
	}
	if sha256.Sum256(g.buf[:n]) != g.tr.blocks[bi] {
		g.block = -1
		return nil, fmt.Errorf("block %d fails its checksum: %w", bi, storage.ErrCorrupt)
	}
	g.block = bi + 1
	return g.buf[:n], nil
}

func (g *getReader) Close() error {
	g.finish()
	return nil
}

// finish closes the source and repairs the copies found bad or missing.
func (g *getReader) finish() {
	if g.src != nil {
		g.src.Close()
		g.src = nil
	}
	if g.tr != nil && len(g.bad)+len(g.missing) > 0 {
		g.l.repairLater(g.name)
	}
}

// repairLater repairs an object in the background (once at a time per
// name); Wait waits for those repairs.
func (l *Layer) repairLater(name string) {
	if l.closed.Load() {
		return
	}
	if _, busy := l.pending.LoadOrStore(name, true); busy {
		return
	}
	l.repairs.Add(1)
	go func() {
		defer l.repairs.Done()
		defer l.pending.Delete(name)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, err := l.RepairObject(ctx, name); err != nil {
			l.log.Warn("storage repair failed", "object", name, "err", err)
		}
	}()
}

// Wait waits for the background repairs started by reads.
func (l *Layer) Wait() { l.repairs.Wait() }

// Close stops starting background repairs and waits for those running.
func (l *Layer) Close() error {
	l.closed.Store(true)
	l.repairs.Wait()
	return nil
}

// Stat describes an object from the first healthy copy that has it.
func (l *Layer) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := l.check(name); err != nil {
		return storage.ObjectInfo{}, err
	}
	order := l.readOrder()
	if len(order) == 0 {
		return storage.ObjectInfo{}, fmt.Errorf("%w: no healthy copy", storage.ErrUnavailable)
	}
	var lastErr error = storage.ErrNotFound
	missing := false
	for _, i := range order {
		oi, err := l.copies[i].Backend.Stat(ctx, name)
		if err == nil {
			size, ok := payloadSize(oi.Size, l.block)
			if !ok {
				lastErr = fmt.Errorf("%s on %s: %w", name, l.copies[i].Name, storage.ErrCorrupt)
				missing = true
				continue
			}
			if missing {
				l.repairLater(name)
			}
			oi.Size = size
			return oi, nil
		}
		if errors.Is(err, storage.ErrNotFound) {
			missing = true
		} else {
			lastErr = err
		}
	}
	return storage.ObjectInfo{}, lastErr
}

// Delete removes the object from every copy.
func (l *Layer) Delete(ctx context.Context, name string) error {
	if err := l.check(name); err != nil {
		return err
	}
	unlock := l.lock(name)
	defer unlock()
	healthy := l.healthyMask()
	errs := make([]error, len(l.copies))
	ok := make([]bool, len(l.copies))
	var wg sync.WaitGroup
	for i, c := range l.copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Backend.Delete(ctx, name)
			ok[i] = errs[i] == nil
		}()
	}
	wg.Wait()
	success, degrade := WriteOutcome(healthy, ok, l.quorum)
	for _, i := range degrade {
		cause := errs[i]
		if cause == nil {
			cause = errors.New("took a delete that failed on the other copies")
		}
		l.degrade(i, cause)
	}
	if len(degrade) > 0 {
		if err := l.saveState(); err != nil {
			return err
		}
	}
	if success {
		return nil
	}
	return l.writeError(name, healthy, errs)
}

// List merges the healthy copies' listings, so an object a copy lost out
// of band still shows.
func (l *Layer) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	order := l.readOrder()
	if len(order) == 0 {
		return fmt.Errorf("%w: no healthy copy", storage.ErrUnavailable)
	}
	merged := map[string]storage.ObjectInfo{}
	listed := 0
	var lastErr error
	for _, i := range order {
		err := l.copies[i].Backend.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			if oi.Name == markerName {
				return nil
			}
			if _, seen := merged[oi.Name]; !seen {
				if size, ok := payloadSize(oi.Size, l.block); ok {
					oi.Size = size
				}
				merged[oi.Name] = oi
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			lastErr = err
			continue
		}
		listed++
	}
	if listed == 0 {
		return lastErr
	}
	names := make([]string, 0, len(merged))
	for n := range merged {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := fn(merged[n]); err != nil {
			return err
		}
	}
	return nil
}
