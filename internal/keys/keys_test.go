package keys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyringWrapsRotatesAndFailsClosedWhenDisabled(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ring, err := OpenKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := ring.KEK("secrets")
	if err != nil {
		t.Fatal(err)
	}
	dek := NewDEK()
	w1, err := kek.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Rotate("secrets"); err != nil {
		t.Fatal(err)
	}
	w2, _ := kek.Wrap(ctx, dek)
	if w1[0] == w2[0] {
		t.Errorf("rotation did not change the wrapping version")
	}
	for _, w := range [][]byte{w1, w2} {
		got, err := kek.Unwrap(ctx, w)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("unwrap: %v", err)
		}
	}
	// Reopening with the same master key finds the same keys.
	ring2, err := OpenKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	kek2, _ := ring2.KEK("secrets")
	if got, err := kek2.Unwrap(ctx, w1); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap after reopen: %v", err)
	}
	if err := ring2.SetDisabled("secrets", true); err != nil {
		t.Fatal(err)
	}
	if _, err := kek2.Unwrap(ctx, w1); !errors.Is(err, ErrKeyDisabled) || !strings.Contains(err.Error(), "platform/secrets") {
		t.Errorf("disabled key unwrap = %v", err)
	}
	ring2.SetDisabled("secrets", false)
	if _, err := kek2.Unwrap(ctx, w1); err != nil {
		t.Errorf("re-enabled key: %v", err)
	}
}

func TestKeyringRefusesAWrongMasterKey(t *testing.T) {
	dir := t.TempDir()
	ring, _ := OpenKeyring(dir)
	ring.KEK("a")
	os.WriteFile(filepath.Join(dir, "master.key"), []byte(strings.Repeat("ab", 32)), 0o600)
	if _, err := OpenKeyring(dir); err == nil {
		t.Fatal("opened the keyring with another master key")
	}
}

func TestSealOpenBindsAssociatedData(t *testing.T) {
	dek := NewDEK()
	s, _ := Seal(dek, []byte("hunter2"), []byte("scope/key"))
	if bytes.Contains(s, []byte("hunter2")) {
		t.Fatal("plaintext visible")
	}
	if p, err := Open(dek, s, []byte("scope/key")); err != nil || string(p) != "hunter2" {
		t.Fatalf("open: %q %v", p, err)
	}
	if _, err := Open(dek, s, []byte("scope/other")); err == nil {
		t.Fatal("opened with other associated data")
	}
}

func TestAdoptSharesAKeyBetweenRegions(t *testing.T) {
	ctx := context.Background()
	primary, _ := OpenKeyring(t.TempDir())
	secondary, _ := OpenKeyring(t.TempDir())
	pk, _ := primary.KEK("secrets")
	dek := NewDEK()
	wrapped, _ := pk.Wrap(ctx, dek)

	// The secondary made its own key before pairing (a read that touched it).
	sk, _ := secondary.KEK("secrets")
	own, _ := sk.Wrap(ctx, dek)

	versions, err := primary.Export("secrets")
	if err != nil {
		t.Fatal(err)
	}
	changed, err := secondary.Adopt("secrets", versions, "1")
	if err != nil || !changed {
		t.Fatalf("Adopt = %v, %v", changed, err)
	}
	if got, err := sk.Unwrap(ctx, wrapped); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("secondary cannot unwrap the primary's data key: %v", err)
	}
	// The secondary's own key was kept aside, not destroyed.
	aside, err := secondary.KEK("secrets@replaced-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := aside.Unwrap(ctx, own); err == nil && bytes.Equal(got, dek) {
		t.Errorf("the kept-aside key unwrapped under another id: wrapping must bind the key id")
	}
	if n := len(secondary.keys["secrets@replaced-1"].Versions); n != 1 {
		t.Errorf("kept-aside key has %d versions", n)
	}

	// Adopting the same versions again changes nothing; a rotation extends.
	if changed, err := secondary.Adopt("secrets", versions, "2"); changed || err != nil {
		t.Errorf("second Adopt = %v, %v", changed, err)
	}
	primary.Rotate("secrets")
	wrapped2, _ := pk.Wrap(ctx, dek)
	versions, _ = primary.Export("secrets")
	if changed, err := secondary.Adopt("secrets", versions, "3"); !changed || err != nil {
		t.Fatalf("Adopt after rotation = %v, %v", changed, err)
	}
	if _, ok := secondary.keys["secrets@replaced-3"]; ok {
		t.Errorf("an extension kept a copy aside")
	}
	for _, w := range [][]byte{wrapped, wrapped2} {
		if got, err := sk.Unwrap(ctx, w); err != nil || !bytes.Equal(got, dek) {
			t.Errorf("unwrap after rotation: %v", err)
		}
	}
	if _, err := secondary.Adopt("secrets", [][]byte{[]byte("short")}, "4"); err == nil {
		t.Errorf("Adopt accepted a malformed key")
	}
}
