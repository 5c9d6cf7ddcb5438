package sse

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage"
)

// Algorithm is the AEAD a layer seals chunks and keys with.
type Algorithm byte

// Algorithms.
const (
	AES256GCM         Algorithm = 1
	XChaCha20Poly1305 Algorithm = 2
)

func (a Algorithm) String() string {
	switch a {
	case AES256GCM:
		return "AES-256-GCM"
	case XChaCha20Poly1305:
		return "XChaCha20-Poly1305"
	}
	return fmt.Sprintf("algorithm(%d)", byte(a))
}

func (a Algorithm) aead(key []byte) (cipher.AEAD, error) {
	switch a {
	case AES256GCM:
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(block)
	case XChaCha20Poly1305:
		return chacha20poly1305.NewX(key)
	}
	return nil, fmt.Errorf("unknown encryption algorithm %d", byte(a))
}

func (a Algorithm) nonceSize() int {
	if a == XChaCha20Poly1305 {
		return chacha20poly1305.NonceSizeX
	}
	return 12
}

const (
	magic        = "TSE1"
	fixedHeader  = 16
	tagSize      = 16
	defaultChunk = 64 << 10
	dekSize      = 32
)

// Config configures a Layer.
type Config struct {
	// Inner is the backend that holds the ciphertext.
	Inner storage.Backend
	// Algorithm seals chunks and data keys (AES256GCM by default).
	Algorithm Algorithm
	// KEK wraps the account key.
	KEK keys.KEK
	// Record names the layer's key record ("service", "infrastructure"):
	// it is kept at storage.ReservedPrefix + "keys/" + Record.
	Record string
	// ChunkSize is the plaintext size of a chunk (a power of two, 4 KiB to
	// 16 MiB; default 64 KiB).
	ChunkSize int
	// KeyCacheTTL, if positive, keeps the unwrapped account key that long
	// before asking the KEK again. Zero asks on every call, so revocation
	// takes effect at once; a remote key vault may want a few seconds.
	KeyCacheTTL time.Duration
	// Mixed lets the layer read objects stored without its encryption (an
	// account turning infrastructure encryption on or off while a converter
	// rewrites its objects): an object whose header is not this layer's is
	// passed through as it is stored. Stat and List then read each
	// object's header.
	Mixed bool
	// WriteThrough stores writes without this layer's encryption (an
	// account turning the layer off); it implies Mixed.
	WriteThrough bool
	// Now is the clock (tests); time.Now by default.
	Now func() time.Time
}

// Layer is an encrypting storage.Backend over Config.Inner.
type Layer struct {
	inner     storage.Backend
	alg       Algorithm
	chunkLog  uint8
	chunk     int
	recName   string
	cacheTTL  time.Duration
	now       func() time.Time
	headerLen int

	mixed, writeThrough bool

	mu       sync.Mutex
	kek      keys.KEK
	rec      record
	keyID    [8]byte
	cached   []byte
	cachedAt time.Time
}

var _ storage.Backend = (*Layer)(nil)

// record is the layer's key record: the account key wrapped by one or two
// KEKs (two only while the account switches keys).
type record struct {
	Format    int    `json:"format"`
	Algorithm string `json:"algorithm"`
	KeyID     string `json:"key_id"`
	// ChunkLog is log2 of the chunk size, fixed for the account's life
	// (sizes in listings are computed from it).
	ChunkLog uint8  `json:"chunk_log"`
	Wraps    []wrap `json:"wraps"`
	Created  int64  `json:"created"`
}

type wrap struct {
	KEK     string `json:"kek"`
	Wrapped []byte `json:"wrapped"`
	At      int64  `json:"at"`
}

