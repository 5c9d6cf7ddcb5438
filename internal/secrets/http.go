package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Routes returns the Secrets API. The legacy databricks-cli 0.18 calls the
// same paths as the SDKs, its GET parameters in the query string too.
func (s *Service) Routes() []api.Route {
	r := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "secrets", Action: action, Handler: h}
	}
	get := r("GET /api/2.0/secrets/get", "getSecret", s.get)
	get.NoResult = true
	return []api.Route{
		r("POST /api/2.0/secrets/scopes/create", "createScope", s.createScope),
		r("POST /api/2.0/secrets/scopes/delete", "deleteScope", s.deleteScope),
		r("GET /api/2.0/secrets/scopes/list", "listScopes", s.listScopes),
		r("POST /api/2.0/secrets/put", "putSecret", s.put),
		r("POST /api/2.0/secrets/delete", "deleteSecret", s.delete),
		r("GET /api/2.0/secrets/list", "listSecrets", s.list),
		get,
		r("POST /api/2.0/secrets/acls/put", "putAcl", s.putACL),
		r("POST /api/2.0/secrets/acls/delete", "deleteAcl", s.deleteACL),
		r("GET /api/2.0/secrets/acls/list", "listAcls", s.listACLs),
		r("GET /api/2.0/secrets/acls/get", "getAcl", s.getACL),
	}
}

// request holds the fields of every Secrets API call.
type request struct {
	Scope                  string         `json:"scope"`
	InitialManagePrincipal string         `json:"initial_manage_principal"`
	ScopeBackendType       string         `json:"scope_backend_type"`
	BackendAzureKeyvault   map[string]any `json:"backend_azure_keyvault"`
	Key                    string         `json:"key"`
	StringValue            *string        `json:"string_value"`
	BytesValue             *string        `json:"bytes_value"`
	Principal              string         `json:"principal"`
	Permission             Permission     `json:"permission"`
}

// decode reads the request and checks the names it must carry.
func decode(req *api.Request, withKey bool) (request, error) {
	var r request
	if err := req.Decode(&r); err != nil {
		return r, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return r, err
	}
	if withKey {
		if err := validName("key", r.Key); err != nil {
			return r, err
		}
	}
	return r, nil
}

func validName(what, name string) error {
	if name == "" {
		return api.MissingField(what)
	}
	if !nameRE.MatchString(name) {
		if len(name) > 128 {
			return api.InvalidParam("The %s name is %d characters long; %s names may have at most 128.", what, len(name), what)
		}
		return api.InvalidParam("Invalid %s name %q: %s names consist of letters, digits, dashes, underscores and periods.", what, name, what)
	}
	return nil
}

func caller(ctx context.Context) (principal.Principal, error) {
	p, ok := principal.From(ctx)
	if !ok || p.IsZero() {
		return p, api.Errorf(api.Unauthenticated, "Authentication is required.")
	}
	return p, nil
}

func (s *Service) createScope(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, false)
	if err != nil {
		return nil, err
	}
	switch backend := strings.ToUpper(r.ScopeBackendType); {
	case backend == BackendAzureKeyVault || r.BackendAzureKeyvault != nil:
		// Databricks answers vault-backed scopes it cannot create with
		// INVALID_PARAMETER_VALUE; so does Tandem, saying why.
		return nil, api.InvalidParam("Azure Key Vault-backed secret scopes are not available yet in Tandem; " +
			"create a Databricks-backed scope instead (omit scope_backend_type or set it to DATABRICKS).")
	case backend != "" && backend != BackendDatabricks:
		return nil, api.InvalidParam("scope_backend_type must be DATABRICKS or AZURE_KEYVAULT, not %q.", r.ScopeBackendType)
	}
	owner, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	manager := owner.Name
	switch r.InitialManagePrincipal {
	case "":
	case principal.UsersGroup:
		manager = principal.UsersGroup
	default:
		return nil, api.InvalidParam("initial_manage_principal may only be %q (every user of the workspace), not %q.", principal.UsersGroup, r.InitialManagePrincipal)
	}
	kek, err := s.Keys.KEK(keyName)
	if err != nil {
		return nil, err
	}
	dek := keys.NewDEK()
	wrapped, err := kek.Wrap(ctx, dek)
	clear(dek)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if ok, err := store.Exists(tx, kindScope, r.Scope); err != nil {
			return err
		} else if ok {
			return api.Errorf(api.ResourceAlreadyExists, "Scope %s already exists!", r.Scope)
		}
		n, err := count(tx, kindScope, "")
		if err != nil {
			return err
		}
		if n >= MaxScopes {
			return api.Errorf(api.ResourceLimitExceeded, "The workspace already has %d secret scopes, the most it may have.", n)
		}
		sc := Scope{Name: r.Scope, BackendType: BackendDatabricks, WrappedKey: wrapped, KeyID: kek.ID(),
			Created: tx.Now().UnixMilli(), CreatedBy: owner.Name}
		if err := store.Put(tx, kindScope, sc.Name, sc); err != nil {
			return err
		}
		return store.Put(tx, kindACL, aclKey(sc.Name, manager), ACL{Principal: manager, Permission: Manage})
	})
	return nil, err
}

