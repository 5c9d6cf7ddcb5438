package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

// These tests run the service on a real SQLite store and keyring behind the
// real API mux; the directory and the token check are hand-written fakes
// (the full server's are exercised in secrets_test.go).

type tokens map[string]principal.Principal

func (t tokens) Authenticate(ctx context.Context, token string) (principal.Principal, error) {
	if p, ok := t[token]; ok {
		return p, nil
	}
	return principal.Principal{}, api.Errorf(api.Unauthenticated, "Invalid access token.")
}

type directory map[string]string // name -> kind

func (d directory) LookupPrincipal(ctx context.Context, kind, name string) (string, string, error) {
	for n, k := range d {
		if k == kind && strings.EqualFold(n, name) {
			return "1", n, nil
		}
	}
	return "", "", store.ErrNotFound
}

type journal struct {
	mu   sync.Mutex
	recs []*audit.Record
	fail error
}

func (j *journal) Append(ctx context.Context, r *audit.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fail != nil {
		return j.fail
	}
	j.recs = append(j.recs, r)
	return nil
}

type rig struct {
	svc   *Service
	mux   *api.Mux
	audit *journal
	keys  *keys.Keyring
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(context.Background(), filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kr, err := keys.OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{}
	svc := &Service{Store: st, Keys: kr, Audit: j, ResourceID: "/R",
		Dir: directory{"ann@example.com": "user", "bob@example.com": "user", "Eng": "group", "users": "group"},
		Now: func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }}
	mux := api.NewMux(api.Config{Audit: j, ResourceID: "/R", Auth: tokens{
		"ann": {ID: "1", Kind: principal.User, Name: "ann@example.com", Groups: []string{"users"}},
		"bob": {ID: "2", Kind: principal.User, Name: "bob@example.com", Groups: []string{"Eng", "users"}},
	}})
	mux.Handle(svc.Routes()...)
	return &rig{svc: svc, mux: mux, audit: j, keys: kr}
}

