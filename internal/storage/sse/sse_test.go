package sse

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/local"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
)

var ctx = context.Background()

type fixture struct {
	dir   string
	inner *local.Backend
	ring  *keys.Keyring
	kek   keys.KEK
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	inner, err := local.New(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := keys.OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := ring.KEK("storage")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, inner: inner, ring: ring, kek: kek}
}

func (f *fixture) open(t *testing.T, alg Algorithm) *Layer {
	t.Helper()
	l, err := Open(ctx, Config{Inner: f.inner, KEK: f.kek, Record: "service", Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLayerBehaviour(t *testing.T) {
	for _, alg := range []Algorithm{AES256GCM, XChaCha20Poly1305} {
		t.Run(alg.String(), func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Backend { return newFixture(t).open(t, alg) })
		})
	}
	t.Run("Double", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Backend {
			f := newFixture(t)
			infraKEK, _ := f.ring.KEK("infrastructure")
			infra, err := Open(ctx, Config{Inner: f.inner, KEK: infraKEK, Record: "infrastructure", Algorithm: XChaCha20Poly1305})
			if err != nil {
				t.Fatal(err)
			}
			svc, err := Open(ctx, Config{Inner: infra, KEK: f.kek, Record: "service", Algorithm: AES256GCM, ChunkSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			return svc
		})
	})
}

func TestPlainSizeInvertsTheStoredSize(t *testing.T) {
	const h, c = 76, 4096
	for _, n := range []int64{0, 1, c - 1, c, c + 1, 2 * c, 2*c + 1, 10*c - 3, 1 << 20} {
		chunks := max((n+c-1)/c, 1)
		stored := h + n + chunks*tagSize
		got, ok := plainSize(stored, h, c)
		if !ok || got != n {
			t.Errorf("plainSize(%d) = %d %v, want %d", stored, got, ok, n)
		}
	}
	if _, ok := plainSize(h+tagSize-1, h, c); ok {
		t.Error("a stored object shorter than one tag has a size")
	}
}

func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			out[p] = b
		}
		return nil
	})
	return out
}

func TestNoPlaintextReachesTheDisk(t *testing.T) {
	f := newFixture(t)
	l := f.open(t, AES256GCM)
	marker := []byte("TANDEM-PLAINTEXT-MARKER-7f3a")
	data := bytes.Repeat(append(marker, ' '), 5000)
	storagetest.Put(t, l, "dbfs/secret.txt", data)
	if got := storagetest.Read(t, l, "dbfs/secret.txt", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("round trip differs")
	}
	for p, b := range files(t, f.dir) {
		if bytes.Contains(b, marker) {
			t.Errorf("%s holds the plaintext marker", p)
		}
	}
}

// stored returns the path of the ciphertext of name.
func (f *fixture) stored(name string) string {
	return filepath.Join(f.inner.Root, filepath.FromSlash(name))
}

func TestTamperingIsDetected(t *testing.T) {
	f := newFixture(t)
	l, err := Open(ctx, Config{Inner: f.inner, KEK: f.kek, Record: "service", ChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	data := storagetest.Random(3*4096 + 100)
	storagetest.Put(t, l, "a", data)
	storagetest.Put(t, l, "b", data)
	orig, _ := os.ReadFile(f.stored("a"))
	per := 4096 + tagSize
	hl := l.headerLen
	cases := []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"bit flip in a chunk", func(b []byte) []byte { b[hl+per+7] ^= 1; return b }},
		{"bit flip in the header", func(b []byte) []byte { b[9] ^= 1; return b }},
		{"bit flip in the wrapped key", func(b []byte) []byte { b[20] ^= 1; return b }},
		{"chunks swapped", func(b []byte) []byte {
			c0 := append([]byte(nil), b[hl:hl+per]...)
			copy(b[hl:], b[hl+per:hl+2*per])
			copy(b[hl+per:], c0)
			return b
		}},
		{"last chunk dropped", func(b []byte) []byte { return b[:hl+3*per] }},
		{"truncated mid-chunk", func(b []byte) []byte { return b[:len(b)-5] }},
		{"extended by a chunk", func(b []byte) []byte { return append(b, b[hl:hl+per]...) }},
		{"object of another name", func([]byte) []byte { b, _ := os.ReadFile(f.stored("b")); return b }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(f.stored("a"), c.mutate(append([]byte(nil), orig...)), 0o600)
			r, err := l.Get(ctx, "a", 0, -1)
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			if !errors.Is(err, storage.ErrCorrupt) {
				t.Errorf("full read = %v, want ErrCorrupt", err)
			}
		})
	}
	// A range past a truncated end is not mistaken for a short object.
	os.WriteFile(f.stored("a"), orig[:hl+2*per], 0o600)
	r, err := l.Get(ctx, "a", 3*4096+10, 10)
	if err == nil {
		_, err = io.ReadAll(r)
		r.Close()
	}
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("read past a truncated end = %v, want ErrCorrupt", err)
	}
}

