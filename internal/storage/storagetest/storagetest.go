// Package storagetest is the behaviour suite every storage.Backend passes:
// the local directory, Azure Blob Storage (against Azurite) and each layer
// of the storage account (encryption, redundancy, geo-replication). A new
// backend or layer calls Run from its tests.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/tandemdata/tandem/internal/storage"
)

// Options tunes the suite for slow backends.
type Options struct {
	// LargeSize is the size of the large-object case (default 9 MiB: more
	// than one block or chunk of every layer).
	LargeSize int
	// Writers is the number of concurrent writers (default 8).
	Writers int
}

// Run runs the behaviour suite. newBackend returns an empty backend; it is
// called once per case.
func Run(t *testing.T, newBackend func(t *testing.T) storage.Backend, opts ...Options) {
	o := Options{LargeSize: 9<<20 + 12345, Writers: 8}
	if len(opts) > 0 {
		if opts[0].LargeSize > 0 {
			o.LargeSize = opts[0].LargeSize
		}
		if opts[0].Writers > 0 {
			o.Writers = opts[0].Writers
		}
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"PutGetStat", testPutGetStat},
		{"EmptyObject", testEmpty},
		{"AtomicReplace", testAtomicReplace},
		{"FailedPutLeavesOldObject", testFailedPut},
		{"Ranges", testRanges},
		{"ListOrderAndPrefix", testList},
		{"MissingObjects", testMissing},
		{"LargeObject", func(t *testing.T, b storage.Backend) { testLarge(t, b, o.LargeSize) }},
		{"ConcurrentWriters", func(t *testing.T, b storage.Backend) { testConcurrent(t, b, o.Writers) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newBackend(t)) })
	}
}

func ctx() context.Context { return context.Background() }

// Read returns a whole range of an object.
func Read(t testing.TB, b storage.Backend, name string, off, n int64) []byte {
	t.Helper()
	r, err := b.Get(ctx(), name, off, n)
	if err != nil {
		t.Fatalf("get %s [%d,+%d): %v", name, off, n, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s [%d,+%d): %v", name, off, n, err)
	}
	return got
}

// Put stores data under name or fails the test.
func Put(t testing.TB, b storage.Backend, name string, data []byte) {
	t.Helper()
	if err := b.Put(ctx(), name, bytes.NewReader(data)); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

// Random returns n random bytes.
func Random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func testPutGetStat(t *testing.T, b storage.Backend) {
	data := []byte("hello, storage account")
	Put(t, b, "a/b/c.txt", data)
	if got := Read(t, b, "a/b/c.txt", 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("get = %q, want %q", got, data)
	}
	oi, err := b.Stat(ctx(), "a/b/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	if oi.Name != "a/b/c.txt" || oi.Size != int64(len(data)) || oi.ModTime.IsZero() {
		t.Fatalf("stat = %+v", oi)
	}
}

func testEmpty(t *testing.T, b storage.Backend) {
	Put(t, b, "empty", nil)
	if got := Read(t, b, "empty", 0, -1); len(got) != 0 {
		t.Fatalf("empty object read %d bytes", len(got))
	}
	if oi, err := b.Stat(ctx(), "empty"); err != nil || oi.Size != 0 {
		t.Fatalf("stat empty = %+v, %v", oi, err)
	}
}

func testAtomicReplace(t *testing.T, b storage.Backend) {
	Put(t, b, "obj", bytes.Repeat([]byte("old "), 1000))
	newData := bytes.Repeat([]byte("new!"), 3000)
	Put(t, b, "obj", newData)
	if got := Read(t, b, "obj", 0, -1); !bytes.Equal(got, newData) {
		t.Fatalf("replaced object reads %d bytes, want the new %d", len(got), len(newData))
	}
	if oi, _ := b.Stat(ctx(), "obj"); oi.Size != int64(len(newData)) {
		t.Fatalf("stat size %d after replace", oi.Size)
	}
}

// failingReader returns some data, then an error: a writer that dies.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func testFailedPut(t *testing.T, b storage.Backend) {
	old := []byte("the old contents")
	Put(t, b, "keep", old)
	boom := errors.New("writer died")
	err := b.Put(ctx(), "keep", &failingReader{data: Random(300 << 10), err: boom})
	if err == nil {
		t.Fatal("a put whose reader failed succeeded")
	}
	if got := Read(t, b, "keep", 0, -1); !bytes.Equal(got, old) {
		t.Fatalf("after a failed put the object reads %d bytes, want the old %d", len(got), len(old))
	}
	// A failed first write publishes nothing.
	if err := b.Put(ctx(), "never", &failingReader{data: Random(1000), err: boom}); err == nil {
		t.Fatal("failed put succeeded")
	}
	if _, err := b.Stat(ctx(), "never"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("stat of a failed first write = %v, want ErrNotFound", err)
	}
	var names []string
	b.List(ctx(), "", func(oi storage.ObjectInfo) error { names = append(names, oi.Name); return nil })
	for _, n := range names {
		if n != "keep" {
			t.Errorf("listing shows %q after failed puts", n)
		}
	}
}

func testRanges(t *testing.T, b storage.Backend) {
	data := Random(200<<10 + 77)
	Put(t, b, "r", data)
	n := int64(len(data))
	cases := []struct{ off, length int64 }{
		{0, -1}, {0, 1}, {1, 10}, {65535, 2}, {65536, 65536}, {100000, -1},
		{n - 1, 1}, {n - 1, 100}, {n, -1}, {n, 5}, {n + 10, -1}, {12345, 0}, {0, n + 100},
	}
	for _, c := range cases {
		got := Read(t, b, "r", c.off, c.length)
		lo := min(c.off, n)
		hi := n
		if c.length >= 0 {
			hi = min(n, c.off+c.length)
		}
		if hi < lo {
			hi = lo
		}
		if want := data[lo:hi]; !bytes.Equal(got, want) {
			t.Errorf("range [%d,+%d): got %d bytes, want %d", c.off, c.length, len(got), len(want))
		}
	}
}

func testList(t *testing.T, b storage.Backend) {
	names := []string{"p/b", "p/a", "p/c/d", "q/x", "p-x", "pa/z"}
	for i, n := range names {
		Put(t, b, n, bytes.Repeat([]byte{'x'}, i+1))
	}
	list := func(prefix string) []string {
		var got []string
		err := b.List(ctx(), prefix, func(oi storage.ObjectInfo) error {
			got = append(got, fmt.Sprintf("%s:%d", oi.Name, oi.Size))
			return nil
		})
		if err != nil {
			t.Fatalf("list %q: %v", prefix, err)
		}
		return got
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"p-x:5", "p/a:2", "p/b:1", "p/c/d:3", "pa/z:6", "q/x:4"}},
		{"p/", []string{"p/a:2", "p/b:1", "p/c/d:3"}},
		{"p", []string{"p-x:5", "p/a:2", "p/b:1", "p/c/d:3", "pa/z:6"}},
		{"p/c/", []string{"p/c/d:3"}},
		{"nothing/", nil},
	}
	for _, c := range cases {
		if got := list(c.prefix); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("list %q = %v, want %v", c.prefix, got, c.want)
		}
	}
	stop := errors.New("stop")
	count := 0
	if err := b.List(ctx(), "", func(storage.ObjectInfo) error { count++; return stop }); !errors.Is(err, stop) || count != 1 {
		t.Errorf("list did not stop at the callback's error: %v after %d", err, count)
	}
}

