// Package keys holds the key-encryption keys (KEKs) of a region. Data is
// encrypted with data keys (DEKs) made per object or per secret scope; a DEK
// is stored only wrapped by a KEK. The platform-managed keyring is the
// default KEK source: its keys are kept on local disk, sealed by a master
// key read from a file or the environment. Customer-managed keys held in a
// key vault implement the same KEK interface.
package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tandemdata/tandem/internal/atomicfile"
)

// Sentinel errors callers branch on; the API maps them to PERMISSION_DENIED
// naming the key, so reads and writes fail closed.
var (
	ErrKeyDisabled = errors.New("key is disabled")
	ErrKeyNotFound = errors.New("key not found")
)

// KEK wraps and unwraps data keys. The wrapped form names the key version
// that made it, so unwrapping keeps working after rotation.
type KEK interface {
	// ID names the key for errors and audit records (never its material).
	ID() string
	Wrap(ctx context.Context, dek []byte) ([]byte, error)
	Unwrap(ctx context.Context, wrapped []byte) ([]byte, error)
}

// NewDEK returns a fresh 256-bit data key.
func NewDEK() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}

// MasterKeyEnv names the environment variable that may hold the master key
// (64 hex characters or base64 of 32 bytes).
const MasterKeyEnv = "TANDEM_MASTER_KEY"

// Keyring is the platform-managed keyring: named KEKs with versions, stored
// in one file sealed by the master key.
type Keyring struct {
	path   string
	master cipher.AEAD

	mu   sync.Mutex
	keys map[string]*ringKey
}

type ringKey struct {
	Versions [][]byte `json:"versions"` // key material, oldest first
	Disabled bool     `json:"disabled"`
}

// OpenKeyring opens the keyring in dir. The master key comes from
// TANDEM_MASTER_KEY if set, else from dir/master.key, which is created on
// first use (mode 0600).
func OpenKeyring(dir string) (*Keyring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	mk, err := masterKey(dir)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(mk)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &Keyring{path: filepath.Join(dir, "keyring.sealed"), master: aead, keys: map[string]*ringKey{}}
	sealed, err := os.ReadFile(k.path)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	ns := aead.NonceSize()
	if len(sealed) < ns {
		return nil, errors.New("keyring file is truncated")
	}
	plain, err := aead.Open(nil, sealed[:ns], sealed[ns:], []byte("tandem keyring"))
	if err != nil {
		return nil, errors.New("cannot open the keyring: wrong master key or a damaged file")
	}
	if err := json.Unmarshal(plain, &k.keys); err != nil {
		return nil, fmt.Errorf("decode keyring: %w", err)
	}
	return k, nil
}

func masterKey(dir string) ([]byte, error) {
	if v := strings.TrimSpace(os.Getenv(MasterKeyEnv)); v != "" {
		return parseKey(v)
	}
	p := filepath.Join(dir, "master.key")
	b, err := os.ReadFile(p)
	if err == nil {
		return parseKey(strings.TrimSpace(string(b)))
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	mk := NewDEK()
	if err := atomicfile.Write(p, []byte(hex.EncodeToString(mk)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write master key: %w", err)
	}
	return mk, nil
}

func parseKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	return nil, errors.New("master key must be 32 bytes, as 64 hex characters or base64")
}

func (k *Keyring) saveLocked() error {
	plain, err := json.Marshal(k.keys)
	if err != nil {
		return err
	}
	nonce := make([]byte, k.master.NonceSize())
	rand.Read(nonce)
	sealed := k.master.Seal(nonce, nonce, plain, []byte("tandem keyring"))
	return atomicfile.Write(k.path, sealed, 0o600)
}

// KEK returns the named platform key, creating it on first use.
func (k *Keyring) KEK(name string) (KEK, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keys[name]; !ok {
		k.keys[name] = &ringKey{Versions: [][]byte{NewDEK()}}
		if err := k.saveLocked(); err != nil {
			delete(k.keys, name)
			return nil, fmt.Errorf("save keyring: %w", err)
		}
	}
	return &platformKEK{ring: k, name: name}, nil
}

// Rotate adds a new version of the named key; new wraps use it, and data
// wrapped by older versions still unwraps.
func (k *Keyring) Rotate(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	rk, ok := k.keys[name]
	if !ok {
		return fmt.Errorf("platform key %s: %w", name, ErrKeyNotFound)
	}
	rk.Versions = append(rk.Versions, NewDEK())
	return k.saveLocked()
}

// SetDisabled disables or re-enables a platform key.
func (k *Keyring) SetDisabled(name string, disabled bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	rk, ok := k.keys[name]
	if !ok {
		return fmt.Errorf("platform key %s: %w", name, ErrKeyNotFound)
	}
	rk.Disabled = disabled
	return k.saveLocked()
}

type platformKEK struct {
	ring *Keyring
	name string
}

func (p *platformKEK) ID() string { return "platform/" + p.name }

func (p *platformKEK) material(version int) ([]byte, int, error) {
	p.ring.mu.Lock()
	defer p.ring.mu.Unlock()
	rk, ok := p.ring.keys[p.name]
	if !ok {
		return nil, 0, fmt.Errorf("%s: %w", p.ID(), ErrKeyNotFound)
	}
	if rk.Disabled {
		return nil, 0, fmt.Errorf("%s: %w", p.ID(), ErrKeyDisabled)
	}
	if version < 0 {
		version = len(rk.Versions) - 1
	}
	if version >= len(rk.Versions) {
		return nil, 0, fmt.Errorf("%s version %d: %w", p.ID(), version+1, ErrKeyNotFound)
	}
	return rk.Versions[version], version, nil
}

// Wrap seals dek with the newest version: one byte of version, then nonce
// and ciphertext of AES-256-GCM.
func (p *platformKEK) Wrap(ctx context.Context, dek []byte) ([]byte, error) {
	key, v, err := p.material(-1)
	if err != nil {
		return nil, err
	}
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	out := []byte{byte(v)}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, dek, []byte(p.ID())), nil
}

