package account

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

// benchAccount opens an account with the default settings (LRS: three
// copies, service encryption) in a temporary directory.
func benchAccount(b *testing.B) *Account {
	b.Helper()
	dir := b.TempDir()
	st, err := sqlstore.Open(bg, filepath.Join(dir, "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	ring, err := keys.OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		b.Fatal(err)
	}
	acc, err := Open(bg, Options{Name: "root", Dir: filepath.Join(dir, "storage"), Store: st, Keys: ring})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { acc.Close() })
	return acc
}

// benchSizes are the objects' sizes; 100 MiB runs first and again last,
// so the machine's state (writeback of the earlier cases) does not favour
// one size.
var benchSizes = []int{100 << 20, 1 << 20, 100 << 20}

// grow appends 1 MiB batches to name until it holds size bytes.
func grow(b *testing.B, acc *Account, name string, size int) {
	b.Helper()
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for n := 0; n < size; n += len(chunk) {
		if err := acc.Append(bg, name, bytes.NewReader(chunk)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend1KB appends 1 KiB to objects of 1 MiB and 100 MiB: the
// cost per append stays flat as the object grows.
//
//	go test -run '^$' -bench 'Append1KB' -benchtime 300x ./internal/storage/account/
func BenchmarkAppend1KB(b *testing.B) {
	line := bytes.Repeat([]byte("a"), 1023)
	line = append(line, '\n')
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("object=%dMiB", size>>20), func(b *testing.B) {
			acc := benchAccount(b)
			grow(b, acc, "blob", size)
			// Start with the growth's dirty pages written back, so they do
			// not slow the timed appends' fsyncs.
			syscall.Sync()
			b.SetBytes(int64(len(line)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := acc.Append(bg, "blob", bytes.NewReader(line)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_, parts := countParts(b, acc.Primary())
			b.ReportMetric(float64(parts), "parts")
		})
	}
}

// BenchmarkRewrite1KB is the destination's fallback without Append (read
// the object, put it back with 1 KiB more), for comparison.
//
//	go test -run '^$' -bench 'Rewrite1KB' -benchtime 5x ./internal/storage/account/
func BenchmarkRewrite1KB(b *testing.B) {
	line := bytes.Repeat([]byte("a"), 1024)
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("object=%dMiB", size>>20), func(b *testing.B) {
			acc := benchAccount(b)
			if err := acc.Put(bg, "blob", bytes.NewReader(make([]byte, size))); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(line)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := acc.Get(bg, "blob", 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				old, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					b.Fatal(err)
				}
				if err := acc.Put(bg, "blob", io.MultiReader(bytes.NewReader(old), bytes.NewReader(line))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func countParts(b *testing.B, l storage.Backend) (manifests, parts int) {
	l.List(bg, appendRoot, func(oi storage.ObjectInfo) error {
		if isManifest(oi.Name) {
			manifests++
		} else {
			parts++
		}
		return nil
	})
	return
}