func (r *rig) call(t *testing.T, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	r.mux.ServeHTTP(w, req)
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func (r *rig) must(t *testing.T, token, method, path string, body any) map[string]any {
	t.Helper()
	code, out := r.call(t, token, method, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %v", method, path, code, out)
	}
	return out
}

func TestAScopeHoldsAtMost1000Secrets(t *testing.T) {
	r := newRig(t)
	r.must(t, "ann", "POST", "/api/2.0/secrets/scopes/create", map[string]string{"scope": "full"})
	_, err := r.svc.Store.Update(context.Background(), func(tx store.Tx) error {
		for i := range MaxSecretsPerScope {
			key := fmt.Sprintf("full%sk%04d", sep, i)
			if err := store.Put(tx, kindSecret, key, Secret{Key: fmt.Sprintf("k%04d", i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out := r.call(t, "ann", "POST", "/api/2.0/secrets/put", map[string]string{"scope": "full", "key": "one-more", "string_value": "v"})
	if code != 400 || out["error_code"] != api.ResourceLimitExceeded {
		t.Errorf("the 1001st secret: %d %v", code, out)
	}
	// Overwriting a secret adds none; deleting one makes room.
	r.must(t, "ann", "POST", "/api/2.0/secrets/put", map[string]string{"scope": "full", "key": "k0001", "string_value": "v"})
	r.must(t, "ann", "POST", "/api/2.0/secrets/delete", map[string]string{"scope": "full", "key": "k0002"})
	r.must(t, "ann", "POST", "/api/2.0/secrets/put", map[string]string{"scope": "full", "key": "one-more", "string_value": "v"})
}

func TestAWorkspaceHoldsAtMost1000Scopes(t *testing.T) {
	r := newRig(t)
	_, err := r.svc.Store.Update(context.Background(), func(tx store.Tx) error {
		for i := range MaxScopes {
			if err := store.Put(tx, kindScope, fmt.Sprintf("s%04d", i), Scope{Name: fmt.Sprintf("s%04d", i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out := r.call(t, "ann", "POST", "/api/2.0/secrets/scopes/create", map[string]string{"scope": "one-more"})
	if code != 400 || out["error_code"] != api.ResourceLimitExceeded {
		t.Errorf("the 1001st scope: %d %v", code, out)
	}
}

func TestGetValueChecksReadAndWritesItsOwnAuditRecord(t *testing.T) {
	r := newRig(t)
	r.must(t, "ann", "POST", "/api/2.0/secrets/scopes/create", map[string]string{"scope": "s"})
	r.must(t, "ann", "POST", "/api/2.0/secrets/put", map[string]string{"scope": "s", "key": "k", "string_value": "hunter2"})
	ann := principal.Principal{ID: "1", Kind: principal.User, Name: "ann@example.com", Groups: []string{"users"}}
	bob := principal.Principal{ID: "2", Kind: principal.User, Name: "bob@example.com", Groups: []string{"Eng", "users"}}
	ctx := context.Background()

	cases := []struct {
		name   string
		ctx    context.Context
		scope  string
		key    string
		value  string
		code   string
		status int
	}{
		{"the owner reads", principal.With(ctx, ann), "s", "k", "hunter2", "", 200},
		{"another user without READ", principal.With(ctx, bob), "s", "k", "", api.PermissionDenied, 403},
		{"a missing key", principal.With(ctx, ann), "s", "nope", "", api.ResourceDoesNotExist, 404},
		{"a missing scope", principal.With(ctx, ann), "nope", "k", "", api.ResourceDoesNotExist, 404},
		{"a bad key name", principal.With(ctx, ann), "s", "no/slash", "", api.InvalidParameterValue, 400},
		{"no principal", ctx, "s", "k", "", api.Unauthenticated, 401},
		{"automated work (System-User)", principal.With(ctx, principal.SystemPrincipal), "s", "k", "hunter2", "", 200},
	}
	for _, c := range cases {
		before := len(r.audit.recs)
		v, err := r.svc.GetValue(c.ctx, c.scope, c.key)
		if string(v) != c.value {
			t.Errorf("%s: value %q, want %q", c.name, v, c.value)
		}
		if got := codeOf(err); got != c.code {
			t.Errorf("%s: error %v, want code %q", c.name, err, c.code)
		}
		if len(r.audit.recs) != before+1 {
			t.Fatalf("%s: %d audit records written, want 1", c.name, len(r.audit.recs)-before)
		}
		rec := r.audit.recs[len(r.audit.recs)-1]
		if rec.OperationName != "Microsoft.Databricks/secrets/getSecret" || rec.Properties.Response.StatusCode != c.status ||
			rec.Properties.RequestParams["scope"] != c.scope || rec.Properties.RequestParams["key"] != c.key ||
			rec.Time != "2026-03-04T05:06:07.000Z" {
			t.Errorf("%s: record %+v", c.name, rec)
		}
		if b, _ := json.Marshal(rec); bytes.Contains(b, []byte("hunter2")) {
			t.Errorf("%s: the value is in the audit record: %s", c.name, b)
		}
	}
	if got := r.audit.recs[len(r.audit.recs)-1].Identity.Email; got != principal.SystemName {
		t.Errorf("System-User read recorded as %q", got)
	}

	// No audit record, no value.
	r.audit.fail = errors.New("journal disk full")
	v, err := r.svc.GetValue(principal.With(ctx, ann), "s", "k")
	if v != nil || codeOf(err) != api.TemporarilyUnavailable {
		t.Errorf("with the journal down: %q, %v", v, err)
	}
}

func codeOf(err error) string {
	if err == nil {
		return ""
	}
	return api.ErrorOf(err).Code
}

func TestSealedValuesAreBoundToTheirScopeAndKey(t *testing.T) {
	r := newRig(t)
	r.must(t, "ann", "POST", "/api/2.0/secrets/scopes/create", map[string]string{"scope": "s"})
	r.must(t, "ann", "POST", "/api/2.0/secrets/put", map[string]string{"scope": "s", "key": "a", "string_value": "value-of-a"})
	r.must(t, "ann", "POST", "/api/2.0/secrets/put", map[string]string{"scope": "s", "key": "b", "string_value": "value-of-b"})
	ctx := context.Background()
	// Nothing in the store holds a value in clear.
	err := r.svc.Store.View(ctx, func(tx store.Tx) error {
		for _, k := range []store.Kind{kindScope, kindSecret, kindValue, kindACL} {
			err := tx.Scan(k, "", "", func(key string, raw json.RawMessage) error {
				if bytes.Contains(raw, []byte("value-of")) {
					t.Errorf("%s %q holds a value in clear: %s", k, key, raw)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// a's sealed value copied over b's does not open as b.
	_, err = r.svc.Store.Update(ctx, func(tx store.Tx) error {
		v, err := store.Get[sealedValue](tx, kindValue, "s"+sep+"a")
		if err != nil {
			return err
		}
		return store.Put(tx, kindValue, "s"+sep+"b", v)
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out := r.call(t, "ann", "GET", "/api/2.0/secrets/get?scope=s&key=b", nil)
	if code != 500 || strings.Contains(fmt.Sprint(out), "value-of") {
		t.Errorf("a value moved to another key: %d %v", code, out)
	}
}

// hookedKeyring runs a function once, the next time a data key is
// unwrapped: between a put's read of the scope and its write.
type hookedKeyring struct {
	*keys.Keyring
	once func()
}

type hookedKEK struct {
	keys.KEK
	k *hookedKeyring
}

func (k *hookedKeyring) KEK(name string) (keys.KEK, error) {
	kek, err := k.Keyring.KEK(name)
	return hookedKEK{kek, k}, err
}

func (h hookedKEK) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	if f := h.k.once; f != nil {
		h.k.once = nil
		f()
	}
	return h.KEK.Unwrap(ctx, wrapped)
}

func TestAPutRacingAScopeReplacementSealsWithTheNewDataKey(t *testing.T) {
	r := newRig(t)
	hk := &hookedKeyring{Keyring: r.keys}
	r.svc.Keys = hk
	r.must(t, "ann", "POST", "/api/2.0/secrets/scopes/create", map[string]string{"scope": "s"})
	r.must(t, "ann", "POST", "/api/2.0/secrets/put", map[string]string{"scope": "s", "key": "old", "string_value": "v0"})
	hk.once = func() {
		r.must(t, "ann", "POST", "/api/2.0/secrets/scopes/delete", map[string]string{"scope": "s"})
		r.must(t, "ann", "POST", "/api/2.0/secrets/scopes/create", map[string]string{"scope": "s"})
	}
	r.must(t, "ann", "POST", "/api/2.0/secrets/put", map[string]string{"scope": "s", "key": "k", "string_value": "v1"})
	if hk.once != nil {
		t.Fatal("the scope was not replaced during the put")
	}
	sys := principal.With(context.Background(), principal.SystemPrincipal)
	if v, err := r.svc.GetValue(sys, "s", "k"); err != nil || string(v) != "v1" {
		t.Errorf("the value put during the replacement: %q, %v", v, err)
	}
	// The replaced scope's secrets went with it.
	if _, err := r.svc.GetValue(sys, "s", "old"); codeOf(err) != api.ResourceDoesNotExist {
		t.Errorf("a secret of the replaced scope: %v", err)
	}
}
