package replication_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/tandemdata/tandem/internal/replication"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/storage"
)

// TestRemoteBackendKeepsObjectsInThePeerRegion runs the storage.Backend
// behaviour that the storage account's geo-replication relies on against the
// peer region, over the mutual-TLS link.
func TestRemoteBackendKeepsObjectsInThePeerRegion(t *testing.T) {
	ctx := context.Background()
	p := servertest.StartPair(t)
	remote := p.Primary.PeerStorage()
	if remote == nil {
		t.Fatal("the primary has no peer storage")
	}
	small := []byte("hello, secondary region")
	big := make([]byte, 40<<20+123) // several ranges over the link
	rand.Read(big)
	for name, data := range map[string][]byte{"a/small": small, "b/big": big, "a/empty": {}} {
		if err := remote.Put(ctx, name, bytes.NewReader(data)); err != nil {
			t.Fatalf("Put %s: %v", name, err)
		}
	}
	read := func(name string, off, n int64) []byte {
		t.Helper()
		rc, err := remote.Get(ctx, name, off, n)
		if err != nil {
			t.Fatalf("Get %s: %v", name, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		return b
	}
	cases := []struct {
		name   string
		off, n int64
		want   []byte
	}{
		{"a/small", 0, -1, small},
		{"a/small", 7, 9, small[7:16]},
		{"a/empty", 0, -1, []byte{}},
		{"b/big", 0, -1, big},
		{"b/big", 17 << 20, 20 << 20, big[17<<20 : 37<<20]},
		{"b/big", int64(len(big)) - 5, -1, big[len(big)-5:]},
	}
	for _, c := range cases {
		if got := read(c.name, c.off, c.n); !bytes.Equal(got, c.want) {
			t.Errorf("Get %s [%d, +%d]: %d bytes, want %d", c.name, c.off, c.n, len(got), len(c.want))
		}
	}
	if oi, err := remote.Stat(ctx, "b/big"); err != nil || oi.Size != int64(len(big)) {
		t.Errorf("Stat = %+v, %v", oi, err)
	}
	if _, err := remote.Stat(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat of a missing object = %v, want ErrNotFound", err)
	}
	if _, err := remote.Get(ctx, "nope", 0, -1); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get of a missing object = %v, want ErrNotFound", err)
	}
	var names []string
	if err := remote.List(ctx, "a/", func(oi storage.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names) != "[a/empty a/small]" {
		t.Errorf("List(a/) = %v", names)
	}
	// Paging: more objects than one page.
	for i := 0; i < 1005; i++ {
		if err := remote.Put(ctx, fmt.Sprintf("c/%04d", i), bytes.NewReader([]byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	remote.List(ctx, "c/", func(storage.ObjectInfo) error { n++; return nil })
	if n != 1005 {
		t.Errorf("listed %d objects, want 1005", n)
	}
	if err := remote.Delete(ctx, "a/small"); err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(ctx, "a/small"); err != nil {
		t.Errorf("deleting a missing object: %v", err)
	}
	if _, err := remote.Stat(ctx, "a/small"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted object: %v", err)
	}
	// The objects are in the secondary's account. The secondary's link to
	// the primary serves reads the other way (pairing reads the leader's key
	// record so), but a leading region takes no objects from its peer.
	back := p.Secondary.PeerStorage()
	if _, err := back.Stat(ctx, storage.ReservedPrefix+"keys/service"); err != nil {
		t.Errorf("the primary's key record over the link: %v", err)
	}
	var pe *replication.PeerError
	if err := back.Put(ctx, "from-secondary", bytes.NewReader(small)); !errors.As(err, &pe) || pe.Code != "INVALID_STATE" {
		t.Errorf("a write into the leading primary = %v, want INVALID_STATE", err)
	}
}