// Open opens the layer, creating its account key on first use.
func Open(ctx context.Context, cfg Config) (*Layer, error) {
	if cfg.Inner == nil || cfg.KEK == nil || cfg.Record == "" {
		return nil, errors.New("sse: Inner, KEK and Record are required")
	}
	if cfg.Algorithm == 0 {
		cfg.Algorithm = AES256GCM
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = defaultChunk
	}
	log := 0
	for 1<<log < cfg.ChunkSize {
		log++
	}
	if 1<<log != cfg.ChunkSize || log < 12 || log > 24 {
		return nil, fmt.Errorf("sse: chunk size %d is not a power of two from 4 KiB to 16 MiB", cfg.ChunkSize)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Layer{
		inner: cfg.Inner, alg: cfg.Algorithm, chunkLog: uint8(log), chunk: cfg.ChunkSize,
		recName: storage.ReservedPrefix + "keys/" + cfg.Record, cacheTTL: cfg.KeyCacheTTL, now: cfg.Now,
		kek: cfg.KEK, mixed: cfg.Mixed || cfg.WriteThrough, writeThrough: cfg.WriteThrough,
	}
	l.headerLen = fixedHeader + l.alg.nonceSize() + dekSize + tagSize
	if err := l.load(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Layer) load(ctx context.Context) error {
	rec, err := l.readRecord(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		return l.create(ctx)
	}
	if err != nil {
		return err
	}
	if rec.Algorithm != l.alg.String() {
		return fmt.Errorf("sse: key record %s is for %s, not %s", l.recName, rec.Algorithm, l.alg)
	}
	id, err := hex.DecodeString(rec.KeyID)
	if err != nil || len(id) != 8 {
		return fmt.Errorf("sse: key record %s has a bad key id", l.recName)
	}
	copy(l.keyID[:], id)
	if rec.ChunkLog >= 12 && rec.ChunkLog <= 24 {
		l.chunkLog, l.chunk = rec.ChunkLog, 1<<rec.ChunkLog
	}
	l.rec = rec
	if _, ok := l.wrapOf(l.kek.ID()); !ok {
		return fmt.Errorf("sse: the account key of %s is wrapped by %s, not by the configured key %s",
			l.recName, wrapNames(rec.Wraps), l.kek.ID())
	}
	return nil
}

func wrapNames(ws []wrap) string {
	var b bytes.Buffer
	for i, w := range ws {
		if i > 0 {
			b.WriteString(" and ")
		}
		b.WriteString(w.KEK)
	}
	return b.String()
}

func (l *Layer) readRecord(ctx context.Context) (record, error) {
	var rec record
	r, err := l.inner.Get(ctx, l.recName, 0, -1)
	if err != nil {
		return rec, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return rec, fmt.Errorf("read key record %s: %w", l.recName, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode key record %s: %w", l.recName, err)
	}
	return rec, nil
}

func (l *Layer) writeRecord(ctx context.Context, rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := l.inner.Put(ctx, l.recName, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("write key record %s: %w", l.recName, err)
	}
	return nil
}

func (l *Layer) create(ctx context.Context) error {
	key := keys.NewDEK()
	rand.Read(l.keyID[:])
	wrapped, err := l.kek.Wrap(ctx, key)
	if err != nil {
		return fmt.Errorf("wrap the new account key with %s: %w", l.kek.ID(), err)
	}
	now := l.now().UnixMilli()
	rec := record{Format: 1, Algorithm: l.alg.String(), KeyID: hex.EncodeToString(l.keyID[:]), Created: now, ChunkLog: l.chunkLog,
		Wraps: []wrap{{KEK: l.kek.ID(), Wrapped: wrapped, At: now}}}
	if err := l.writeRecord(ctx, rec); err != nil {
		return err
	}
	l.rec = rec
	return nil
}

func (l *Layer) wrapOf(kekID string) (wrap, bool) {
	for _, w := range l.rec.Wraps {
		if w.KEK == kekID {
			return w, true
		}
	}
	return wrap{}, false
}

// accountKey unwraps the account key through the KEK: this is where a
// disabled or revoked key makes every read and write fail closed.
func (l *Layer) accountKey(ctx context.Context) ([]byte, error) {
	l.mu.Lock()
	kek := l.kek
	w, ok := l.wrapOf(kek.ID())
	if l.cacheTTL > 0 && l.cached != nil && l.now().Sub(l.cachedAt) < l.cacheTTL {
		k := l.cached
		l.mu.Unlock()
		return k, nil
	}
	l.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("storage account key: no wrap by %s: %w", kek.ID(), keys.ErrKeyNotFound)
	}
	key, err := kek.Unwrap(ctx, w.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("storage account key: %w", err)
	}
	if l.cacheTTL > 0 {
		l.mu.Lock()
		l.cached, l.cachedAt = key, l.now()
		l.mu.Unlock()
	}
	return key, nil
}

// KeyInfo describes the layer's keys (never their material).
type KeyInfo struct {
	Algorithm string
	KeyID     string
	KEK       string
	// Wrapped is the account key's wrapped form (its KEK version is inside).
	Wrapped   []byte
	WrappedAt time.Time
}

// KeyInfo returns the layer's current key description.
func (l *Layer) KeyInfo() KeyInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, _ := l.wrapOf(l.kek.ID())
	return KeyInfo{Algorithm: l.alg.String(), KeyID: l.rec.KeyID, KEK: l.kek.ID(), Wrapped: w.Wrapped, WrappedAt: time.UnixMilli(w.At)}
}

// Rewrap wraps the account key again with kek, which becomes the layer's
// KEK: rotation (the same key, a new version) or a switch between platform
// and customer-managed keys. No object is rewritten. It is AddWrap then
// Retain; a caller that keeps the choice of key elsewhere (the account's
// settings) commits that choice between the two, so that a crash at any
// point leaves a record that the configured key opens.
func (l *Layer) Rewrap(ctx context.Context, kek keys.KEK) error {
	if err := l.AddWrap(ctx, kek); err != nil {
		return err
	}
	return l.Retain(ctx, kek)
}

// AddWrap adds (or, for the same key, replaces) a wrap of the account key
// by kek, keeping the other wraps, in one atomic record write.
func (l *Layer) AddWrap(ctx context.Context, kek keys.KEK) error {
	key, err := l.accountKey(ctx)
	if err != nil {
		return err
	}
	wrapped, err := kek.Wrap(ctx, key)
	if err != nil {
		return fmt.Errorf("wrap the account key with %s: %w", kek.ID(), err)
	}
	// The new wrap must open before anything relies on it.
	if back, err := kek.Unwrap(ctx, wrapped); err != nil || !bytes.Equal(back, key) {
		return fmt.Errorf("the account key wrapped by %s does not unwrap: %v", kek.ID(), err)
	}
	l.mu.Lock()
	rec := l.rec
	l.mu.Unlock()
	ws := []wrap{}
	for _, w := range rec.Wraps {
		if w.KEK != kek.ID() {
			ws = append(ws, w)
		}
	}
	rec.Wraps = append(ws, wrap{KEK: kek.ID(), Wrapped: wrapped, At: l.now().UnixMilli()})
	if err := l.writeRecord(ctx, rec); err != nil {
		return err
	}
	l.mu.Lock()
	l.rec, l.cached = rec, nil
	l.mu.Unlock()
	return nil
}

// Retain makes kek the layer's KEK and drops every other wrap.
func (l *Layer) Retain(ctx context.Context, kek keys.KEK) error {
	l.mu.Lock()
	rec := l.rec
	l.mu.Unlock()
	var keep []wrap
	for _, w := range rec.Wraps {
		if w.KEK == kek.ID() {
			keep = append(keep, w)
		}
	}
	if len(keep) == 0 {
		return fmt.Errorf("the account key has no wrap by %s: %w", kek.ID(), keys.ErrKeyNotFound)
	}
	if len(keep) != len(rec.Wraps) {
		rec.Wraps = keep
		if err := l.writeRecord(ctx, rec); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.rec, l.kek, l.cached = rec, kek, nil
	l.mu.Unlock()
	return nil
}

// Wraps names the KEKs the account key is wrapped by (two only while the
// account switches keys).
func (l *Layer) Wraps() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, w := range l.rec.Wraps {
		out = append(out, w.KEK)
	}
	return out
}

func (l *Layer) reserved(name string) bool { return name == l.recName }

func (l *Layer) check(name string) error {
	if l.reserved(name) {
		return fmt.Errorf("%w: %q is the account's key record", storage.ErrInvalidName, name)
	}
	return nil
}

// Put encrypts r into the object name.
func (l *Layer) Put(ctx context.Context, name string, r io.Reader) error {
	if err := l.check(name); err != nil {
		return err
	}
	if l.writeThrough {
		return l.inner.Put(ctx, name, r)
	}
	akey, err := l.accountKey(ctx)
	if err != nil {
		return err
	}
	header, dek, err := l.newHeader(akey, name)
	if err != nil {
		return err
	}
	aead, err := l.alg.aead(dek)
	if err != nil {
		return err
	}
	p := newBufPipe()
	p.run(func() error { return seal(r, aead, header, l.chunk, p) })
	err = l.inner.Put(ctx, name, p)
	// The producer must be done with r before Put returns.
	p.Close()
	return err
}

func (l *Layer) newHeader(akey []byte, name string) ([]byte, []byte, error) {
	kaead, err := l.alg.aead(akey)
	if err != nil {
		return nil, nil, err
	}
	ns := l.alg.nonceSize()
	h := make([]byte, fixedHeader, l.headerLen)
	copy(h, magic)
	h[4] = byte(l.alg)
	h[5] = l.chunkLog
	binary.BigEndian.PutUint16(h[6:], uint16(ns+dekSize+tagSize))
	copy(h[8:16], l.keyID[:])
	nonce := make([]byte, ns)
	rand.Read(nonce)
	dek := keys.NewDEK()
	h = append(h, nonce...)
	h = kaead.Seal(h, nonce, dek, wrapAAD(h[:fixedHeader], name))
	return h, dek, nil
}

func wrapAAD(fixed []byte, name string) []byte {
	return append(append([]byte(nil), fixed...), name...)
}

// parsed is an object's opened header.
type parsed struct {
	header []byte
	aead   cipher.AEAD
	chunk  int
}

func (l *Layer) openHeader(ctx context.Context, name string, h []byte) (parsed, error) {
	var p parsed
	if len(h) < fixedHeader || string(h[:4]) != magic {
		return p, fmt.Errorf("%s: not an encrypted object: %w", name, storage.ErrCorrupt)
	}
	alg := Algorithm(h[4])
	if alg != l.alg {
		return p, fmt.Errorf("%s: encrypted with %s, this layer uses %s: %w", name, alg, l.alg, storage.ErrCorrupt)
	}
	if h[5] < 12 || h[5] > 24 {
		return p, fmt.Errorf("%s: bad chunk size: %w", name, storage.ErrCorrupt)
	}
	wl := int(binary.BigEndian.Uint16(h[6:]))
	ns := l.alg.nonceSize()
	if wl != ns+dekSize+tagSize || len(h) < fixedHeader+wl {
		return p, fmt.Errorf("%s: truncated header: %w", name, storage.ErrCorrupt)
	}
	if !bytes.Equal(h[8:16], l.keyID[:]) {
		return p, fmt.Errorf("%s: encrypted under another account key: %w", name, storage.ErrCorrupt)
	}
	akey, err := l.accountKey(ctx)
	if err != nil {
		return p, err
	}
	kaead, err := l.alg.aead(akey)
	if err != nil {
		return p, err
	}
	h = h[:fixedHeader+wl]
	dek, err := kaead.Open(nil, h[fixedHeader:fixedHeader+ns], h[fixedHeader+ns:], wrapAAD(h[:fixedHeader], name))
	if err != nil {
		return p, fmt.Errorf("%s: the data key does not open: %w", name, storage.ErrCorrupt)
	}
	aead, err := l.alg.aead(dek)
	if err != nil {
		return p, err
	}
	return parsed{header: h, aead: aead, chunk: 1 << h[5]}, nil
}

// plainSize is the plaintext size of a stored object of the given size.
func plainSize(stored int64, headerLen, chunk int) (int64, bool) {
	s := stored - int64(headerLen)
	if s < tagSize {
		return 0, false
	}
	per := int64(chunk + tagSize)
	chunks := (s + per - 1) / per
	n := s - chunks*tagSize
	if n < 0 {
		return 0, false
	}
	return n, true
}

func chunkNonce(dst []byte, i int64, final bool) []byte {
	for j := range dst {
		dst[j] = 0
	}
	if final {
		dst[0] = 1
	}
	binary.BigEndian.PutUint64(dst[len(dst)-8:], uint64(i))
	return dst
}

// Get decrypts the range [offset, offset+length) of name.
func (l *Layer) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := l.check(name); err != nil {
		return nil, err
	}
	if offset < 0 {
		offset = 0
	}
	if l.mixed {
		mine, err := l.isMine(ctx, name)
		if err != nil {
			return nil, err
		}
		if !mine {
			return l.inner.Get(ctx, name, offset, length)
		}
	}
	if offset == 0 {
		want := int64(-1)
		if length >= 0 {
			// Header and the chunks the range touches, with the configured
			// chunk size; a different size in the header is handled below.
			chunks := (length + int64(l.chunk) - 1) / int64(l.chunk)
			want = int64(l.headerLen) + max(chunks, 1)*int64(l.chunk+tagSize)
		}
		r, err := l.inner.Get(ctx, name, 0, want)
		if err != nil {
			return nil, err
		}
		h := make([]byte, l.headerLen)
		if _, err := io.ReadFull(r, h); err != nil {
			r.Close()
			return nil, fmt.Errorf("%s: read header: %v: %w", name, err, storage.ErrCorrupt)
		}
		p, err := l.openHeader(ctx, name, h)
		if err != nil {
			r.Close()
			return nil, err
		}
		if p.chunk != l.chunk && length >= 0 {
			r.Close()
			return l.getRange(ctx, name, p, 0, length)
		}
		if want >= 0 {
			want -= int64(l.headerLen)
		}
		return stream(r, p, openRange{name: name, remaining: length, toEnd: length < 0, want: want}), nil
	}
	r, err := l.inner.Get(ctx, name, 0, int64(l.headerLen))
	if err != nil {
		return nil, err
	}
	h, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return nil, err
	}
	p, err := l.openHeader(ctx, name, h)
	if err != nil {
		return nil, err
	}
	return l.getRange(ctx, name, p, offset, length)
}

