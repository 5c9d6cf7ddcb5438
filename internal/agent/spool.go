package agent

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// logSpool keeps the log streams of the instance on its disk until the
// control plane has acknowledged them: process output (driver stdout,
// stderr, log4j), init script output and task output. A stream is an
// append-only file; the reporter sends what lies past the acknowledged
// offset, so nothing is lost when a report fails or the control plane
// restarts.
//
// With local disk encryption the spool is part of the node's encrypted
// scratch area: every write is sealed with AES-256-GCM under the node key,
// which the agent makes at start and keeps only in memory, so the files are
// unreadable to anyone reading the disk, and once the agent is gone.
type logSpool struct {
	dir string

	mu      sync.Mutex
	streams map[string]*stream
	aead    cipher.AEAD // nil: plaintext
}

type stream struct {
	name  string
	path  string
	f     *os.File
	size  int64 // plaintext bytes written
	acked int64
	// Sealed streams: where each sealed record's plaintext starts, and
	// where the record is in the file.
	records []sealedRecord
	fileEnd int64
}

type sealedRecord struct {
	plainOff int64
	fileOff  int64
	plainLen int
}

func newLogSpool(dir string) (*logSpool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &logSpool{dir: dir, streams: map[string]*stream{}}, nil
}

// encrypt turns sealing on for streams opened from now on, with a fresh
// node key held only in memory.
func (s *logSpool) encrypt() error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.aead = aead
	s.mu.Unlock()
	return nil
}

func (s *logSpool) encrypted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aead != nil
}

// reset forgets every stream and removes their files (the instance is
// being cleaned for another cluster); sealing goes off until encrypt.
func (s *logSpool) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		st.f.Close()
	}
	s.streams = map[string]*stream{}
	s.aead = nil
	os.RemoveAll(s.dir)
	os.MkdirAll(s.dir, 0o700)
}

// validStream reports whether name is a relative slash path without dot
// segments.
func validStream(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || len(name) > 512 {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func (s *logSpool) open(name string) (*stream, error) {
	if st, ok := s.streams[name]; ok {
		return st, nil
	}
	if !validStream(name) {
		return nil, fmt.Errorf("invalid log stream name %q", name)
	}
	p := filepath.Join(s.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	st := &stream{name: name, path: p, f: f}
	s.streams[name] = st
	return st, nil
}

// Write appends data to a stream.
func (s *logSpool) write(name string, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.open(name)
	if err != nil {
		return err
	}
	if s.aead == nil {
		if _, err := st.f.WriteAt(data, st.size); err != nil {
			return err
		}
		st.size += int64(len(data))
		return nil
	}
	// A sealed record: length, nonce, ciphertext and tag. The stream name
	// and offset are the additional data, so records cannot be moved.
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	sealed := s.aead.Seal(nil, nonce, data, recordAAD(name, st.size))
	rec := make([]byte, 4, 4+len(nonce)+len(sealed))
	binary.BigEndian.PutUint32(rec, uint32(len(nonce)+len(sealed)))
	rec = append(rec, nonce...)
	rec = append(rec, sealed...)
	if _, err := st.f.WriteAt(rec, st.fileEnd); err != nil {
		return err
	}
	st.records = append(st.records, sealedRecord{plainOff: st.size, fileOff: st.fileEnd, plainLen: len(data)})
	st.fileEnd += int64(len(rec))
	st.size += int64(len(data))
	return nil
}

func recordAAD(name string, off int64) []byte {
	b := make([]byte, 8, 8+len(name))
	binary.BigEndian.PutUint64(b, uint64(off))
	return append(b, name...)
}

// writer returns an io.Writer appending to a stream (process output).
func (s *logSpool) writer(name string) io.Writer {
	return spoolWriter{s: s, name: name}
}

type spoolWriter struct {
	s    *logSpool
	name string
}

func (w spoolWriter) Write(p []byte) (int, error) {
	if err := w.s.write(w.name, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// readAt returns up to n plaintext bytes of a stream from off.
func (s *logSpool) readAt(st *stream, off int64, n int) ([]byte, error) {
	if off >= st.size {
		return nil, nil
	}
	n = int(min(int64(n), st.size-off))
	if s.aead == nil && len(st.records) == 0 {
		buf := make([]byte, n)
		m, err := st.f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return buf[:m], nil
	}
	i := sort.Search(len(st.records), func(i int) bool {
		r := st.records[i]
		return r.plainOff+int64(r.plainLen) > off
	})
	var out []byte
	for ; i < len(st.records) && len(out) < n; i++ {
		r := st.records[i]
		var hdr [4]byte
		if _, err := st.f.ReadAt(hdr[:], r.fileOff); err != nil {
			return nil, err
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := st.f.ReadAt(body, r.fileOff+4); err != nil {
			return nil, err
		}
		ns := s.aead.NonceSize()
		plain, err := s.aead.Open(nil, body[:ns], body[ns:], recordAAD(st.name, r.plainOff))
		if err != nil {
			return nil, fmt.Errorf("open sealed log record of %s: %w", st.name, err)
		}
		from := max(0, int(off-r.plainOff))
		out = append(out, plain[from:]...)
		off = r.plainOff + int64(r.plainLen)
	}
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// perStreamChunk bounds one stream's share of a report.
const perStreamChunk = 512 << 10

// pending returns the unacknowledged data of every stream, up to max bytes
// in all.
func (s *logSpool) pending(maxBytes int) []wire.LogChunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.streams))
	for n := range s.streams {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []wire.LogChunk
	left := maxBytes
	for _, n := range names {
		st := s.streams[n]
		if st.acked >= st.size || left <= 0 {
			continue
		}
		data, err := s.readAt(st, st.acked, min(left, perStreamChunk))
		if err != nil || len(data) == 0 {
			continue
		}
		out = append(out, wire.LogChunk{Stream: n, Offset: st.acked, Data: data})
		left -= len(data)
	}
	return out
}

func (s *logSpool) hasPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		if st.acked < st.size {
			return true
		}
	}
	return false
}

// ack records what the control plane has kept.
func (s *logSpool) ack(offsets map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, off := range offsets {
		if st, ok := s.streams[n]; ok {
			// The control plane may know less than we sent (it lost a
			// write): resend from there.
			st.acked = min(off, st.size)
		}
	}
}

// read returns a whole stream (tests, local readers).
func (s *logSpool) read(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	return s.readAt(st, 0, int(st.size))
}