func TestDisabledKeyFailsClosedAndReenablingRestoresAccess(t *testing.T) {
	f := newFixture(t)
	l := f.open(t, AES256GCM)
	storagetest.Put(t, l, "x", []byte("before"))
	if err := f.ring.SetDisabled("storage", true); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, keys.ErrKeyDisabled) || !strings.Contains(err.Error(), "platform/storage") {
			t.Errorf("%s with a disabled key = %v, want ErrKeyDisabled naming platform/storage", what, err)
		}
	}
	_, err := l.Get(ctx, "x", 0, -1)
	check("get", err)
	_, err = l.Get(ctx, "x", 2, 2)
	check("ranged get", err)
	_, err = l.Stat(ctx, "x")
	check("stat", err)
	check("put", l.Put(ctx, "y", strings.NewReader("during")))
	if _, err := f.inner.Stat(ctx, "y"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a refused put left an object: %v", err)
	}
	// Listing works without the key, as in Azure.
	n := 0
	if err := l.List(ctx, "", func(storage.ObjectInfo) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("list with a disabled key = %d objects, %v", n, err)
	}
	f.ring.SetDisabled("storage", false)
	if got := storagetest.Read(t, l, "x", 0, -1); string(got) != "before" {
		t.Errorf("after re-enabling: %q", got)
	}
	storagetest.Put(t, l, "y", []byte("after"))
}

func TestRotationRewrapsWithoutRewritingData(t *testing.T) {
	f := newFixture(t)
	l := f.open(t, AES256GCM)
	data := storagetest.Random(100000)
	storagetest.Put(t, l, "obj", data)
	before, _ := os.ReadFile(f.stored("obj"))
	st1, _ := os.Stat(f.stored("obj"))
	v1 := l.KeyInfo().Wrapped[0]
	if err := f.ring.Rotate("storage"); err != nil {
		t.Fatal(err)
	}
	if err := l.Rewrap(ctx, f.kek); err != nil {
		t.Fatal(err)
	}
	if v2 := l.KeyInfo().Wrapped[0]; v2 == v1 {
		t.Fatalf("account key still wrapped by version %d", v1)
	}
	after, _ := os.ReadFile(f.stored("obj"))
	st2, _ := os.Stat(f.stored("obj"))
	if !bytes.Equal(before, after) || !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatal("rotation rewrote the data object")
	}
	// A fresh open (a restart) reads the rewrapped record.
	l2 := f.open(t, AES256GCM)
	if got := storagetest.Read(t, l2, "obj", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("data unreadable after rotation")
	}
}

func TestSwitchingKeysKeepsDataAndCrashLeavesAnOpenableRecord(t *testing.T) {
	f := newFixture(t)
	l := f.open(t, AES256GCM)
	storagetest.Put(t, l, "obj", []byte("kept"))
	other, _ := f.ring.KEK("customer")
	if err := l.Rewrap(ctx, other); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.Read(t, l, "obj", 0, -1); string(got) != "kept" {
		t.Fatalf("after switch: %q", got)
	}
	// The old key no longer opens the account; the new one does.
	if _, err := Open(ctx, Config{Inner: f.inner, KEK: f.kek, Record: "service"}); err == nil {
		t.Error("the old key still opens the account after the switch")
	}
	l2, err := Open(ctx, Config{Inner: f.inner, KEK: other, Record: "service"})
	if err != nil {
		t.Fatal(err)
	}
	// Disabling the old key does not matter any more.
	f.ring.SetDisabled("storage", true)
	if got := storagetest.Read(t, l2, "obj", 0, -1); string(got) != "kept" {
		t.Fatalf("after disabling the old key: %q", got)
	}
	// A record holding both wraps (a crash mid-switch) opens with either.
	f.ring.SetDisabled("storage", false)
	rec, _ := l2.readRecord(ctx)
	w, _ := f.kek.Wrap(ctx, mustKey(t, l2))
	rec.Wraps = append(rec.Wraps, wrap{KEK: f.kek.ID(), Wrapped: w})
	l2.writeRecord(ctx, rec)
	for _, k := range []keys.KEK{f.kek, other} {
		lk, err := Open(ctx, Config{Inner: f.inner, KEK: k, Record: "service"})
		if err != nil {
			t.Fatalf("open mid-switch with %s: %v", k.ID(), err)
		}
		if got := storagetest.Read(t, lk, "obj", 0, -1); string(got) != "kept" {
			t.Fatalf("mid-switch read with %s: %q", k.ID(), got)
		}
	}
}

func mustKey(t *testing.T, l *Layer) []byte {
	k, err := l.accountKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyRecordIsHiddenAndProtected(t *testing.T) {
	f := newFixture(t)
	l := f.open(t, AES256GCM)
	if err := l.Put(ctx, storage.ReservedPrefix+"keys/service", strings.NewReader("x")); !errors.Is(err, storage.ErrInvalidName) {
		t.Errorf("overwriting the key record = %v", err)
	}
	if err := l.Delete(ctx, storage.ReservedPrefix+"keys/service"); !errors.Is(err, storage.ErrInvalidName) {
		t.Errorf("deleting the key record = %v", err)
	}
	l.List(ctx, "", func(oi storage.ObjectInfo) error {
		t.Errorf("listing shows %s", oi.Name)
		return nil
	})
}
