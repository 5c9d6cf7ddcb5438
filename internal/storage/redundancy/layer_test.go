package redundancy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/local"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
)

var ctx = context.Background()

// faulty is a backend with switchable faults: down (every call fails) or a
// full disk (writes fail with ENOSPC after some bytes).
type faulty struct {
	storage.Backend
	mu       sync.Mutex
	down     bool
	fullDisk bool
}

var errDown = errors.New("backend is down")

func (f *faulty) set(down, full bool) {
	f.mu.Lock()
	f.down, f.fullDisk = down, full
	f.mu.Unlock()
}

func (f *faulty) state() (bool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down, f.fullDisk
}

type enospcReader struct {
	r io.Reader
	n int
}

func (e *enospcReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}
	}
	if len(p) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= n
	return n, err
}

func (f *faulty) Put(ctx context.Context, name string, r io.Reader) error {
	down, full := f.state()
	if down {
		return errDown
	}
	if full {
		// The local backend maps the error of its copy to ErrNoSpace the
		// same way a write(2) ENOSPC is mapped.
		err := f.Backend.Put(ctx, name, &enospcReader{r: r, n: 1000})
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("%w: %v", storage.ErrNoSpace, err)
		}
		return err
	}
	return f.Backend.Put(ctx, name, r)
}

func (f *faulty) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if down, _ := f.state(); down {
		return nil, errDown
	}
	return f.Backend.Get(ctx, name, off, n)
}

func (f *faulty) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if down, _ := f.state(); down {
		return storage.ObjectInfo{}, errDown
	}
	return f.Backend.Stat(ctx, name)
}

func (f *faulty) Delete(ctx context.Context, name string) error {
	if down, _ := f.state(); down {
		return errDown
	}
	return f.Backend.Delete(ctx, name)
}

func (f *faulty) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if down, _ := f.state(); down {
		return errDown
	}
	return f.Backend.List(ctx, prefix, fn)
}

type fixture struct {
	dir    string
	dirs   []string
	faults []*faulty
	layer  *Layer
}

func newFixture(t *testing.T, block int64) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	for i := 1; i <= 3; i++ {
		f.dirs = append(f.dirs, filepath.Join(f.dir, fmt.Sprintf("zone-%d", i)))
	}
	f.open(t, block)
	return f
}

func (f *fixture) open(t *testing.T, block int64) {
	t.Helper()
	var copies []Copy
	f.faults = nil
	for i, d := range f.dirs {
		b, err := local.New(d)
		if err != nil {
			t.Fatal(err)
		}
		fb := &faulty{Backend: b}
		f.faults = append(f.faults, fb)
		copies = append(copies, Copy{Name: fmt.Sprintf("zone-%d", i+1), Backend: fb})
	}
	l, err := Open(ctx, Config{Copies: copies, StateFile: filepath.Join(f.dir, "copies.json"), BlockSize: block})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.layer = l
}

func (f *fixture) file(i int, name string) string {
	return filepath.Join(f.dirs[i], filepath.FromSlash(name))
}

func (f *fixture) states() string {
	s := ""
	for _, h := range f.layer.Health() {
		s += string(h.State[0])
	}
	return s
}

func TestLayerBehaviour(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return newFixture(t, 64<<10).layer })
}

func TestPayloadSizeInvertsTheStoredSize(t *testing.T) {
	const b = 1000
	for _, p := range []int64{0, 1, b - 1, b, b + 1, 5*b + 7, 100 * b} {
		stored := p + 32*blockCount(p, b) + trailerFixed
		if got, ok := payloadSize(stored, b); !ok || got != p {
			t.Errorf("payloadSize(%d) = %d %v, want %d", stored, got, ok, p)
		}
	}
}

func TestBitFlipInOneCopyIsNeverReturnedAndIsRepaired(t *testing.T) {
	f := newFixture(t, 4096)
	data := storagetest.Random(20000)
	storagetest.Put(t, f.layer, "obj", data)
	for _, c := range []struct {
		name      string
		off, n    int64
		flipAt    int
		wantBytes []byte
	}{
		{"whole object, flip in the first block", 0, -1, 10, data},
		{"range, flip in the block read", 9000, 100, 8200, data[9000:9100]},
		{"whole object, flip in the last block", 0, -1, 19999, data},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, _ := os.ReadFile(f.file(0, "obj"))
			raw[c.flipAt] ^= 0x40
			os.WriteFile(f.file(0, "obj"), raw, 0o600)
			if got := storagetest.Read(t, f.layer, "obj", c.off, c.n); !bytes.Equal(got, c.wantBytes) {
				t.Fatal("read returned other bytes than were written")
			}
			f.layer.Wait()
			a, _ := os.ReadFile(f.file(0, "obj"))
			b, _ := os.ReadFile(f.file(1, "obj"))
			if !bytes.Equal(a, b) {
				t.Fatal("the corrupt copy was not repaired")
			}
		})
	}
	if h := f.layer.Health(); h[0].Repaired != 3 || h[0].State != Healthy {
		t.Errorf("health of the repaired copy = %+v", h[0])
	}
}

