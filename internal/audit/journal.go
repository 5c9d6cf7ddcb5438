package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemdata/tandem/internal/atomicfile"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit journal is closed")

// SegmentSize is the size after which the journal starts a new segment file.
const SegmentSize = 64 << 20

// Journal is the durable, append-only log of audit records. Append returns
// once the record is on disk (fsync): concurrent appends are written and
// synced together (group commit), so the cost of one fsync is shared by every
// request that arrived while the previous one ran. Records are JSON lines in
// numbered segment files; a torn last line left by a crash is cut off when
// the journal is opened.
type Journal struct {
	dir string

	reqs chan appendReq
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex // guards the fields below, read by readers
	seg      int64
	size     int64
	f        *os.File
	prealloc bool // the segment is preallocated: fdatasync suffices
	closed   bool
	waiters  map[chan struct{}]struct{}
}

type appendReq struct {
	line []byte
	done chan error
}

// Position is a place in the journal: a segment and a byte offset in it.
type Position struct {
	Segment int64 `json:"segment"`
	Offset  int64 `json:"offset"`
}

// Less reports whether p is before q.
func (p Position) Less(q Position) bool {
	return p.Segment < q.Segment || (p.Segment == q.Segment && p.Offset < q.Offset)
}

// OpenJournal opens (or creates) the journal in dir.
func OpenJournal(dir string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create audit journal %s: %w", dir, err)
	}
	segs, err := segments(dir)
	if err != nil {
		return nil, err
	}
	j := &Journal{dir: dir, reqs: make(chan appendReq, 4096), stop: make(chan struct{}), done: make(chan struct{}),
		waiters: map[chan struct{}]struct{}{}}
	seg := int64(1)
	if len(segs) > 0 {
		seg = segs[len(segs)-1]
	}
	if err := j.openSegment(seg, true); err != nil {
		return nil, err
	}
	go j.writer()
	return j, nil
}

func segmentName(dir string, seg int64) string {
	return filepath.Join(dir, fmt.Sprintf("%016d.jsonl", seg))
}

func segments(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list audit journal: %w", err)
	}
	var segs []int64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".jsonl")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(name, 10, 64)
		if err == nil {
			segs = append(segs, n)
		}
	}
	sort.Slice(segs, func(i, k int) bool { return segs[i] < segs[k] })
	return segs, nil
}

// openSegment opens segment seg for appending; with recover it first cuts a
// torn tail (a last line without its newline, or one that is not JSON).
func (j *Journal) openSegment(seg int64, recover bool) error {
	name := segmentName(j.dir, seg)
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open audit segment: %w", err)
	}
	size := int64(0)
	if recover {
		good, err := validPrefix(f)
		if err != nil {
			f.Close()
			return err
		}
		// Cut a torn record.
		if err := f.Truncate(good); err != nil {
			f.Close()
			return fmt.Errorf("cut torn audit record: %w", err)
		}
		size = good
	}
	// Preallocate the segment's blocks past its end (its size stays that of
	// its records, so it remains plain JSON lines): an append then changes
	// no block map, and a data sync (fdatasync, which still records the new
	// size) makes it durable at less cost than a full fsync. Every audited
	// call waits for that sync.
	const keepSize = 1 // FALLOC_FL_KEEP_SIZE
	j.prealloc = syscall.Fallocate(int(f.Fd()), keepSize, 0, SegmentSize) == nil
	if err := atomicfile.SyncDir(j.dir); err != nil {
		f.Close()
		return err
	}
	j.mu.Lock()
	j.seg, j.size, j.f = seg, size, f
	j.mu.Unlock()
	return nil
}

// validPrefix returns the length of the longest prefix of f made of whole,
// valid JSON lines.
func validPrefix(f *os.File) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var good int64
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' && json.Valid(line[:len(line)-1]) {
			good += int64(len(line))
		} else if len(line) > 0 {
			return good, nil
		}
		if err == io.EOF {
			return good, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read audit segment: %w", err)
		}
	}
}

