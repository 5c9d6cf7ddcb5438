// Package keyvault is Tandem's built-in key vault: a separate process
// (tandem keyvault) that holds customer-managed keys with versions, and
// wraps and unwraps data keys with them over a REST API shaped like Azure
// Key Vault's (keys/{name}/{version}/wrapkey, unwrapkey, A256KW). Key
// material never leaves it. Its data (the keys, sealed by a master key) and
// its TLS certificate authority live in its own data directory, apart from
// any region's, so a region's operator cannot read the keys from the
// region's disk.
package keyvault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/atomicfile"
)

// Version is one version of a key.
type Version struct {
	ID       string `json:"id"`
	Material []byte `json:"material"`
	Enabled  bool   `json:"enabled"`
	Created  int64  `json:"created"`
	Updated  int64  `json:"updated"`
}

// Key is a named key; its last version is the current one.
type Key struct {
	Name     string     `json:"name"`
	Versions []*Version `json:"versions"`
	// Deleted is set by a (soft) delete; the key can be recovered.
	Deleted int64 `json:"deleted,omitempty"`
}

func (k *Key) latest() *Version { return k.Versions[len(k.Versions)-1] }

func (k *Key) version(id string) *Version {
	if id == "" {
		return k.latest()
	}
	for _, v := range k.Versions {
		if v.ID == id {
			return v
		}
	}
	return nil
}

// Errors of the vault.
var (
	errNotFound = errors.New("not found")
	errExists   = errors.New("exists")
)

// Vault holds the keys in a file sealed by the master key.
type Vault struct {
	path   string
	master cipher.AEAD
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*Key
}

// MasterKeyEnv may hold the vault's master key (64 hex characters).
const MasterKeyEnv = "TANDEM_KEYVAULT_MASTER_KEY"

// Open opens the vault in dir. The master key comes from
// TANDEM_KEYVAULT_MASTER_KEY, else dir/master.key (created on first use).
func Open(dir string) (*Vault, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	mk, err := masterKey(dir)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(mk)
	aead, _ := cipher.NewGCM(block)
	v := &Vault{path: filepath.Join(dir, "keys.sealed"), master: aead, now: time.Now, keys: map[string]*Key{}}
	sealed, err := os.ReadFile(v.path)
	if errors.Is(err, os.ErrNotExist) {
		return v, nil
	}
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(sealed) < ns {
		return nil, errors.New("key vault file is truncated")
	}
	plain, err := aead.Open(nil, sealed[:ns], sealed[ns:], []byte("tandem keyvault"))
	if err != nil {
		return nil, errors.New("cannot open the key vault: wrong master key or a damaged file")
	}
	if err := json.Unmarshal(plain, &v.keys); err != nil {
		return nil, err
	}
	return v, nil
}