func (l *Layer) getRange(ctx context.Context, name string, p parsed, offset, length int64) (io.ReadCloser, error) {
	c := int64(p.chunk)
	per := c + tagSize
	first := offset / c
	want := int64(-1)
	if length >= 0 {
		last := (offset + max(length, 1) - 1) / c
		want = (last - first + 1) * per
	}
	r, err := l.inner.Get(ctx, name, int64(len(p.header))+first*per, want)
	if err != nil {
		return nil, err
	}
	rg := openRange{name: name, first: first, skip: offset - first*c, remaining: length, toEnd: length < 0, want: want}
	if first > 0 {
		rg.prevCheck = func() error { return l.checkFinal(ctx, name, p, first-1) }
	}
	return stream(r, p, rg), nil
}

func stream(r io.ReadCloser, p parsed, rg openRange) io.ReadCloser {
	bp := newBufPipe()
	bp.run(func() error { return open(r, p, rg, bp) })
	return bp
}

// checkFinal verifies that chunk i is the object's last: a read that starts
// past the end must not mistake a truncated object for a short one.
func (l *Layer) checkFinal(ctx context.Context, name string, p parsed, i int64) error {
	per := int64(p.chunk) + tagSize
	r, err := l.inner.Get(ctx, name, int64(len(p.header))+i*per, per)
	if err != nil {
		return err
	}
	defer r.Close()
	ct, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	nonce := make([]byte, p.aead.NonceSize())
	if _, err := p.aead.Open(nil, chunkNonce(nonce, i, true), ct, p.header); err != nil {
		return fmt.Errorf("%s: truncated: %w", name, storage.ErrCorrupt)
	}
	return nil
}

