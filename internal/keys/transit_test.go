package keys_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/keys/transittest"
)

// The Transit client runs against transittest, an in-process stand-in for
// Vault's Transit engine: no Vault server can be installed here.
func TestTransitKEKWrapsRotatesRewrapsAndFailsClosed(t *testing.T) {
	ctx := context.Background()
	srv := transittest.Start("s.root")
	defer srv.Close()
	kek := keys.NewTransitKEK(keys.TransitConfig{Address: srv.URL, KeyName: "storage", Token: "s.root", Client: srv.Client()})
	dek := keys.NewDEK()
	w1, err := kek.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(w1), "vault:v1:") || kek.WrappedVersion(w1) != "1" {
		t.Fatalf("wrapped = %q", w1)
	}
	srv.Rotate("storage")
	w2, _ := kek.Wrap(ctx, dek)
	if kek.WrappedVersion(w2) != "2" {
		t.Fatalf("after rotation wrapped with version %s", kek.WrappedVersion(w2))
	}
	rw, err := kek.Rewrap(ctx, w1)
	if err != nil || kek.WrappedVersion(rw) != "2" {
		t.Fatalf("rewrap = %q %v", rw, err)
	}
	for _, w := range [][]byte{w1, w2, rw} {
		if got, err := kek.Unwrap(ctx, w); err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("unwrap %q: %v", w[:9], err)
		}
	}
	// Raising min_decryption_version revokes the old version.
	srv.SetMinDecryptionVersion("storage", 2)
	if _, err := kek.Unwrap(ctx, w1); !errors.Is(err, keys.ErrKeyDisabled) || !strings.Contains(err.Error(), "/v1/transit/keys/storage") {
		t.Fatalf("unwrap of a revoked version = %v", err)
	}
	bad := keys.NewTransitKEK(keys.TransitConfig{Address: srv.URL, KeyName: "storage", Token: "wrong", Client: srv.Client()})
	if _, err := bad.Unwrap(ctx, w2); !errors.Is(err, keys.ErrKeyAccessDenied) {
		t.Fatalf("wrong token = %v", err)
	}
	other := keys.NewTransitKEK(keys.TransitConfig{Address: srv.URL, KeyName: "nope", Token: "s.root", Client: srv.Client()})
	if _, err := other.Unwrap(ctx, w2); !errors.Is(err, keys.ErrKeyNotFound) {
		t.Fatalf("missing key = %v", err)
	}
	srv.Close()
	if _, err := kek.Unwrap(ctx, w2); !errors.Is(err, keys.ErrKeyUnavailable) {
		t.Fatalf("vault down = %v", err)
	}
}
