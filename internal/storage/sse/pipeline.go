package sse

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/tandemdata/tandem/internal/storage"
)

// Chunks are sealed and opened in batches, each batch's chunks in parallel
// on every core, by a goroutine that runs ahead of its consumer by up to
// pipeDepth batches: so encryption overlaps the write to the layer below
// (and, on reads, the read from it) instead of adding to it.
const (
	batchChunks = 16
	pipeDepth   = 2
)

var errReaderClosed = errors.New("reader closed")

// bufPipe hands filled buffers from a producer goroutine to a reader.
type bufPipe struct {
	ch        chan []byte
	free      chan []byte // buffers the reader is done with, for reuse
	whole     []byte      // the buffer cur was cut from
	done      chan struct{}
	err       error // the producer's result, set before ch is closed
	cur       []byte
	closeOnce sync.Once
	finished  chan struct{}
}

func newBufPipe() *bufPipe {
	return &bufPipe{ch: make(chan []byte, pipeDepth), free: make(chan []byte, pipeDepth+2), done: make(chan struct{}), finished: make(chan struct{})}
}

// run starts the producer; its error ends the stream.
func (p *bufPipe) run(produce func() error) {
	go func() {
		err := produce()
		p.err = err
		close(p.ch)
		close(p.finished)
	}()
}

func (p *bufPipe) send(b []byte) bool {
	select {
	case p.ch <- b:
		return true
	case <-p.done:
		return false
	}
}

// pooledSize is the size of the buffers shared by every stream: a batch
// of default-size chunks with their tags (other sizes are allocated).
const pooledSize = (batchChunks + 1) * (defaultChunk + tagSize)

var pool = sync.Pool{New: func() any { b := make([]byte, pooledSize); return &b }}

func getBuf(n int) []byte {
	if n > pooledSize {
		return make([]byte, n)
	}
	return (*pool.Get().(*[]byte))[:n]
}

func putBuf(b []byte) {
	if cap(b) == pooledSize {
		b = b[:cap(b)]
		pool.Put(&b)
	}
}

// buffer returns a buffer of n bytes, reusing one the reader is done with.
func (p *bufPipe) buffer(n int) []byte {
	select {
	case b := <-p.free:
		if cap(b) >= n {
			return b[:n]
		}
		putBuf(b)
	default:
	}
	return getBuf(n)
}

// release returns the pipe's spare buffers to the shared pool; the
// producer has finished.
func (p *bufPipe) release() {
	for {
		select {
		case b := <-p.free:
			putBuf(b)
		default:
			return
		}
	}
}

// fill makes cur the next buffer, recycling the one consumed; it returns
// io.EOF or the producer's error at the end.
func (p *bufPipe) fill() error {
	for len(p.cur) == 0 {
		if p.whole != nil {
			select {
			case p.free <- p.whole[:cap(p.whole)]:
			default:
				putBuf(p.whole)
			}
			p.whole = nil
		}
		buf, ok := <-p.ch
		if !ok {
			p.release()
			if p.err != nil {
				return p.err
			}
			return io.EOF
		}
		p.cur, p.whole = buf, buf
	}
	return nil
}

