package digest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tandemdata/tandem/internal/atomicfile"
)

// Key file names in the region's audit directory.
const (
	PrivateKeyFile = "digest-key.pem"
	PublicKeyFile  = "digest-key.pub.pem"
)

// Key is a region's digest signing key.
type Key struct {
	priv ed25519.PrivateKey
}

// LoadOrCreateKey reads the region's key from dir, creating it on first
// use. The private key stays in dir (mode 0600); the public key is written
// beside it for operators to hand to `tandem audit verify`.
func LoadOrCreateKey(dir string) (*Key, error) {
	p := filepath.Join(dir, PrivateKeyFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, gerr
		}
		der, merr := x509.MarshalPKCS8PrivateKey(priv)
		if merr != nil {
			return nil, merr
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("write digest key: %w", err)
		}
		b, err = os.ReadFile(p)
	}
	if err != nil {
		return nil, fmt.Errorf("read digest key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("digest key %s is not PEM", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("digest key %s: %w", p, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("digest key %s is not an Ed25519 key", p)
	}
	key := &Key{priv: priv}
	pub, err := key.PublicPEM()
	if err != nil {
		return nil, err
	}
	if old, err := os.ReadFile(filepath.Join(dir, PublicKeyFile)); err != nil || string(old) != string(pub) {
		if err := atomicfile.Write(filepath.Join(dir, PublicKeyFile), pub, 0o644); err != nil {
			return nil, fmt.Errorf("export digest public key: %w", err)
		}
	}
	return key, nil
}

// NewKey wraps an existing private key (tests, benchmarks).
func NewKey(priv ed25519.PrivateKey) *Key { return &Key{priv: priv} }

// Public is the verification key.
func (k *Key) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// Fingerprint names the public key: hex SHA-256 of its raw bytes.
func (k *Key) Fingerprint() string { return Fingerprint(k.Public()) }

// Fingerprint names a public key: hex SHA-256 of its raw bytes.
func Fingerprint(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:])
}

// PublicPEM is the public key as a PEM PKIX block.
func (k *Key) PublicPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a PEM PKIX Ed25519 public key.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("public key is not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("public key is not an Ed25519 key")
	}
	return pub, nil
}

func (k *Key) sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }
