package replication

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tandemdata/tandem/internal/keys"
)

// Secrets are stored as ciphertext under per-scope data keys wrapped by the
// region's platform key "secrets". For the secondary to read them after a
// failover, both regions must hold the same key material; each region keeps
// it in its own keyring, sealed by its own master key. The follower fetches
// the shared keys when it starts following and again every few minutes (a
// rotation on the primary reaches the secondary that way). On the wire the
// material is encrypted end to end, inside the mutual-TLS link, to a fresh
// X25519 key of the requester: a proxy that terminates TLS, or a packet
// capture with the TLS keys, still sees no key.

// keyRequest asks the peer for its shared keys, sealed to PublicKey.
type keyRequest struct {
	Names     []string `json:"names"`
	PublicKey []byte   `json:"public_key"`
}

// keyResponse carries the sealed keys and the peer's ephemeral public key.
type keyResponse struct {
	PublicKey []byte `json:"public_key"`
	Sealed    []byte `json:"sealed"`
}

const keyInfo = "tandem replication shared keys v1"

// sealKeys encrypts versions (name -> versions) to the requester's public
// key with a fresh ephemeral key. aad binds the ciphertext to both keys.
func sealKeys(requester []byte, versions map[string][][]byte) (keyResponse, error) {
	curve := ecdh.X25519()
	peerPub, err := curve.NewPublicKey(requester)
	if err != nil {
		return keyResponse{}, fmt.Errorf("requester public key: %w", err)
	}
	eph, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return keyResponse{}, err
	}
	shared, err := eph.ECDH(peerPub)
	if err != nil {
		return keyResponse{}, err
	}
	kek, err := hkdf.Key(sha256.New, shared, nil, keyInfo, 32)
	if err != nil {
		return keyResponse{}, err
	}
	plain, err := json.Marshal(versions)
	if err != nil {
		return keyResponse{}, err
	}
	aad := append(append([]byte(nil), requester...), eph.PublicKey().Bytes()...)
	sealed, err := keys.Seal(kek, plain, aad)
	clear(plain)
	if err != nil {
		return keyResponse{}, err
	}
	return keyResponse{PublicKey: eph.PublicKey().Bytes(), Sealed: sealed}, nil
}

// openKeys decrypts a keyResponse with the requester's private key.
func openKeys(priv *ecdh.PrivateKey, resp keyResponse) (map[string][][]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(resp.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("peer public key: %w", err)
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, err
	}
	kek, err := hkdf.Key(sha256.New, shared, nil, keyInfo, 32)
	if err != nil {
		return nil, err
	}
	aad := append(append([]byte(nil), priv.PublicKey().Bytes()...), resp.PublicKey...)
	plain, err := keys.Open(kek, resp.Sealed, aad)
	if err != nil {
		return nil, errors.New("the peer's keys do not open: the exchange was tampered with")
	}
	defer clear(plain)
	var out map[string][][]byte
	if err := json.Unmarshal(plain, &out); err != nil {
		return nil, fmt.Errorf("decode the peer's keys: %w", err)
	}
	return out, nil
}
