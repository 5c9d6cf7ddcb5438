package sse

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage/local"
)

// BenchmarkLayer measures a layer's put and get against the plain
// directory under it (bench/storage compares whole configurations).
func BenchmarkLayer(b *testing.B) {
	for _, size := range []int{1 << 20, 64 << 20} {
		data := make([]byte, size)
		rand.Read(data)
		dir := b.TempDir()
		inner, _ := local.New(filepath.Join(dir, "d"))
		ring, _ := keys.OpenKeyring(filepath.Join(dir, "k"))
		kek, _ := ring.KEK("x")
		l, _ := Open(ctx, Config{Inner: inner, KEK: kek, Record: "service"})
		b.Run(fmt.Sprintf("put/%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				if err := l.Put(ctx, "o", bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("get/%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				r, _ := l.Get(ctx, "o", 0, -1)
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
