package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// TransitConfig names a key of HashiCorp Vault's Transit secrets engine.
type TransitConfig struct {
	// Address is Vault's address (https://127.0.0.1:8200).
	Address string
	// Mount is the engine's mount path (default "transit").
	Mount   string
	KeyName string
	Token   string
	Client  *http.Client
}

// TransitKEK wraps data keys with Transit's encrypt, decrypt and rewrap.
// Its wrapped form is Transit's ciphertext, "vault:vN:...", which names the
// key version.
type TransitKEK struct{ cfg TransitConfig }

// NewTransitKEK returns the KEK of cfg.
func NewTransitKEK(cfg TransitConfig) *TransitKEK {
	cfg.Address = strings.TrimSuffix(cfg.Address, "/")
	if cfg.Mount == "" {
		cfg.Mount = "transit"
	}
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &TransitKEK{cfg: cfg}
}

// ID names the key by its Transit path.
func (t *TransitKEK) ID() string {
	return t.cfg.Address + "/v1/" + t.cfg.Mount + "/keys/" + t.cfg.KeyName
}

// Wrap encrypts dek with the key's newest version.
func (t *TransitKEK) Wrap(ctx context.Context, dek []byte) ([]byte, error) {
	var out struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := t.call(ctx, "encrypt", map[string]string{"plaintext": base64.StdEncoding.EncodeToString(dek)}, &out); err != nil {
		return nil, err
	}
	return []byte(out.Ciphertext), nil
}

// Unwrap decrypts a wrapped key.
func (t *TransitKEK) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	var out struct {
		Plaintext string `json:"plaintext"`
	}
	if err := t.call(ctx, "decrypt", map[string]string{"ciphertext": string(wrapped)}, &out); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(out.Plaintext)
}

// Rewrap re-encrypts a wrapped key under the newest version without the
// data key leaving Vault.
func (t *TransitKEK) Rewrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	var out struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := t.call(ctx, "rewrap", map[string]string{"ciphertext": string(wrapped)}, &out); err != nil {
		return nil, err
	}
	return []byte(out.Ciphertext), nil
}

// WrappedVersion implements Versioned: "vault:v3:..." is version 3.
func (t *TransitKEK) WrappedVersion(wrapped []byte) string {
	parts := strings.SplitN(string(wrapped), ":", 3)
	if len(parts) == 3 && parts[0] == "vault" {
		return strings.TrimPrefix(parts[1], "v")
	}
	return ""
}

func (t *TransitKEK) call(ctx context.Context, op string, body map[string]string, out any) error {
	b, _ := json.Marshal(body)
	url := t.cfg.Address + "/v1/" + t.cfg.Mount + "/" + op + "/" + t.cfg.KeyName
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", t.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.cfg.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("transit key %s: %w: %v", t.ID(), ErrKeyUnavailable, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(raw, &env); err != nil {
			return fmt.Errorf("transit key %s: decode response: %w", t.ID(), err)
		}
		return json.Unmarshal(env.Data, out)
	}
	var e struct {
		Errors []string `json:"errors"`
	}
	json.Unmarshal(raw, &e)
	msg := strings.Join(e.Errors, "; ")
	if msg == "" {
		msg = resp.Status
	}
	msg = strings.Join(strings.Fields(msg), " ")
	return fmt.Errorf("transit key %s: %w (%s)", t.ID(), transitErr(resp.StatusCode, msg), msg)
}

// transitErr maps Vault's answers: 403 is a token without the policy,
// "disallowed by policy" a version below min_decryption_version (the
// operator's way to revoke old versions), "not found" a deleted key, 503 a
// sealed Vault.
func transitErr(status int, msg string) error {
	switch {
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		return ErrKeyAccessDenied
	case strings.Contains(msg, "disallowed by policy"):
		return ErrKeyDisabled
	case status == http.StatusNotFound || strings.Contains(msg, "not found"):
		return ErrKeyNotFound
	case status >= 500 || status == http.StatusTooManyRequests:
		return ErrKeyUnavailable
	case status == http.StatusBadRequest:
		return ErrKeyNotFound
	}
	return fmt.Errorf("unexpected status %d", status)
}
