package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

var timeNow = time.Now

// Routes returns the Secrets API.
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

func validName(what, s string) error {
	if s == "" {
		return api.MissingField(what)
	}
	if !nameRE.MatchString(s) {
		return api.InvalidParam("%s %q must be 1 to 128 characters: letters, digits, '-', '_' and '.'.", what, s)
	}
	return nil
}

type scopeRequest struct {
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

func (s *Service) createScope(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	switch r.ScopeBackendType {
	case "", "DATABRICKS":
	case "AZURE_KEYVAULT":
		return nil, api.Errorf(api.FeatureDisabled, "Azure Key Vault-backed scopes are not available in Tandem; create a Databricks-backed scope.")
	default:
		return nil, api.InvalidParam("scope_backend_type must be DATABRICKS or AZURE_KEYVAULT, not %q.", r.ScopeBackendType)
	}
	if r.InitialManagePrincipal != "" && r.InitialManagePrincipal != principal.UsersGroup {
		return nil, api.InvalidParam("initial_manage_principal may only be %q.", principal.UsersGroup)
	}
	p := principal.MustFrom(ctx)
	kek, err := s.Keys.KEK(keyName)
	if err != nil {
		return nil, err
	}
	wrapped, err := kek.Wrap(ctx, keys.NewDEK())
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if ok, err := store.Exists(tx, kindScope, r.Scope); err != nil {
			return err
		} else if ok {
			return api.Errorf(api.ResourceAlreadyExists, "Scope %s already exists!", r.Scope)
		}
		n := 0
		if err := store.ScanPrefix(tx, kindScope, "", func(string, Scope) error { n++; return nil }); err != nil {
			return err
		}
		if n >= MaxScopes {
			return api.Errorf(api.ResourceLimitExceeded, "The workspace already has %d secret scopes, the most it may have.", n)
		}
		sc := Scope{Name: r.Scope, BackendType: "DATABRICKS", WrappedKey: wrapped, KeyID: kek.ID(), Created: tx.Now().UnixMilli()}
		if err := store.Put(tx, kindScope, sc.Name, sc); err != nil {
			return err
		}
		owner := p.Name
		if r.InitialManagePrincipal != "" {
			owner = r.InitialManagePrincipal
		}
		return store.Put(tx, kindACL, sc.Name+sep+strings.ToLower(owner), ACL{Principal: owner, Permission: Manage})
	})
	return nil, err
}

func (s *Service) deleteScope(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := check(tx, principal.MustFrom(ctx), r.Scope, Manage); err != nil {
			return err
		}
		for _, k := range []store.Kind{kindSecret, kindACL} {
			var keys []string
			err := store.ScanPrefix(tx, k, r.Scope+sep, func(key string, _ any) error {
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

func (s *Service) listScopes(ctx context.Context, req *api.Request) (any, error) {
	p := principal.MustFrom(ctx)
	type scopeView struct {
		Name        string `json:"name"`
		BackendType string `json:"backend_type"`
	}
	var out []scopeView
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindScope, "", func(_ string, sc Scope) error {
			acls, err := aclsOf(tx, sc.Name)
			if err != nil {
				return err
			}
			if Allowed(p, acls, Read) {
				out = append(out, scopeView{Name: sc.Name, BackendType: sc.BackendType})
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return map[string]any{}, nil
	}
	return map[string]any{"scopes": out}, nil
}

func (s *Service) put(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	if err := validName("key", r.Key); err != nil {
		return nil, err
	}
	if (r.StringValue == nil) == (r.BytesValue == nil) {
		return nil, api.InvalidParam("Give exactly one of string_value and bytes_value.")
	}
	var value []byte
	if r.StringValue != nil {
		value = []byte(*r.StringValue)
	} else {
		b, err := base64.StdEncoding.DecodeString(*r.BytesValue)
		if err != nil {
			// The value itself is never echoed.
			return nil, api.Errorf(api.MalformedRequest, "bytes_value is not valid base64.")
		}
		value = b
	}
	if len(value) > MaxValue {
		return nil, api.Errorf(api.ResourceLimitExceeded, "A secret value may be at most %d bytes; this one is %d.", MaxValue, len(value))
	}
	p := principal.MustFrom(ctx)
	var sc Scope
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		sc, err = check(tx, p, r.Scope, Write)
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
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := check(tx, p, r.Scope, Write); err != nil {
			return err
		}
		key := r.Scope + sep + r.Key
		if ok, err := store.Exists(tx, kindSecret, key); err != nil {
			return err
		} else if !ok {
			n := 0
			if err := store.ScanPrefix(tx, kindSecret, r.Scope+sep, func(string, Secret) error { n++; return nil }); err != nil {
				return err
			}
			if n >= MaxSecretsPerScope {
				return api.Errorf(api.ResourceLimitExceeded, "Scope %s already holds %d secrets, the most a scope may hold.", r.Scope, n)
			}
		}
		return store.Put(tx, kindSecret, key, Secret{Key: r.Key, Sealed: sealed, LastUpdated: tx.Now().UnixMilli()})
	})
	return nil, err
}

func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	if err := validName("key", r.Key); err != nil {
		return nil, err
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := check(tx, principal.MustFrom(ctx), r.Scope, Write); err != nil {
			return err
		}
		err := tx.Delete(kindSecret, r.Scope+sep+r.Key)
		if errors.Is(err, store.ErrNotFound) {
			return api.NotFound("Secret does not exist with scope: %s and key: %s", r.Scope, r.Key)
		}
		return err
	})
	return nil, err
}

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	type secretView struct {
		Key                  string `json:"key"`
		LastUpdatedTimestamp int64  `json:"last_updated_timestamp"`
	}
	var out []secretView
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := check(tx, principal.MustFrom(ctx), r.Scope, Read); err != nil {
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
		return map[string]any{}, nil
	}
	return map[string]any{"secrets": out}, nil
}