func TestCorruptionInEveryCopyFailsTheRead(t *testing.T) {
	f := newFixture(t, 4096)
	storagetest.Put(t, f.layer, "obj", storagetest.Random(10000))
	for i := range f.dirs {
		raw, _ := os.ReadFile(f.file(i, "obj"))
		raw[5000] ^= 1
		os.WriteFile(f.file(i, "obj"), raw, 0o600)
	}
	r, err := f.layer.Get(ctx, "obj", 0, -1)
	if err == nil {
		var got []byte
		got, err = io.ReadAll(r)
		r.Close()
		if len(got) > 4096 {
			t.Errorf("returned %d bytes, past the corrupt block", len(got))
		}
	}
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("read = %v, want ErrCorrupt", err)
	}
	rep, _ := f.layer.Scrub(ctx)
	if len(rep.Lost) != 1 {
		t.Errorf("scrub report %+v, want the object lost", rep)
	}
}

func TestDeletedCopyIsServedAndRepaired(t *testing.T) {
	f := newFixture(t, 4096)
	data := []byte("keep me")
	storagetest.Put(t, f.layer, "a/b", data)
	os.Remove(f.file(0, "a/b"))
	if oi, err := f.layer.Stat(ctx, "a/b"); err != nil || oi.Size != int64(len(data)) {
		t.Fatalf("stat = %+v %v", oi, err)
	}
	if got := storagetest.Read(t, f.layer, "a/b", 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("read %q", got)
	}
	f.layer.Wait()
	if _, err := os.Stat(f.file(0, "a/b")); err != nil {
		t.Fatal("the deleted copy was not restored")
	}
}

func TestScrubberFindsSilentCorruption(t *testing.T) {
	f := newFixture(t, 4096)
	for i := 0; i < 5; i++ {
		storagetest.Put(t, f.layer, fmt.Sprintf("o/%d", i), storagetest.Random(9000))
	}
	raw, _ := os.ReadFile(f.file(2, "o/3"))
	raw[8000] ^= 2
	os.WriteFile(f.file(2, "o/3"), raw, 0o600)
	os.Remove(f.file(1, "o/4"))
	rep, err := f.layer.Scrub(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Objects != 5 || rep.Repaired != 2 {
		t.Fatalf("scrub report %+v, want 5 objects and 2 repairs", rep)
	}
	for i := range f.dirs {
		a, _ := os.ReadFile(f.file(i, "o/3"))
		b, _ := os.ReadFile(f.file((i+1)%3, "o/3"))
		if !bytes.Equal(a, b) {
			t.Fatal("copies still differ after the scrub")
		}
	}
}

func TestLosingAZoneLosesNothingAndTheZoneIsRebuilt(t *testing.T) {
	f := newFixture(t, 4096)
	want := map[string][]byte{}
	for i := 0; i < 6; i++ {
		name := fmt.Sprintf("dbfs/%d", i)
		want[name] = storagetest.Random(5000 + i)
		storagetest.Put(t, f.layer, name, want[name])
	}
	if err := os.RemoveAll(f.dirs[1]); err != nil {
		t.Fatal(err)
	}
	// Still serving: reads, writes, listings.
	for name, data := range want {
		if got := storagetest.Read(t, f.layer, name, 0, -1); !bytes.Equal(got, data) {
			t.Fatalf("%s differs after losing a zone", name)
		}
	}
	want["dbfs/new"] = []byte("written while a zone is lost")
	storagetest.Put(t, f.layer, "dbfs/new", want["dbfs/new"])
	n := 0
	f.layer.List(ctx, "dbfs/", func(storage.ObjectInfo) error { n++; return nil })
	if n != len(want) {
		t.Fatalf("listing shows %d objects, want %d", n, len(want))
	}
	f.layer.probeMarkers(ctx)
	if f.states() != "HDH" {
		t.Fatalf("states after losing zone-2 = %s", f.states())
	}
	rep, err := f.layer.Scrub(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.states() != "HHH" || len(rep.Restored) != 1 {
		t.Fatalf("after the rebuild: states %s, report %+v", f.states(), rep)
	}
	for name, data := range want {
		raw, err := os.ReadFile(f.file(1, name))
		if err != nil || !bytes.Equal(raw[:len(data)], data) {
			t.Fatalf("%s not rebuilt in zone-2: %v", name, err)
		}
	}
}

func TestFullDiskOnEveryCopyFailsCleanly(t *testing.T) {
	f := newFixture(t, 4096)
	old := []byte("old contents")
	storagetest.Put(t, f.layer, "obj", old)
	for _, fb := range f.faults {
		fb.set(false, true)
	}
	err := f.layer.Put(ctx, "obj", bytes.NewReader(storagetest.Random(50000)))
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("put on full disks = %v, want ErrNoSpace", err)
	}
	if err := f.layer.Put(ctx, "fresh", bytes.NewReader(storagetest.Random(50000))); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("put on full disks = %v", err)
	}
	for _, fb := range f.faults {
		fb.set(false, false)
	}
	if got := storagetest.Read(t, f.layer, "obj", 0, -1); !bytes.Equal(got, old) {
		t.Fatal("a failed write changed the object")
	}
	if _, err := f.layer.Stat(ctx, "fresh"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a failed first write is visible: %v", err)
	}
	if f.states() != "HHH" {
		t.Errorf("states %s: a write no copy took degrades none", f.states())
	}
	for _, d := range f.dirs {
		tmps, _ := os.ReadDir(filepath.Join(d, ".tmp"))
		if len(tmps) != 0 {
			t.Errorf("%s keeps %d temporary files", d, len(tmps))
		}
	}
}