// Stat describes an object with its plaintext size. It needs the key, as
// Get Blob Properties does in Azure.
func (l *Layer) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := l.check(name); err != nil {
		return storage.ObjectInfo{}, err
	}
	if _, err := l.accountKey(ctx); err != nil {
		return storage.ObjectInfo{}, err
	}
	oi, err := l.inner.Stat(ctx, name)
	if err != nil {
		return oi, err
	}
	if l.mixed {
		if mine, err := l.isMine(ctx, name); err != nil || !mine {
			return oi, err
		}
	}
	n, ok := plainSize(oi.Size, l.headerLen, l.chunk)
	if !ok {
		return oi, fmt.Errorf("%s: stored object is too short: %w", name, storage.ErrCorrupt)
	}
	oi.Size = n
	return oi, nil
}

// isMine reports whether the stored object has this layer's header.
func (l *Layer) isMine(ctx context.Context, name string) (bool, error) {
	r, err := l.inner.Get(ctx, name, 0, 5)
	if err != nil {
		return false, err
	}
	defer r.Close()
	var h [5]byte
	n, _ := io.ReadFull(r, h[:])
	return n == 5 && string(h[:4]) == magic && Algorithm(h[4]) == l.alg, nil
}

// Encrypted reports whether the stored object is in this layer's format
// (the account's converter asks it object by object).
func (l *Layer) Encrypted(ctx context.Context, name string) (bool, error) { return l.isMine(ctx, name) }

// RecordName is the name of the layer's key record in the backend below.
func (l *Layer) RecordName() string { return l.recName }

// Delete removes an object; it needs no key.
func (l *Layer) Delete(ctx context.Context, name string) error {
	if err := l.check(name); err != nil {
		return err
	}
	return l.inner.Delete(ctx, name)
}

// List lists objects with their plaintext sizes, without the key record.
func (l *Layer) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return l.inner.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		if l.reserved(oi.Name) {
			return nil
		}
		if l.mixed {
			if mine, err := l.isMine(ctx, oi.Name); err != nil || !mine {
				return fn(oi)
			}
		}
		if n, ok := plainSize(oi.Size, l.headerLen, l.chunk); ok {
			oi.Size = n
		}
		return fn(oi)
	})
}