func (s *Service) get(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	if err := validName("key", r.Key); err != nil {
		return nil, err
	}
	v, err := s.getValue(ctx, principal.MustFrom(ctx), r.Scope, r.Key)
	if err != nil {
		return nil, err
	}
	return map[string]string{"key": r.Key, "value": base64.StdEncoding.EncodeToString(v)}, nil
}

// checkPrincipal checks that an ACL names a user, group or service principal.
func (s *Service) checkPrincipal(ctx context.Context, name string) error {
	if name == "" {
		return api.MissingField("principal")
	}
	if s.Dir == nil {
		return nil
	}
	for _, kind := range []string{"user", "group", "service_principal"} {
		if _, _, err := s.Dir.LookupPrincipal(ctx, kind, name); err == nil {
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return api.NotFound("Principal %s does not exist: name a user, a group or a service principal's application id.", name)
}

func (s *Service) putACL(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	if rank(r.Permission) == 0 {
		return nil, api.InvalidParam("permission must be READ, WRITE or MANAGE, not %q.", r.Permission)
	}
	if err := s.checkPrincipal(ctx, r.Principal); err != nil {
		return nil, err
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := check(tx, principal.MustFrom(ctx), r.Scope, Manage); err != nil {
			return err
		}
		// As in Databricks, putting an ACL for a principal replaces its old one.
		return store.Put(tx, kindACL, r.Scope+sep+strings.ToLower(r.Principal), ACL{Principal: r.Principal, Permission: r.Permission})
	})
	return nil, err
}

func (s *Service) deleteACL(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	if r.Principal == "" {
		return nil, api.MissingField("principal")
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := check(tx, principal.MustFrom(ctx), r.Scope, Manage); err != nil {
			return err
		}
		err := tx.Delete(kindACL, r.Scope+sep+strings.ToLower(r.Principal))
		if errors.Is(err, store.ErrNotFound) {
			return api.NotFound("No ACL for %s on scope %s.", r.Principal, r.Scope)
		}
		return err
	})
	return nil, err
}

func (s *Service) listACLs(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	var out []ACL
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := check(tx, principal.MustFrom(ctx), r.Scope, Manage); err != nil {
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
		return map[string]any{}, nil
	}
	return map[string]any{"items": out}, nil
}

func (s *Service) getACL(ctx context.Context, req *api.Request) (any, error) {
	var r scopeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validName("scope", r.Scope); err != nil {
		return nil, err
	}
	if r.Principal == "" {
		return nil, api.MissingField("principal")
	}
	var out ACL
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := check(tx, principal.MustFrom(ctx), r.Scope, Manage); err != nil {
			return err
		}
		var err error
		out, err = store.Get[ACL](tx, kindACL, r.Scope+sep+strings.ToLower(r.Principal))
		if errors.Is(err, store.ErrNotFound) {
			return api.NotFound("No ACL for %s on scope %s.", r.Principal, r.Scope)
		}
		return err
	})
	return out, err
}