// count counts the documents of kind under prefix without decoding them.
func count(tx store.Tx, kind store.Kind, prefix string) (int, error) {
	n := 0
	err := tx.Scan(kind, prefix, "", func(string, json.RawMessage) error { n++; return nil })
	return n, err
}

func aclKey(scope, principal string) string { return scope + sep + strings.ToLower(principal) }

func (s *Service) deleteScope(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, false)
	if err != nil {
		return nil, err
	}
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := check(tx, p, r.Scope, DeleteScope); err != nil {
			return err
		}
		for _, k := range []store.Kind{kindSecret, kindValue, kindACL} {
			var keys []string
			err := tx.Scan(k, r.Scope+sep, "", func(key string, _ json.RawMessage) error {
				keys = append(keys, key)
				return nil
			})
			if err != nil {
				return err
			}
			for _, key := range keys {
				if err := tx.Delete(k, key); err != nil {
					return err
				}
			}
		}
		return tx.Delete(kindScope, r.Scope)
	})
	return nil, err
}

// listScopes lists every scope of the workspace: as in Databricks, scope
// names are visible to every user; what is in a scope is not.
func (s *Service) listScopes(ctx context.Context, req *api.Request) (any, error) {
	if _, err := caller(ctx); err != nil {
		return nil, err
	}
	type scopeView struct {
		Name        string `json:"name"`
		BackendType string `json:"backend_type"`
	}
	var out []scopeView
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindScope, "", func(_ string, sc Scope) error {
			out = append(out, scopeView{Name: sc.Name, BackendType: sc.BackendType})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return map[string]any{"scopes": out}, nil
}

// errScopeReplaced says a scope was deleted and created again, with a new
// data key, between sealing a value and storing it.
var errScopeReplaced = errors.New("scope replaced while sealing")

func (s *Service) put(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, true)
	if err != nil {
		return nil, err
	}
	if (r.StringValue == nil) == (r.BytesValue == nil) {
		return nil, api.Errorf(api.MalformedRequest, "Give exactly one of string_value and bytes_value.")
	}
	var value []byte
	if r.StringValue != nil {
		value = []byte(*r.StringValue)
	} else {
		b, err := base64.StdEncoding.DecodeString(*r.BytesValue)
		if err != nil {
			// Never echo the value, nor the decoder's error quoting it.
			return nil, api.Errorf(api.MalformedRequest, "bytes_value must be standard base64.")
		}
		value = b
	}
	defer clear(value)
	if len(value) > MaxValue {
		return nil, api.InvalidParam("A secret value may be at most %d bytes (128 KB); this one is %d.", MaxValue, len(value))
	}
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	// The data key is unwrapped and the value sealed outside the write
	// transaction (unwrapping may call a key vault); the transaction then
	// checks the scope still has the key the value was sealed with.
	for attempt := 0; ; attempt++ {
		var sc Scope
		err := s.Store.View(ctx, func(tx store.Tx) error {
			var err error
			sc, err = check(tx, p, r.Scope, PutSecret)
			return err
		})
		if err != nil {
			return nil, err
		}
		dek, err := s.dataKey(ctx, sc)
		if err != nil {
			return nil, err
		}
		sealed, err := keys.Seal(dek, value, aad(r.Scope, r.Key))
		clear(dek)
		if err != nil {
			return nil, err
		}
		_, err = s.Store.Update(ctx, func(tx store.Tx) error {
			cur, err := check(tx, p, r.Scope, PutSecret)
			if err != nil {
				return err
			}
			if !bytes.Equal(cur.WrappedKey, sc.WrappedKey) {
				return errScopeReplaced
			}
			key := r.Scope + sep + r.Key
			if ok, err := store.Exists(tx, kindSecret, key); err != nil {
				return err
			} else if !ok {
				n, err := count(tx, kindSecret, r.Scope+sep)
				if err != nil {
					return err
				}
				if n >= MaxSecretsPerScope {
					return api.Errorf(api.ResourceLimitExceeded, "Scope %s already holds %d secrets, the most a scope may hold.", r.Scope, n)
				}
			}
			if err := store.Put(tx, kindValue, key, sealedValue{Sealed: sealed}); err != nil {
				return err
			}
			return store.Put(tx, kindSecret, key, Secret{Key: r.Key, LastUpdated: tx.Now().UnixMilli()})
		})
		if errors.Is(err, errScopeReplaced) {
			if attempt < 3 {
				continue
			}
			return nil, api.Errorf(api.ResourceConflict, "Scope %s was replaced while the secret was being written; nothing was written. Retry.", r.Scope)
		}
		return nil, err
	}
}

