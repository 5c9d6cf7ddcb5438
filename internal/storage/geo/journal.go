package geo

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/atomicfile"
)

// entry is one journaled change: the object named changed at time At.
type entry struct {
	Seq  uint64
	At   time.Time
	Name string
	// done is false while the primary write of an entry appended in this
	// process is still running; the shipper stops before such an entry.
	done bool
}

// journal is the durable, append-only list of changes to ship: segment
// files of length-prefixed, checksummed records, and a cursor file with the
// last shipped sequence number. Segments wholly shipped are removed.
type journal struct {
	dir string

	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	segSize int64
	segMax  int64
	next    uint64
	pending []*entry // unshipped, in order
	shipped uint64
	written int64 // bytes appended to the current segment file
	synced  int64 // bytes known durable
	seg     string

	syncMu sync.Mutex
	wake   chan struct{}
}

const segmentSize = 64 << 20

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create journal directory: %w", err)
	}
	j := &journal{dir: dir, segMax: segmentSize, wake: make(chan struct{}, 1), next: 1}
	if b, err := os.ReadFile(filepath.Join(dir, "cursor")); err == nil {
		var c struct {
			Shipped uint64 `json:"shipped"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("decode journal cursor: %w", err)
		}
		j.shipped = c.Shipped
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	j.next = j.shipped + 1
	segs, err := j.segments()
	if err != nil {
		return nil, err
	}
	for i, s := range segs {
		last := i == len(segs)-1
		if err := j.load(s, last); err != nil {
			return nil, err
		}
	}
	if err := j.newSegment(); err != nil {
		return nil, err
	}
	j.gc()
	return j, nil
}

func (j *journal) segments() ([]string, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, err
	}
	var segs []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".seg") {
			segs = append(segs, e.Name())
		}
	}
	sort.Strings(segs)
	return segs, nil
}

// load reads a segment's records; a torn record at the end of the last
// segment (a crash mid-append) is cut off.
func (j *journal) load(name string, last bool) error {
	path := filepath.Join(j.dir, name)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var good int64
	for {
		e, n, err := readRecord(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			if !last {
				return fmt.Errorf("journal segment %s is damaged at byte %d: %w", name, good, err)
			}
			if terr := os.Truncate(path, good); terr != nil {
				return terr
			}
			break
		}
		good += n
		if e.Seq >= j.next {
			j.next = e.Seq + 1
		}
		if e.Seq > j.shipped {
			e.done = true
			j.pending = append(j.pending, e)
		}
	}
	return nil
}

func readRecord(r *bufio.Reader) (*entry, int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, 0, errors.New("torn record header")
		}
		return nil, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 16 || n > 1<<20 {
		return nil, 0, errors.New("bad record length")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, 0, errors.New("torn record")
	}
	if crc32.ChecksumIEEE(body) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, 0, errors.New("record checksum mismatch")
	}
	return &entry{
		Seq:  binary.BigEndian.Uint64(body),
		At:   time.Unix(0, int64(binary.BigEndian.Uint64(body[8:]))),
		Name: string(body[16:]),
	}, int64(8 + n), nil
}

func (j *journal) newSegment() error {
	if j.f != nil {
		j.w.Flush()
		j.f.Sync()
		j.f.Close()
	}
	j.seg = fmt.Sprintf("%020d.seg", j.next)
	f, err := os.OpenFile(filepath.Join(j.dir, j.seg), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open journal segment: %w", err)
	}
	if err := atomicfile.SyncDir(j.dir); err != nil {
		f.Close()
		return err
	}
	st, _ := f.Stat()
	j.f, j.w, j.segSize = f, bufio.NewWriter(f), st.Size()
	j.written, j.synced = 0, 0
	return nil
}

// append journals a change durably and returns its entry, not yet done.
func (j *journal) append(name string, at time.Time) (*entry, error) {
	j.mu.Lock()
	e := &entry{Seq: j.next, At: at, Name: name}
	body := make([]byte, 16+len(name))
	binary.BigEndian.PutUint64(body, e.Seq)
	binary.BigEndian.PutUint64(body[8:], uint64(at.UnixNano()))
	copy(body[16:], name)
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(body)))
	binary.BigEndian.PutUint32(hdr[4:], crc32.ChecksumIEEE(body))
	if j.segSize > j.segMax {
		if err := j.newSegment(); err != nil {
			j.mu.Unlock()
			return nil, err
		}
	}
	j.w.Write(hdr[:])
	if _, err := j.w.Write(body); err != nil {
		j.mu.Unlock()
		return nil, fmt.Errorf("append to the geo-replication journal: %w", err)
	}
	j.next++
	j.segSize += int64(8 + len(body))
	j.written += int64(8 + len(body))
	mine, seg := j.written, j.seg
	j.pending = append(j.pending, e)
	j.mu.Unlock()
	if err := j.sync(seg, mine); err != nil {
		j.mu.Lock()
		j.remove(e)
		j.mu.Unlock()
		return nil, err
	}
	return e, nil
}

// sync makes the journal durable up to mine; concurrent appenders share
// one fsync (group commit).
func (j *journal) sync(seg string, mine int64) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	if j.seg != seg || j.synced >= mine {
		// Another appender's sync, or the segment's rotation, covered it.
		j.mu.Unlock()
		return nil
	}
	if err := j.w.Flush(); err != nil {
		j.mu.Unlock()
		return fmt.Errorf("write the geo-replication journal: %w", err)
	}
	upto, f := j.written, j.f
	j.mu.Unlock()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync the geo-replication journal: %w", err)
	}
	j.mu.Lock()
	if j.f == f && upto > j.synced {
		j.synced = upto
	}
	j.mu.Unlock()
	return nil
}

func (j *journal) remove(e *entry) {
	for i, p := range j.pending {
		if p == e {
			j.pending = append(j.pending[:i], j.pending[i+1:]...)
			return
		}
	}
}

// complete marks an entry's primary write as finished.
func (j *journal) complete(e *entry) {
	j.mu.Lock()
	e.done = true
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// batch returns up to max waiting entries, stopping at the first one whose
// primary write is still running.
func (j *journal) batch(max int) []*entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*entry
	for _, e := range j.pending {
		if !e.done || len(out) == max {
			break
		}
		out = append(out, e)
	}
	return out
}

// doneAfter returns the names of the entries after seq whose primary
// writes are done.
func (j *journal) doneAfter(seq uint64) []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []string
	for _, e := range j.pending {
		if e.Seq > seq && e.done {
			out = append(out, e.Name)
		}
	}
	return out
}

// shippedUpTo records that every entry up to seq is in the secondary.
func (j *journal) shippedUpTo(seq uint64) error {
	b, _ := json.Marshal(map[string]uint64{"shipped": seq})
	if err := atomicfile.Write(filepath.Join(j.dir, "cursor"), b, 0o600); err != nil {
		return fmt.Errorf("save the journal cursor: %w", err)
	}
	j.mu.Lock()
	j.shipped = seq
	i := 0
	for i < len(j.pending) && j.pending[i].Seq <= seq {
		i++
	}
	j.pending = append([]*entry(nil), j.pending[i:]...)
	j.mu.Unlock()
	j.gc()
	return nil
}

// gc removes segments whose every record is shipped: a segment named by its
// first sequence number is done when the next segment starts at or below
// shipped+1.
func (j *journal) gc() {
	segs, err := j.segments()
	if err != nil {
		return
	}
	j.mu.Lock()
	shipped, cur := j.shipped, j.seg
	j.mu.Unlock()
	for i := 0; i+1 < len(segs); i++ {
		if segs[i] == cur {
			continue
		}
		nextFirst, err := strconv.ParseUint(strings.TrimSuffix(segs[i+1], ".seg"), 10, 64)
		if err == nil && nextFirst <= shipped+1 {
			os.Remove(filepath.Join(j.dir, segs[i]))
		}
	}
}

// backlog returns how many entries wait and the time of the oldest.
func (j *journal) backlog() (int, time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.pending) == 0 {
		return 0, time.Time{}
	}
	return len(j.pending), j.pending[0].At
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	j.w.Flush()
	err := j.f.Close()
	j.f = nil
	return err
}
