// Package transittest is an in-process stand-in for HashiCorp Vault's
// Transit secrets engine, for tests: no Vault server can be installed on
// this project's machines (no Debian, npm or PyPI package ships one). It
// implements the endpoints Tandem's Transit client uses, with Vault's
// request and response shapes as its API documentation gives them
// (website/content/api-docs/secret/transit.mdx): keys with versions
// (create, read, rotate, config min_decryption_version, delete when
// deletion_allowed), encrypt, decrypt and rewrap with "vault:vN:"
// ciphertexts (aes256-gcm96), X-Vault-Token authentication, and errors as
// {"errors": [...]} with Vault's status codes.
package transittest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is a fake Transit engine mounted at /v1/transit.
type Server struct {
	*httptest.Server
	Token string

	mu   sync.Mutex
	keys map[string]*key
}

type key struct {
	versions       [][]byte
	created        []time.Time
	minDecryption  int
	deletionAllowd bool
}

// Start starts a server over TLS; Client() trusts it.
func Start(token string) *Server {
	s := &Server{Token: token, keys: map[string]*key{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/transit/keys/{name}", s.auth(s.create))
	mux.HandleFunc("GET /v1/transit/keys/{name}", s.auth(s.read))
	mux.HandleFunc("DELETE /v1/transit/keys/{name}", s.auth(s.delete))
	mux.HandleFunc("POST /v1/transit/keys/{name}/rotate", s.auth(s.rotate))
	mux.HandleFunc("POST /v1/transit/keys/{name}/config", s.auth(s.config))
	mux.HandleFunc("POST /v1/transit/encrypt/{name}", s.auth(s.encrypt))
	mux.HandleFunc("POST /v1/transit/decrypt/{name}", s.auth(s.decrypt))
	mux.HandleFunc("POST /v1/transit/rewrap/{name}", s.auth(s.rewrap))
	s.Server = httptest.NewTLSServer(mux)
	return s
}

func fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string][]string{"errors": {msg}})
}

func reply(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"request_id": "00000000-0000-0000-0000-000000000000", "lease_id": "",
		"renewable": false, "lease_duration": 0, "data": data, "wrap_info": nil, "warnings": nil, "auth": nil})
}