func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, true)
	if err != nil {
		return nil, err
	}
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := check(tx, p, r.Scope, DeleteSecret); err != nil {
			return err
		}
		key := r.Scope + sep + r.Key
		if err := tx.Delete(kindSecret, key); errors.Is(err, store.ErrNotFound) {
			return secretNotFound(r.Scope, r.Key)
		} else if err != nil {
			return err
		}
		if err := tx.Delete(kindValue, key); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	return nil, err
}

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, false)
	if err != nil {
		return nil, err
	}
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	type secretView struct {
		Key                  string `json:"key"`
		LastUpdatedTimestamp int64  `json:"last_updated_timestamp"`
	}
	var out []secretView
	err = s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := check(tx, p, r.Scope, ListSecrets); err != nil {
			return err
		}
		return store.ScanPrefix(tx, kindSecret, r.Scope+sep, func(_ string, sec Secret) error {
			out = append(out, secretView{Key: sec.Key, LastUpdatedTimestamp: sec.LastUpdated})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return map[string]any{"secrets": out}, nil
}

// get answers the value, base64, as Databricks' get does. The route keeps
// the response out of the audit record (and the API layer keeps no GET
// result anyway).
func (s *Service) get(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, true)
	if err != nil {
		return nil, err
	}
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	v, err := s.getValue(ctx, p, r.Scope, r.Key)
	if err != nil {
		return nil, err
	}
	defer clear(v)
	return map[string]string{"key": r.Key, "value": base64.StdEncoding.EncodeToString(v)}, nil
}

// principalName checks that an ACL names a user, a group or a service
// principal of the workspace and returns the name to store: a group's own
// spelling, otherwise the name as given (users and application ids compare
// without case).
func (s *Service) principalName(ctx context.Context, name string) (string, error) {
	for _, kind := range []string{"user", "service_principal", "group"} {
		_, display, err := s.Dir.LookupPrincipal(ctx, kind, name)
		if err == nil {
			if kind == "group" && display != "" {
				return display, nil
			}
			return name, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	return "", api.InvalidParam("Principal %s does not exist: name a user, a group or a service principal's application id.", name)
}

func (s *Service) putACL(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, false)
	if err != nil {
		return nil, err
	}
	if r.Principal == "" {
		return nil, api.MissingField("principal")
	}
	if r.Permission == "" {
		return nil, api.MissingField("permission")
	}
	if rank(r.Permission) == 0 {
		return nil, api.InvalidParam("permission must be READ, WRITE or MANAGE, not %q.", r.Permission)
	}
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	// The scope and the caller's right come first: a caller who may not
	// manage the scope learns nothing more.
	err = s.Store.View(ctx, func(tx store.Tx) error {
		_, err := check(tx, p, r.Scope, PutACL)
		return err
	})
	if err != nil {
		return nil, err
	}
	name, err := s.principalName(ctx, r.Principal)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := check(tx, p, r.Scope, PutACL); err != nil {
			return err
		}
		// A principal's ACL is replaced, as Databricks does (its own
		// acceptance tests lower "users" from MANAGE to READ this way).
		return store.Put(tx, kindACL, aclKey(r.Scope, name), ACL{Principal: name, Permission: r.Permission})
	})
	return nil, err
}

func aclNotFound(principal, scope string) error {
	return api.NotFound("No ACL for principal %s on scope %s.", principal, scope)
}

func (s *Service) deleteACL(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, false)
	if err != nil {
		return nil, err
	}
	if r.Principal == "" {
		return nil, api.MissingField("principal")
	}
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := check(tx, p, r.Scope, DeleteACL); err != nil {
			return err
		}
		err := tx.Delete(kindACL, aclKey(r.Scope, r.Principal))
		if errors.Is(err, store.ErrNotFound) {
			return aclNotFound(r.Principal, r.Scope)
		}
		return err
	})
	return nil, err
}

func (s *Service) listACLs(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, false)
	if err != nil {
		return nil, err
	}
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	var out []ACL
	err = s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := check(tx, p, r.Scope, ListACLs); err != nil {
			return err
		}
		var err error
		out, err = aclsOf(tx, r.Scope)
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Principal < out[j].Principal })
	if len(out) == 0 {
		return nil, nil
	}
	return map[string]any{"items": out}, nil
}

func (s *Service) getACL(ctx context.Context, req *api.Request) (any, error) {
	r, err := decode(req, false)
	if err != nil {
		return nil, err
	}
	if r.Principal == "" {
		return nil, api.MissingField("principal")
	}
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	var out ACL
	err = s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := check(tx, p, r.Scope, GetACL); err != nil {
			return err
		}
		var err error
		out, err = store.Get[ACL](tx, kindACL, aclKey(r.Scope, r.Principal))
		if errors.Is(err, store.ErrNotFound) {
			return aclNotFound(r.Principal, r.Scope)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