func (p *bufPipe) Read(b []byte) (int, error) {
	if err := p.fill(); err != nil {
		return 0, err
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// WriteTo hands whole buffers to w (io.Copy prefers it), saving a copy
// through a small buffer on the hot path of every get and put.
func (p *bufPipe) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if err := p.fill(); err != nil {
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
		n, err := w.Write(p.cur)
		total += int64(n)
		p.cur = p.cur[n:]
		if err != nil {
			return total, err
		}
	}
}

// Close stops the producer and waits for it.
func (p *bufPipe) Close() error {
	p.closeOnce.Do(func() { close(p.done) })
	<-p.finished
	return nil
}

// parallel runs fn(i) for i in [0, n) on up to GOMAXPROCS goroutines.
func parallel(n int, fn func(i int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	if w <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	for g := 0; g < w; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += w {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func readChunk(src io.Reader, buf []byte) (int, bool, error) {
	n, err := io.ReadFull(src, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return n, true, nil
	}
	return n, false, err
}

// seal produces the header and the sealed chunks of src into p.
func seal(src io.Reader, aead cipher.AEAD, header []byte, chunk int, p *bufPipe) error {
	// A copy: buffers sent are recycled, and header stays the chunks' AAD.
	if !p.send(append([]byte(nil), header...)) {
		return errReaderClosed
	}
	// Plaintext slots for a batch and one chunk of lookahead, which
	// decides whether a chunk is the last; both reused for every batch.
	slots := getBuf((batchChunks + 1) * chunk)
	defer putBuf(slots)
	slot := func(i int) []byte { return slots[i*chunk : (i+1)*chunk] }
	nn, eof, err := readChunk(src, slot(0))
	if err != nil {
		return err
	}
	var index int64
	batch := make([][]byte, 0, batchChunks)
	for {
		batch = batch[:0]
		final := false
		for len(batch) < batchChunks && !final {
			i := len(batch)
			cur := slot(i)[:nn]
			if eof {
				final = true
			} else {
				if nn, eof, err = readChunk(src, slot(i+1)); err != nil {
					return err
				}
				final = nn == 0 && eof
			}
			batch = append(batch, cur)
		}
		lookahead := slot(len(batch))[:nn]
		offs := make([]int, len(batch)+1)
		for i, c := range batch {
			offs[i+1] = offs[i] + len(c) + tagSize
		}
		out := p.buffer(offs[len(batch)])
		parallel(len(batch), func(i int) {
			nonce := make([]byte, aead.NonceSize())
			last := final && i == len(batch)-1
			aead.Seal(out[offs[i]:offs[i]], chunkNonce(nonce, index+int64(i), last), batch[i], header)
		})
		index += int64(len(batch))
		if !p.send(out) {
			return errReaderClosed
		}
		if final {
			return nil
		}
		copy(slot(0), lookahead)
	}
}

// openRange describes what a read wants from the chunks it streams.
type openRange struct {
	name      string
	first     int64 // index of the first chunk in the stream
	skip      int64 // plaintext bytes of the first chunk before the range
	remaining int64 // plaintext bytes wanted (toEnd: all)
	toEnd     bool
	want      int64 // ciphertext bytes requested from below (-1: to the end)
	// prevCheck verifies that the chunk before first is the last one, for
	// a range that starts past the end.
	prevCheck func() error
}

func corrupt(name, what string) error {
	return fmt.Errorf("%s: %s: %w", name, what, storage.ErrCorrupt)
}

// open streams the plaintext of the range from src into p.
func open(src io.ReadCloser, pr parsed, rg openRange, p *bufPipe) error {
	defer src.Close()
	per := pr.chunk + tagSize
	buf := getBuf(batchChunks * per)
	defer putBuf(buf)
	index, got := rg.first, int64(0)
	started := false
	for {
		n, ended, err := readChunk(src, buf)
		if err != nil {
			return err
		}
		got += int64(n)
		if n == 0 {
			if !started && rg.prevCheck != nil {
				return rg.prevCheck()
			}
			if rg.want >= 0 && got == rg.want {
				return nil
			}
			return corrupt(rg.name, "truncated")
		}
		started = true
		var chunks [][]byte
		for off := 0; off < n; off += per {
			chunks = append(chunks, buf[off:min(off+per, n)])
		}
		plain := p.buffer(len(chunks) * pr.chunk)
		sizes := make([]int, len(chunks))
		finals := make([]bool, len(chunks))
		bad := make([]bool, len(chunks))
		parallel(len(chunks), func(i int) {
			nonce := make([]byte, pr.aead.NonceSize())
			dst := plain[i*pr.chunk : i*pr.chunk]
			ct := chunks[i]
			if len(ct) == per {
				if out, err := pr.aead.Open(dst, chunkNonce(nonce, index+int64(i), false), ct, pr.header); err == nil {
					sizes[i] = len(out)
					return
				}
			}
			out, err := pr.aead.Open(dst, chunkNonce(nonce, index+int64(i), true), ct, pr.header)
			if err != nil {
				bad[i] = true
				return
			}
			sizes[i], finals[i] = len(out), true
		})
		for i := range chunks {
			if bad[i] {
				return corrupt(rg.name, fmt.Sprintf("chunk %d does not authenticate", index+int64(i)))
			}
			if finals[i] && i != len(chunks)-1 {
				return corrupt(rg.name, "data after the last chunk")
			}
		}
		last := len(chunks) - 1
		final := finals[last]
		if !final && (ended || len(chunks[last]) < per) && !(rg.want >= 0 && got == rg.want) {
			return corrupt(rg.name, "truncated")
		}
		index += int64(len(chunks))
		// Every chunk but the last is full, so the plaintext is contiguous.
		out := plain[:last*pr.chunk+sizes[last]]
		if rg.skip > 0 {
			s := min(rg.skip, int64(len(out)))
			out, rg.skip = out[s:], rg.skip-s
		}
		if !rg.toEnd {
			if int64(len(out)) > rg.remaining {
				out = out[:rg.remaining]
			}
			rg.remaining -= int64(len(out))
		}
		if len(out) > 0 && !p.send(out) {
			return errReaderClosed
		}
		if !rg.toEnd && rg.remaining <= 0 {
			return nil
		}
		if final {
			var one [1]byte
			if n, _ := io.ReadFull(src, one[:]); n > 0 {
				return corrupt(rg.name, "data after the last chunk")
			}
			return nil
		}
		if ended {
			return nil
		}
	}
}