func TestACopyThatMissesWritesIsNotReadUntilRepaired(t *testing.T) {
	f := newFixture(t, 4096)
	storagetest.Put(t, f.layer, "obj", []byte("v1"))
	storagetest.Put(t, f.layer, "gone", []byte("v1"))
	f.faults[0].set(true, false)
	storagetest.Put(t, f.layer, "obj", []byte("v2"))
	if err := f.layer.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if f.states() != "DHH" {
		t.Fatalf("states = %s", f.states())
	}
	f.faults[0].set(false, false)
	// The stale copy holds v1 and "gone", and is not read.
	for i := 0; i < 5; i++ {
		if got := storagetest.Read(t, f.layer, "obj", 0, -1); string(got) != "v2" {
			t.Fatalf("read %q from a stale copy", got)
		}
	}
	if _, err := f.layer.Stat(ctx, "gone"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted object visible: %v", err)
	}
	// Degraded state survives a restart.
	f.layer.Close()
	f.open(t, 4096)
	if f.states() != "DHH" {
		t.Fatalf("after restart states = %s", f.states())
	}
	if _, err := f.layer.Scrub(ctx); err != nil {
		t.Fatal(err)
	}
	if f.states() != "HHH" {
		t.Fatalf("after scrub states = %s", f.states())
	}
	if _, err := os.Stat(f.file(0, "gone")); !os.IsNotExist(err) {
		t.Error("the object deleted while the copy was down is still there")
	}
	raw, _ := os.ReadFile(f.file(0, "obj"))
	if string(raw[:2]) != "v2" {
		t.Errorf("copy not brought up to date: %q", raw[:2])
	}
}

func TestTwoCopiesDownRefusesWritesButServesReads(t *testing.T) {
	f := newFixture(t, 4096)
	storagetest.Put(t, f.layer, "obj", []byte("v1"))
	f.faults[0].set(true, false)
	f.faults[1].set(true, false)
	if err := f.layer.Put(ctx, "obj", bytes.NewReader([]byte("v2"))); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("put with one copy = %v, want ErrUnavailable", err)
	}
	// The copy that took the failed write is degraded; the others are down:
	// nothing is served from the copy that holds the unacknowledged v2.
	if got, err := f.layer.Get(ctx, "obj", 0, -1); err == nil {
		b, _ := io.ReadAll(got)
		got.Close()
		if string(b) == "v2" {
			t.Fatal("served an unacknowledged write")
		}
	}
	f.faults[0].set(false, false)
	f.faults[1].set(false, false)
	if got := storagetest.Read(t, f.layer, "obj", 0, -1); string(got) != "v1" {
		t.Fatalf("read %q, want the acknowledged v1", got)
	}
}
