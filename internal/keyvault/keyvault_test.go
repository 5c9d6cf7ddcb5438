package keyvault_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/keyvault"
	"github.com/tandemdata/tandem/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Client returns an HTTP client trusting the vault's CA.
func client(t *testing.T, kv *testenv.KeyVaultServer) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(kv.CAPEM(t)))
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

func call(t *testing.T, c *http.Client, kv *testenv.KeyVaultServer, method, path string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, kv.URL+path+"?api-version=7.4", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+kv.Token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestKeyWrapMatchesRFC3394(t *testing.T) {
	kek, _ := hex.DecodeString("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	data, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	want := "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
	got, err := keyvault.KeyWrap(kek, data)
	if err != nil || !strings.EqualFold(hex.EncodeToString(got), want) {
		t.Fatalf("wrap = %X %v", got, err)
	}
	back, err := keyvault.KeyUnwrap(kek, got)
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("unwrap = %X %v", back, err)
	}
	got[3] ^= 1
	if _, err := keyvault.KeyUnwrap(kek, got); err == nil {
		t.Fatal("a damaged wrapped key unwrapped")
	}
}

// TestKeyVaultProcessServesCustomerManagedKeys runs the real `tandem
// keyvault` process and drives it through the KEK client and its REST API.
func TestKeyVaultProcessServesCustomerManagedKeys(t *testing.T) {
	ctx := context.Background()
	kv := testenv.KeyVault(t)
	c := client(t, kv)
	if st, out := call(t, c, kv, "POST", "/keys/cmk/create", map[string]any{"kty": "oct-HSM", "key_size": 256}); st != 200 {
		t.Fatalf("create = %d %v", st, out)
	}
	kek := keys.NewKeyVaultKEK(keys.KeyVaultConfig{URL: kv.URL, KeyName: "cmk", Token: kv.Token, Client: c})
	dek := keys.NewDEK()
	w1, err := kek.Wrap(ctx, dek)
	if err != nil {
		t.Fatal(err)
	}
	st, out := call(t, c, kv, "POST", "/keys/cmk/rotate", nil)
	if st != 200 {
		t.Fatalf("rotate = %d %v", st, out)
	}
	kid := out["key"].(map[string]any)["kid"].(string)
	v2 := kid[strings.LastIndex(kid, "/")+1:]
	w2, _ := kek.Wrap(ctx, dek)
	if kek.WrappedVersion(w2) != v2 || kek.WrappedVersion(w1) == v2 {
		t.Fatalf("versions: w1 %s, w2 %s, newest %s", kek.WrappedVersion(w1), kek.WrappedVersion(w2), v2)
	}
	for _, w := range [][]byte{w1, w2} {
		if got, err := kek.Unwrap(ctx, w); err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("unwrap: %v", err)
		}
	}
	// Disabling the key (every version) fails closed, naming the key.
	if st, out := call(t, c, kv, "PATCH", "/keys/cmk", map[string]any{"attributes": map[string]any{"enabled": false}}); st != 200 {
		t.Fatalf("disable = %d %v", st, out)
	}
	if _, err := kek.Unwrap(ctx, w1); !errors.Is(err, keys.ErrKeyDisabled) || !strings.Contains(err.Error(), kv.URL+"/keys/cmk") {
		t.Fatalf("unwrap with the key disabled = %v", err)
	}
	if _, err := kek.Wrap(ctx, dek); !errors.Is(err, keys.ErrKeyDisabled) {
		t.Fatalf("wrap with the key disabled = %v", err)
	}
	call(t, c, kv, "PATCH", "/keys/cmk", map[string]any{"attributes": map[string]any{"enabled": true}})
	// Keys survive a kill -9 of the vault.
	kv.Stop(true)
	kv2 := restart(t, kv)
	kek2 := keys.NewKeyVaultKEK(keys.KeyVaultConfig{URL: kv2.URL, KeyName: "cmk", Token: kv2.Token, Client: client(t, kv2)})
	if got, err := kek2.Unwrap(ctx, w1); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap after a restart: %v", err)
	}
	// A deleted key fails closed until recovered.
	c2 := client(t, kv2)
	call(t, c2, kv2, "DELETE", "/keys/cmk", nil)
	if _, err := kek2.Unwrap(ctx, w1); !errors.Is(err, keys.ErrKeyNotFound) {
		t.Fatalf("unwrap of a deleted key = %v", err)
	}
	if st, _ := call(t, c2, kv2, "POST", "/deletedkeys/cmk/recover", nil); st != 200 {
		t.Fatalf("recover = %d", st)
	}
	if _, err := kek2.Unwrap(ctx, w1); err != nil {
		t.Fatalf("unwrap after recovery: %v", err)
	}
	// The wrong token is refused.
	bad := keys.NewKeyVaultKEK(keys.KeyVaultConfig{URL: kv2.URL, KeyName: "cmk", Token: "nope", Client: c2})
	if _, err := bad.Unwrap(ctx, w1); !errors.Is(err, keys.ErrKeyAccessDenied) {
		t.Fatalf("wrong token = %v", err)
	}
	// A wrapped key from another key does not open.
	call(t, c2, kv2, "POST", "/keys/other/create", nil)
	other := keys.NewKeyVaultKEK(keys.KeyVaultConfig{URL: kv2.URL, KeyName: "other", Token: kv2.Token, Client: c2})
	if _, err := other.Unwrap(ctx, w1); err == nil {
		t.Fatal("another key unwrapped the data key")
	}
}

func restart(t *testing.T, old *testenv.KeyVaultServer) *testenv.KeyVaultServer {
	t.Helper()
	return testenv.KeyVaultAt(t, old.DataDir)
}