// Append writes rec durably. It returns after the record is synced to disk.
func (j *Journal) Append(ctx context.Context, rec *Record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	line = append(line, '\n')
	req := appendReq{line: line, done: make(chan error, 1)}
	select {
	case j.reqs <- req:
	case <-j.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the record is written whatever the caller's context does:
	// a record must not be lost because a client hung up.
	select {
	case err := <-req.done:
		return err
	case <-j.done:
		select {
		case err := <-req.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (j *Journal) writer() {
	defer close(j.done)
	var batch []appendReq
	var buf bytes.Buffer
	for {
		batch = batch[:0]
		select {
		case r := <-j.reqs:
			batch = append(batch, r)
		case <-j.stop:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-j.reqs:
					batch = append(batch, r)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				j.flush(batch, &buf)
			}
			return
		}
	collect:
		for len(batch) < 1024 {
			select {
			case r := <-j.reqs:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		j.flush(batch, &buf)
	}
}

func (j *Journal) flush(batch []appendReq, buf *bytes.Buffer) {
	buf.Reset()
	for _, r := range batch {
		buf.Write(r.line)
	}
	err := j.write(buf.Bytes())
	for _, r := range batch {
		r.done <- err
	}
	if err == nil {
		j.notify()
	}
}

func (j *Journal) write(b []byte) error {
	if j.size > 0 && j.size+int64(len(b)) > SegmentSize {
		j.mu.Lock()
		old := j.f
		next := j.seg + 1
		j.mu.Unlock()
		// A full segment gives back the blocks it did not use.
		if err := old.Truncate(j.size); err != nil {
			return fmt.Errorf("close audit segment: %w", err)
		}
		if err := old.Sync(); err != nil {
			return fmt.Errorf("close audit segment: %w", err)
		}
		if err := old.Close(); err != nil {
			return fmt.Errorf("close audit segment: %w", err)
		}
		if err := j.openSegment(next, false); err != nil {
			return err
		}
	}
	if _, err := j.f.WriteAt(b, j.size); err != nil {
		// Cut what may have been partly written so the segment stays whole.
		j.f.Truncate(j.size)
		return fmt.Errorf("write audit records: %w", err)
	}
	if err := j.sync(); err != nil {
		return fmt.Errorf("sync audit records: %w", err)
	}
	j.mu.Lock()
	j.size += int64(len(b))
	j.mu.Unlock()
	return nil
}

// sync makes the segment's written bytes durable: fdatasync when the
// segment's blocks are preallocated, fsync otherwise.
func (j *Journal) sync() error {
	if j.prealloc {
		return syscall.Fdatasync(int(j.f.Fd()))
	}
	return j.f.Sync()
}

// End is the position just after the last durable record.
func (j *Journal) End() Position {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Position{Segment: j.seg, Offset: j.size}
}

// Read returns up to max records starting at from, and the position after
// the last one returned. It never returns a record that is not yet durable.
func (j *Journal) Read(from Position, max int) ([]*Record, Position, error) {
	end := j.End()
	if from.Segment == 0 {
		segs, err := segments(j.dir)
		if err != nil {
			return nil, from, err
		}
		if len(segs) == 0 {
			return nil, from, nil
		}
		from = Position{Segment: segs[0]}
	}
	var out []*Record
	for len(out) < max && from.Less(end) {
		limit := end.Offset
		if from.Segment < end.Segment {
			limit = -1
		}
		recs, next, err := readSegment(j.dir, from, limit, max-len(out))
		if errors.Is(err, os.ErrNotExist) {
			// A segment removed by retention: go to the next one.
			from = Position{Segment: from.Segment + 1}
			continue
		}
		if err != nil {
			return out, from, err
		}
		out = append(out, recs...)
		if next == from && from.Segment < end.Segment {
			next = Position{Segment: from.Segment + 1}
		}
		if next == from {
			break
		}
		from = next
	}
	return out, from, nil
}

func readSegment(dir string, from Position, limit int64, max int) ([]*Record, Position, error) {
	f, err := os.Open(segmentName(dir, from.Segment))
	if err != nil {
		return nil, from, err
	}
	defer f.Close()
	if _, err := f.Seek(from.Offset, io.SeekStart); err != nil {
		return nil, from, err
	}
	var src io.Reader = f
	if limit >= 0 {
		src = io.LimitReader(f, limit-from.Offset)
	}
	r := bufio.NewReaderSize(src, 1<<16)
	var out []*Record
	pos := from
	for len(out) < max {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 || line[len(line)-1] != '\n' {
			break
		}
		var rec Record
		if uerr := json.Unmarshal(line, &rec); uerr != nil {
			return out, pos, fmt.Errorf("audit segment %d offset %d: %w", pos.Segment, pos.Offset, uerr)
		}
		out = append(out, &rec)
		pos.Offset += int64(len(line))
		if err != nil {
			break
		}
	}
	return out, pos, nil
}

// Notify returns a channel signalled after each durable batch, and a function
// that stops the notifications.
func (j *Journal) Notify() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	j.mu.Lock()
	j.waiters[ch] = struct{}{}
	j.mu.Unlock()
	return ch, func() {
		j.mu.Lock()
		delete(j.waiters, ch)
		j.mu.Unlock()
	}
}

func (j *Journal) notify() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for ch := range j.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Close writes what is queued and closes the journal.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	close(j.stop)
	<-j.done
	return j.f.Close()
}

// Count returns how many records lie between from and the end of the
// journal (the backlog of a reader at from). It counts line ends without
// decoding the records.
func (j *Journal) Count(from Position) (int64, error) {
	end := j.End()
	if from.Segment == 0 {
		segs, err := segments(j.dir)
		if err != nil || len(segs) == 0 {
			return 0, err
		}
		from = Position{Segment: segs[0]}
	}
	var n int64
	buf := make([]byte, 1<<16)
	for seg := from.Segment; seg <= end.Segment; seg++ {
		f, err := os.Open(segmentName(j.dir, seg))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("count audit records: %w", err)
		}
		var off int64
		if seg == from.Segment {
			off = from.Offset
		}
		var src io.Reader = io.NewSectionReader(f, off, 1<<62)
		if seg == end.Segment {
			src = io.NewSectionReader(f, off, max(end.Offset-off, 0))
		}
		for {
			k, rerr := src.Read(buf)
			n += int64(bytes.Count(buf[:k], []byte{'\n'}))
			if rerr != nil {
				break
			}
		}
		f.Close()
	}
	return n, nil
}

// Segments lists the journal's segment numbers, oldest first.
func (j *Journal) Segments() ([]int64, error) { return segments(j.dir) }

// SegmentModTime is when a segment was last written.
func (j *Journal) SegmentModTime(seg int64) (time.Time, error) {
	fi, err := os.Stat(segmentName(j.dir, seg))
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// RemoveSegment deletes a whole segment that every reader has passed. The
// segment being written is never removed; readers positioned in a removed
// segment move on to the next one (see Read).
func (j *Journal) RemoveSegment(seg int64) error {
	j.mu.Lock()
	current := j.seg
	j.mu.Unlock()
	if seg >= current {
		return fmt.Errorf("audit segment %d is still being written", seg)
	}
	if err := os.Remove(segmentName(j.dir, seg)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove audit segment %d: %w", seg, err)
	}
	return nil
}