func (p *platformKEK) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	if len(wrapped) < 1+12+16 {
		return nil, fmt.Errorf("%s: wrapped key is truncated", p.ID())
	}
	key, _, err := p.material(int(wrapped[0]))
	if err != nil {
		return nil, err
	}
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	dek, err := aead.Open(nil, wrapped[1:1+ns], wrapped[1+ns:], []byte(p.ID()))
	if err != nil {
		return nil, fmt.Errorf("%s: wrapped key does not open with this key", p.ID())
	}
	return dek, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext with a data key (AES-256-GCM, random nonce),
// binding it to aad.
func Seal(dek, plaintext, aad []byte) ([]byte, error) {
	aead, err := gcm(dek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Open decrypts what Seal made.
func Open(dek, sealed, aad []byte) ([]byte, error) {
	aead, err := gcm(dek)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(sealed) < ns+aead.Overhead() {
		return nil, errors.New("sealed value is truncated")
	}
	return aead.Open(nil, sealed[:ns], sealed[ns:], aad)
}

// Export returns every version of the named platform key, oldest first,
// creating the key on first use. It exists for one purpose: sharing the keys
// that wrap replicated data with the peer disaster-recovery region, over a
// channel that encrypts them end to end (internal/replication). Nothing else
// may call it, and its result must never be logged.
func (k *Keyring) Export(name string) ([][]byte, error) {
	if _, err := k.KEK(name); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	rk := k.keys[name]
	out := make([][]byte, len(rk.Versions))
	for i, v := range rk.Versions {
		out[i] = append([]byte(nil), v...)
	}
	return out, nil
}

// Adopt makes the named key hold the given versions, as exported by the
// peer region, so that data the peer wrapped unwraps here. When the local
// key's versions are a prefix of them (the usual case: the peer rotated
// since) the new versions are added; when they differ (a region that
// rotated on its own while cut off), the local versions are kept under
// name+"@replaced-"+suffix, never destroyed, and the peer's replace them.
// It reports whether anything changed.
func (k *Keyring) Adopt(name string, versions [][]byte, suffix string) (bool, error) {
	if len(versions) == 0 {
		return false, fmt.Errorf("adopt %s: no key versions", name)
	}
	for _, v := range versions {
		if len(v) != 32 {
			return false, fmt.Errorf("adopt %s: a key version is not 32 bytes", name)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	rk, ok := k.keys[name]
	if ok && len(rk.Versions) <= len(versions) {
		same := true
		for i := range rk.Versions {
			if subtle.ConstantTimeCompare(rk.Versions[i], versions[i]) != 1 {
				same = false
				break
			}
		}
		if same && len(rk.Versions) == len(versions) {
			return false, nil
		}
		if same {
			ok = false // an extension: nothing to keep aside
		}
	}
	prev := k.keys[name]
	if ok {
		k.keys[name+"@replaced-"+suffix] = prev
	}
	next := &ringKey{}
	if prev != nil {
		next.Disabled = prev.Disabled
	}
	for _, v := range versions {
		next.Versions = append(next.Versions, append([]byte(nil), v...))
	}
	k.keys[name] = next
	if err := k.saveLocked(); err != nil {
		if prev == nil {
			delete(k.keys, name)
		} else {
			k.keys[name] = prev
		}
		if ok {
			delete(k.keys, name+"@replaced-"+suffix)
		}
		return false, fmt.Errorf("save keyring: %w", err)
	}
	return true, nil
}