func (s *Server) auth(fn func(http.ResponseWriter, *http.Request, map[string]any)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != s.Token {
			fail(w, http.StatusForbidden, "permission denied")
			return
		}
		body := map[string]any{}
		if r.ContentLength != 0 {
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				fail(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
				return
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		fn(w, r, body)
	}
}

func newMaterial() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, body map[string]any) {
	name := r.PathValue("name")
	if t, ok := body["type"].(string); ok && t != "aes256-gcm96" {
		fail(w, http.StatusBadRequest, "this stand-in supports aes256-gcm96 keys only")
		return
	}
	if _, ok := s.keys[name]; !ok {
		s.keys[name] = &key{versions: [][]byte{newMaterial()}, created: []time.Time{time.Now()}, minDecryption: 1}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) read(w http.ResponseWriter, r *http.Request, _ map[string]any) {
	k := s.keys[r.PathValue("name")]
	if k == nil {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"errors":[]}`))
		return
	}
	versions := map[string]int64{}
	for i, c := range k.created {
		versions[strconv.Itoa(i+1)] = c.Unix()
	}
	reply(w, map[string]any{"name": r.PathValue("name"), "type": "aes256-gcm96", "keys": versions,
		"latest_version": len(k.versions), "min_decryption_version": k.minDecryption, "min_encryption_version": 0,
		"deletion_allowed": k.deletionAllowd, "supports_encryption": true, "supports_decryption": true})
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, _ map[string]any) {
	k := s.keys[r.PathValue("name")]
	if k == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !k.deletionAllowd {
		fail(w, http.StatusBadRequest, "deletion is not allowed for this key")
		return
	}
	delete(s.keys, r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request, _ map[string]any) {
	k := s.keys[r.PathValue("name")]
	if k == nil {
		fail(w, http.StatusBadRequest, "key not found")
		return
	}
	k.versions = append(k.versions, newMaterial())
	k.created = append(k.created, time.Now())
	s.read(w, r, nil)
}

func (s *Server) config(w http.ResponseWriter, r *http.Request, body map[string]any) {
	k := s.keys[r.PathValue("name")]
	if k == nil {
		fail(w, http.StatusBadRequest, "no existing key named "+r.PathValue("name")+" could be found")
		return
	}
	if v, ok := body["min_decryption_version"].(float64); ok {
		if int(v) > len(k.versions) {
			fail(w, http.StatusBadRequest, "cannot set min decryption version to a value greater than the latest version")
			return
		}
		k.minDecryption = max(int(v), 1)
	}
	if v, ok := body["deletion_allowed"].(bool); ok {
		k.deletionAllowd = v
	}
	s.read(w, r, nil)
}

func gcm(m []byte) cipher.AEAD {
	b, _ := aes.NewCipher(m)
	a, _ := cipher.NewGCM(b)
	return a
}

func (s *Server) encrypt(w http.ResponseWriter, r *http.Request, body map[string]any) {
	k := s.keys[r.PathValue("name")]
	if k == nil {
		// Vault creates the key on encrypt (upsert) by default.
		k = &key{versions: [][]byte{newMaterial()}, created: []time.Time{time.Now()}, minDecryption: 1}
		s.keys[r.PathValue("name")] = k
	}
	pt, err := base64.StdEncoding.DecodeString(fmt.Sprint(body["plaintext"]))
	if err != nil {
		fail(w, http.StatusBadRequest, "failed to base64-decode plaintext")
		return
	}
	reply(w, map[string]any{"ciphertext": seal(k, pt), "key_version": len(k.versions)})
}

func seal(k *key, pt []byte) string {
	a := gcm(k.versions[len(k.versions)-1])
	nonce := make([]byte, a.NonceSize())
	rand.Read(nonce)
	return fmt.Sprintf("vault:v%d:%s", len(k.versions), base64.StdEncoding.EncodeToString(a.Seal(nonce, nonce, pt, nil)))
}

func open(k *key, ct string) ([]byte, int, string) {
	parts := strings.SplitN(ct, ":", 3)
	if len(parts) != 3 || parts[0] != "vault" || !strings.HasPrefix(parts[1], "v") {
		return nil, http.StatusBadRequest, "invalid ciphertext: no prefix"
	}
	v, err := strconv.Atoi(parts[1][1:])
	if err != nil || v < 1 || v > len(k.versions) {
		return nil, http.StatusBadRequest, "invalid ciphertext: version is invalid"
	}
	if v < k.minDecryption {
		return nil, http.StatusBadRequest, "ciphertext or signature version is disallowed by policy (too old)"
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	a := gcm(k.versions[v-1])
	if err != nil || len(raw) < a.NonceSize() {
		return nil, http.StatusBadRequest, "invalid ciphertext: could not decode"
	}
	pt, err := a.Open(nil, raw[:a.NonceSize()], raw[a.NonceSize():], nil)
	if err != nil {
		return nil, http.StatusBadRequest, "cipher: message authentication failed"
	}
	return pt, 0, ""
}

func (s *Server) decrypt(w http.ResponseWriter, r *http.Request, body map[string]any) {
	k := s.keys[r.PathValue("name")]
	if k == nil {
		fail(w, http.StatusBadRequest, "encryption key not found")
		return
	}
	pt, status, msg := open(k, fmt.Sprint(body["ciphertext"]))
	if status != 0 {
		fail(w, status, msg)
		return
	}
	reply(w, map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)})
}

func (s *Server) rewrap(w http.ResponseWriter, r *http.Request, body map[string]any) {
	k := s.keys[r.PathValue("name")]
	if k == nil {
		fail(w, http.StatusBadRequest, "encryption key not found")
		return
	}
	pt, status, msg := open(k, fmt.Sprint(body["ciphertext"]))
	if status != 0 {
		fail(w, status, msg)
		return
	}
	reply(w, map[string]any{"ciphertext": seal(k, pt), "key_version": len(k.versions)})
}

// Rotate adds a key version (as POST keys/:name/rotate).
func (s *Server) Rotate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[name]
	k.versions = append(k.versions, newMaterial())
	k.created = append(k.created, time.Now())
}

// SetMinDecryptionVersion sets min_decryption_version (as keys/:name/config).
func (s *Server) SetMinDecryptionVersion(name string, v int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[name].minDecryption = v
}
