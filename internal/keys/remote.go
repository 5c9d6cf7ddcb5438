package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// More sentinel errors of remote key sources. ErrKeyAccessDenied (the vault
// refused the credentials) maps to PERMISSION_DENIED like a disabled key;
// ErrKeyUnavailable (the vault cannot be reached) to TEMPORARILY_UNAVAILABLE.
// Both fail closed: nothing is read or written without the key.
var (
	ErrKeyAccessDenied = errors.New("access to the key is denied")
	ErrKeyUnavailable  = errors.New("the key vault is unavailable")
)

// Versioned is implemented by KEKs whose wrapped form names the key
// version that made it.
type Versioned interface {
	// WrappedVersion returns the key version inside a wrapped key.
	WrappedVersion(wrapped []byte) string
}

// WrappedVersion implements Versioned: platform versions count from 1.
func (p *platformKEK) WrappedVersion(wrapped []byte) string {
	if len(wrapped) == 0 {
		return ""
	}
	return strconv.Itoa(int(wrapped[0]) + 1)
}

// KeyVaultConfig names a key in Tandem's key vault (tandem keyvault) or any
// service with Azure Key Vault's wrapkey/unwrapkey API.
type KeyVaultConfig struct {
	// URL is the vault's base URL.
	URL     string
	KeyName string
	// KeyVersion pins a version; empty wraps with the newest.
	KeyVersion string
	// Token is the bearer token.
	Token string
	// Client is the HTTP client (its TLS config trusts the vault's CA).
	Client *http.Client
}

// KeyVaultKEK wraps data keys with a key held in a key vault: the key
// never leaves the vault; Wrap and Unwrap are calls to it.
type KeyVaultKEK struct{ cfg KeyVaultConfig }

// NewKeyVaultKEK returns the KEK of cfg.
func NewKeyVaultKEK(cfg KeyVaultConfig) *KeyVaultKEK {
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &KeyVaultKEK{cfg: cfg}
}

// ID names the key as its key identifier without a version (or with the
// pinned one).
func (k *KeyVaultKEK) ID() string {
	id := k.cfg.URL + "/keys/" + k.cfg.KeyName
	if k.cfg.KeyVersion != "" {
		id += "/" + k.cfg.KeyVersion
	}
	return id
}

// WrapAlgorithm is the key wrap algorithm (RFC 3394 with a 256-bit key, as
// Azure Key Vault names it).
const WrapAlgorithm = "A256KW"

type kvOp struct {
	Alg   string `json:"alg"`
	Value string `json:"value"`
}

type kvResult struct {
	Kid   string `json:"kid"`
	Value string `json:"value"`
}

// Wrap asks the vault to wrap dek. The wrapped form is the key identifier
// with its version, a newline, and the vault's result.
func (k *KeyVaultKEK) Wrap(ctx context.Context, dek []byte) ([]byte, error) {
	path := "/keys/" + k.cfg.KeyName
	if k.cfg.KeyVersion != "" {
		path += "/" + k.cfg.KeyVersion
	}
	var res kvResult
	if err := k.call(ctx, path+"/wrapkey", kvOp{Alg: WrapAlgorithm, Value: b64url(dek)}, &res); err != nil {
		return nil, err
	}
	ver := res.Kid[strings.LastIndex(res.Kid, "/")+1:]
	return []byte(ver + "\n" + res.Value), nil
}

// Unwrap asks the vault to unwrap with the version that wrapped.
func (k *KeyVaultKEK) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	ver, val, ok := strings.Cut(string(wrapped), "\n")
	if !ok || ver == "" {
		return nil, fmt.Errorf("%s: wrapped key is malformed", k.ID())
	}
	var res kvResult
	if err := k.call(ctx, "/keys/"+k.cfg.KeyName+"/"+ver+"/unwrapkey", kvOp{Alg: WrapAlgorithm, Value: val}, &res); err != nil {
		return nil, err
	}
	return unb64url(res.Value)
}

// WrappedVersion implements Versioned.
func (k *KeyVaultKEK) WrappedVersion(wrapped []byte) string {
	ver, _, _ := strings.Cut(string(wrapped), "\n")
	return ver
}

func (k *KeyVaultKEK) call(ctx context.Context, path string, body, out any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.cfg.URL+path+"?api-version=7.4", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+k.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.cfg.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("key vault key %s: %w: %v", k.ID(), ErrKeyUnavailable, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		return json.Unmarshal(raw, out)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	json.Unmarshal(raw, &e)
	msg := e.Error.Message
	if msg == "" {
		msg = resp.Status
	}
	return fmt.Errorf("key vault key %s: %w (%s)", k.ID(), statusErr(resp.StatusCode, e.Error.Code), msg)
}

func statusErr(status int, code string) error {
	switch {
	case status == http.StatusUnauthorized:
		return ErrKeyAccessDenied
	case status == http.StatusForbidden && code == "KeyDisabled", status == http.StatusForbidden && code == "Forbidden":
		return ErrKeyDisabled
	case status == http.StatusForbidden:
		return ErrKeyAccessDenied
	case status == http.StatusNotFound:
		return ErrKeyNotFound
	case status >= 500 || status == http.StatusTooManyRequests:
		return ErrKeyUnavailable
	case status == http.StatusBadRequest:
		// A wrapped key the vault cannot open: the wrong key.
		return ErrKeyNotFound
	}
	return fmt.Errorf("unexpected status %d", status)
}
