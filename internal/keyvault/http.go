package keyvault

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// Handler serves the vault's REST API. Every call needs
// "Authorization: Bearer <token>".
type Handler struct {
	Vault *Vault
	Token string
	mux   *http.ServeMux
}

// NewHandler returns the API handler.
func NewHandler(v *Vault, token string) *Handler {
	h := &Handler{Vault: v, Token: token, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	h.mux.HandleFunc("GET /keys", h.auth(h.list))
	h.mux.HandleFunc("POST /keys/{name}/create", h.auth(h.create))
	h.mux.HandleFunc("POST /keys/{name}/rotate", h.auth(h.rotate))
	h.mux.HandleFunc("GET /keys/{name}", h.auth(h.get))
	h.mux.HandleFunc("GET /keys/{name}/{version}", h.auth(h.get))
	h.mux.HandleFunc("PATCH /keys/{name}", h.auth(h.patch))
	h.mux.HandleFunc("PATCH /keys/{name}/{version}", h.auth(h.patch))
	h.mux.HandleFunc("DELETE /keys/{name}", h.auth(h.delete))
	h.mux.HandleFunc("POST /deletedkeys/{name}/recover", h.auth(h.recover))
	h.mux.HandleFunc("POST /keys/{name}/wrapkey", h.auth(h.wrap))
	h.mux.HandleFunc("POST /keys/{name}/{version}/wrapkey", h.auth(h.wrap))
	h.mux.HandleFunc("POST /keys/{name}/{version}/unwrapkey", h.auth(h.unwrap))
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (h *Handler) auth(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(h.Token)) != 1 {
			writeErr(w, http.StatusUnauthorized, "Unauthorized", "AKV10000: Request is missing a valid Bearer token.")
			return
		}
		fn(w, r)
	}
}

func (h *Handler) fail(w http.ResponseWriter, err error) {
	var d errDisabled
	switch {
	case errors.As(err, &d):
		writeErr(w, http.StatusForbidden, "Forbidden", err.Error())
	case errors.Is(err, errNotFound):
		writeErr(w, http.StatusNotFound, "KeyNotFound", strings.TrimSuffix(err.Error(), ": "+errNotFound.Error()))
	case errors.Is(err, errExists):
		writeErr(w, http.StatusConflict, "Conflict", strings.TrimSuffix(err.Error(), ": "+errExists.Error()))
	default:
		writeErr(w, http.StatusInternalServerError, "InternalError", "The key vault could not complete the request.")
	}
}

// base is the vault's base URL as the caller reached it (kid values).
func base(r *http.Request) string {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

type attributes struct {
	Enabled bool  `json:"enabled"`
	Created int64 `json:"created"`
	Updated int64 `json:"updated"`
}

type keyBundle struct {
	Key struct {
		Kid    string   `json:"kid"`
		Kty    string   `json:"kty"`
		KeyOps []string `json:"key_ops"`
	} `json:"key"`
	Attributes attributes `json:"attributes"`
}

func bundle(r *http.Request, k *Key, v *Version) keyBundle {
	var b keyBundle
	b.Key.Kid = base(r) + "/keys/" + k.Name + "/" + v.ID
	b.Key.Kty = "oct-HSM"
	b.Key.KeyOps = []string{"wrapKey", "unwrapKey"}
	b.Attributes = attributes{Enabled: v.Enabled, Created: v.Created, Updated: v.Updated}
	return b
}

func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Kty        string `json:"kty"`
		KeySize    int    `json:"key_size"`
		Attributes *struct {
			Enabled *bool `json:"enabled"`
		} `json:"attributes"`
	}
	if err := decode(r, &body); err != nil {
		writeErr(w, http.StatusBadRequest, "BadParameter", "The request body is not valid JSON.")
		return
	}
	if body.Kty != "" && body.Kty != "oct-HSM" && body.Kty != "oct" {
		writeErr(w, http.StatusBadRequest, "BadParameter", "This vault holds AES keys only: kty must be oct-HSM.")
		return
	}
	if body.KeySize != 0 && body.KeySize != 256 {
		writeErr(w, http.StatusBadRequest, "BadParameter", "This vault holds 256-bit AES keys only.")
		return
	}
	name := r.PathValue("name")
	if !validName(name) {
		writeErr(w, http.StatusBadRequest, "BadParameter", "Key names are 1-127 letters, digits and dashes.")
		return
	}
	enabled := true
	if body.Attributes != nil && body.Attributes.Enabled != nil {
		enabled = *body.Attributes.Enabled
	}
	k, err := h.Vault.Create(name, enabled)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, bundle(r, k, k.latest()))
}