func testMissing(t *testing.T, b storage.Backend) {
	if _, err := b.Get(ctx(), "no/such", 0, -1); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("get missing = %v", err)
	}
	if _, err := b.Get(ctx(), "no/such", 10, 10); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ranged get missing = %v", err)
	}
	if _, err := b.Stat(ctx(), "no/such"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("stat missing = %v", err)
	}
	if err := b.Delete(ctx(), "no/such"); err != nil {
		t.Errorf("delete missing = %v", err)
	}
	Put(t, b, "gone", []byte("x"))
	if err := b.Delete(ctx(), "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx(), "gone"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("stat deleted = %v", err)
	}
}

func testLarge(t *testing.T, b storage.Backend, size int) {
	data := Random(size)
	Put(t, b, "large", data)
	if got := Read(t, b, "large", 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("large object: read %d bytes, want %d (equal prefix %d)", len(got), len(data), commonPrefix(got, data))
	}
	off := int64(size/2 - 1000)
	if got := Read(t, b, "large", off, 3<<20); !bytes.Equal(got, data[off:min(int64(size), off+3<<20)]) {
		t.Fatal("large object: middle range differs")
	}
	if oi, err := b.Stat(ctx(), "large"); err != nil || oi.Size != int64(size) {
		t.Fatalf("stat large = %+v %v", oi, err)
	}
}

func commonPrefix(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

func testConcurrent(t *testing.T, b storage.Backend, writers int) {
	// Every writer replaces the same object with its own contents; a reader
	// must always see one writer's whole object.
	contents := make([][]byte, writers)
	for i := range contents {
		contents[i] = bytes.Repeat([]byte{byte('a' + i)}, 70000+i*1000)
	}
	Put(t, b, "shared", contents[0])
	var wg sync.WaitGroup
	errs := make(chan error, writers*4)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 3; j++ {
				if err := b.Put(ctx(), "shared", bytes.NewReader(contents[i])); err != nil {
					errs <- err
				}
				if err := b.Put(ctx(), fmt.Sprintf("own/%d", i), bytes.NewReader(contents[i])); err != nil {
					errs <- err
				}
				r, err := b.Get(ctx(), "shared", 0, -1)
				if err != nil {
					errs <- err
					continue
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					errs <- err
					continue
				}
				if !isOneOf(got, contents) {
					errs <- fmt.Errorf("reader saw a torn object of %d bytes", len(got))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := 0; i < writers; i++ {
		if got := Read(t, b, fmt.Sprintf("own/%d", i), 0, -1); !bytes.Equal(got, contents[i]) {
			t.Errorf("own/%d differs", i)
		}
	}
}

func isOneOf(got []byte, contents [][]byte) bool {
	for _, c := range contents {
		if bytes.Equal(got, c) {
			return true
		}
	}
	return false
}