func masterKey(dir string) ([]byte, error) {
	if s := strings.TrimSpace(os.Getenv(MasterKeyEnv)); s != "" {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%s must be 64 hex characters", MasterKeyEnv)
		}
		return b, nil
	}
	p := filepath.Join(dir, "master.key")
	if b, err := os.ReadFile(p); err == nil {
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("%s must hold 64 hex characters", p)
		}
		return k, nil
	}
	k := make([]byte, 32)
	rand.Read(k)
	if err := atomicfile.Write(p, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

func (v *Vault) saveLocked() error {
	plain, _ := json.Marshal(v.keys)
	nonce := make([]byte, v.master.NonceSize())
	rand.Read(nonce)
	return atomicfile.Write(v.path, v.master.Seal(nonce, nonce, plain, []byte("tandem keyvault")), 0o600)
}

func newVersion(now time.Time) *Version {
	id := make([]byte, 16)
	rand.Read(id)
	m := make([]byte, 32)
	rand.Read(m)
	return &Version{ID: hex.EncodeToString(id), Material: m, Enabled: true, Created: now.Unix(), Updated: now.Unix()}
}

// update runs fn on the key (nil if missing) and saves; fn's error undoes
// nothing, so fn changes state only once it cannot fail.
func (v *Vault) update(fn func() error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := fn(); err != nil {
		return err
	}
	return v.saveLocked()
}

// Create makes a key with one version, or a new version of an existing key
// (Azure's create does the same).
func (v *Vault) Create(name string, enabled bool) (*Key, error) {
	var out *Key
	err := v.update(func() error {
		k := v.keys[name]
		if k != nil && k.Deleted != 0 {
			return fmt.Errorf("key %s is deleted but recoverable: %w", name, errExists)
		}
		if k == nil {
			k = &Key{Name: name}
			v.keys[name] = k
		}
		nv := newVersion(v.now())
		nv.Enabled = enabled
		k.Versions = append(k.Versions, nv)
		out = cloneKey(k)
		return nil
	})
	return out, err
}

// Rotate adds a version.
func (v *Vault) Rotate(name string) (*Key, error) {
	var out *Key
	err := v.update(func() error {
		k, err := v.liveLocked(name)
		if err != nil {
			return err
		}
		k.Versions = append(k.Versions, newVersion(v.now()))
		out = cloneKey(k)
		return nil
	})
	return out, err
}

func (v *Vault) liveLocked(name string) (*Key, error) {
	k := v.keys[name]
	if k == nil || k.Deleted != 0 {
		return nil, fmt.Errorf("a key with name %s was not found in this key vault: %w", name, errNotFound)
	}
	return k, nil
}

// SetEnabled enables or disables one version, or every version when
// version is empty.
func (v *Vault) SetEnabled(name, version string, enabled bool) (*Key, error) {
	var out *Key
	err := v.update(func() error {
		k, err := v.liveLocked(name)
		if err != nil {
			return err
		}
		if version != "" && k.version(version) == nil {
			return fmt.Errorf("key %s has no version %s: %w", name, version, errNotFound)
		}
		for _, ver := range k.Versions {
			if version == "" || ver.ID == version {
				ver.Enabled, ver.Updated = enabled, v.now().Unix()
			}
		}
		out = cloneKey(k)
		return nil
	})
	return out, err
}

// Delete soft-deletes a key; Recover brings it back.
func (v *Vault) Delete(name string) (*Key, error) {
	var out *Key
	err := v.update(func() error {
		k, err := v.liveLocked(name)
		if err != nil {
			return err
		}
		k.Deleted = v.now().Unix()
		out = cloneKey(k)
		return nil
	})
	return out, err
}

// Recover undoes a delete.
func (v *Vault) Recover(name string) (*Key, error) {
	var out *Key
	err := v.update(func() error {
		k := v.keys[name]
		if k == nil || k.Deleted == 0 {
			return fmt.Errorf("no deleted key named %s: %w", name, errNotFound)
		}
		k.Deleted = 0
		out = cloneKey(k)
		return nil
	})
	return out, err
}

// Get returns a key.
func (v *Vault) Get(name string) (*Key, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	k, err := v.liveLocked(name)
	if err != nil {
		return nil, err
	}
	return cloneKey(k), nil
}

// List returns the live keys.
func (v *Vault) List() []*Key {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []*Key
	for _, k := range v.keys {
		if k.Deleted == 0 {
			out = append(out, cloneKey(k))
		}
	}
	return out
}

// errDisabled is a refused operation on a disabled version.
type errDisabled struct{ op string }

func (e errDisabled) Error() string {
	return fmt.Sprintf("Operation %s is not allowed on a disabled key.", e.op)
}

// Wrap wraps a data key with a version (the newest when version is empty).
func (v *Vault) Wrap(name, version string, dek []byte) (string, []byte, error) {
	m, id, err := v.material(name, version, "wrapKey")
	if err != nil {
		return "", nil, err
	}
	w, err := keyWrap(m, dek)
	return id, w, err
}

// Unwrap unwraps with the named version.
func (v *Vault) Unwrap(name, version string, wrapped []byte) ([]byte, error) {
	m, _, err := v.material(name, version, "unwrapKey")
	if err != nil {
		return nil, err
	}
	return keyUnwrap(m, wrapped)
}

func (v *Vault) material(name, version, op string) ([]byte, string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	k, err := v.liveLocked(name)
	if err != nil {
		return nil, "", err
	}
	ver := k.version(version)
	if ver == nil {
		return nil, "", fmt.Errorf("key %s has no version %s: %w", name, version, errNotFound)
	}
	if !ver.Enabled {
		return nil, "", errDisabled{op: op}
	}
	return ver.Material, ver.ID, nil
}

func cloneKey(k *Key) *Key {
	c := &Key{Name: k.Name, Deleted: k.Deleted}
	for _, v := range k.Versions {
		cv := *v
		cv.Material = nil
		c.Versions = append(c.Versions, &cv)
	}
	return c
}