func validName(s string) bool {
	if s == "" || len(s) > 127 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func (h *Handler) rotate(w http.ResponseWriter, r *http.Request) {
	k, err := h.Vault.Rotate(r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, bundle(r, k, k.latest()))
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	k, err := h.Vault.Get(r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	v := k.version(r.PathValue("version"))
	if v == nil {
		h.fail(w, errNotFound)
		return
	}
	writeJSON(w, http.StatusOK, bundle(r, k, v))
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	type item struct {
		Kid        string     `json:"kid"`
		Attributes attributes `json:"attributes"`
	}
	out := struct {
		Value []item `json:"value"`
	}{Value: []item{}}
	for _, k := range h.Vault.List() {
		v := k.latest()
		out.Value = append(out.Value, item{Kid: base(r) + "/keys/" + k.Name, Attributes: attributes{Enabled: v.Enabled, Created: v.Created, Updated: v.Updated}})
	}
	writeJSON(w, http.StatusOK, out)
}

// patch updates attributes (enabled) of one version, or, without a version
// in the path, of every version: disabling the key as a whole.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Attributes struct {
			Enabled *bool `json:"enabled"`
		} `json:"attributes"`
	}
	if err := decode(r, &body); err != nil || body.Attributes.Enabled == nil {
		writeErr(w, http.StatusBadRequest, "BadParameter", "Send {\"attributes\": {\"enabled\": true|false}}.")
		return
	}
	k, err := h.Vault.SetEnabled(r.PathValue("name"), r.PathValue("version"), *body.Attributes.Enabled)
	if err != nil {
		h.fail(w, err)
		return
	}
	v := k.version(r.PathValue("version"))
	writeJSON(w, http.StatusOK, bundle(r, k, v))
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	k, err := h.Vault.Delete(r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	b := bundle(r, k, k.latest())
	writeJSON(w, http.StatusOK, map[string]any{"key": b.Key, "attributes": b.Attributes,
		"recoveryId": base(r) + "/deletedkeys/" + k.Name, "deletedDate": k.Deleted})
}

func (h *Handler) recover(w http.ResponseWriter, r *http.Request) {
	k, err := h.Vault.Recover(r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, bundle(r, k, k.latest()))
}

type keyOp struct {
	Alg   string `json:"alg"`
	Value string `json:"value"`
}

func (h *Handler) readOp(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	var op keyOp
	if err := decode(r, &op); err != nil {
		writeErr(w, http.StatusBadRequest, "BadParameter", "The request body is not valid JSON.")
		return nil, false
	}
	if op.Alg != "A256KW" {
		writeErr(w, http.StatusBadRequest, "BadParameter", "Unsupported algorithm: this vault wraps with A256KW.")
		return nil, false
	}
	v, err := unb64(op.Value)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "BadParameter", "value is not base64url.")
		return nil, false
	}
	return v, true
}

func (h *Handler) wrap(w http.ResponseWriter, r *http.Request) {
	v, ok := h.readOp(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	id, wrapped, err := h.Vault.Wrap(name, r.PathValue("version"), v)
	if err != nil {
		if errors.Is(err, errNotFound) || errors.As(err, new(errDisabled)) {
			h.fail(w, err)
			return
		}
		writeErr(w, http.StatusBadRequest, "BadParameter", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"kid": base(r) + "/keys/" + name + "/" + id, "value": b64(wrapped)})
}

func (h *Handler) unwrap(w http.ResponseWriter, r *http.Request) {
	v, ok := h.readOp(w, r)
	if !ok {
		return
	}
	name, ver := r.PathValue("name"), r.PathValue("version")
	plain, err := h.Vault.Unwrap(name, ver, v)
	if err != nil {
		if errors.Is(err, errNotFound) || errors.As(err, new(errDisabled)) {
			h.fail(w, err)
			return
		}
		writeErr(w, http.StatusBadRequest, "BadParameter", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"kid": base(r) + "/keys/" + name + "/" + ver, "value": b64(plain)})
}
