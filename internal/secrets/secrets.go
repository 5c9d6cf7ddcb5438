// Package secrets is the Secrets API: Databricks-backed secret scopes whose
// values are encrypted at rest with a data key per scope (wrapped by the
// region's "secrets" key-encryption key), with READ, WRITE and MANAGE
// access control per scope. Values leave only through get (and the cluster
// runtime's dbutils.secrets), never through a list, a log or an audit record.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Store kinds owned by this package.
const (
	kindScope  = "secrets.scope"  // scope name -> Scope
	kindSecret = "secrets.secret" // scope \x1f key -> Secret
	kindACL    = "secrets.acl"    // scope \x1f principal -> ACL
)

const sep = "\x1f"

// Limits, as Databricks has them.
const (
	MaxValue           = 128 << 10
	MaxSecretsPerScope = 1000
	MaxScopes          = 1000
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,128}$`)

// Permission is a scope ACL level.
type Permission string

// ACL levels, lowest first.
const (
	Read   Permission = "READ"
	Write  Permission = "WRITE"
	Manage Permission = "MANAGE"
)

func rank(p Permission) int {
	switch p {
	case Read:
		return 1
	case Write:
		return 2
	case Manage:
		return 3
	}
	return 0
}

// Scope is a secret scope. Its data key is stored only wrapped.
type Scope struct {
	Name        string `json:"name"`
	BackendType string `json:"backend_type"`
	WrappedKey  []byte `json:"wrapped_key"`
	KeyID       string `json:"key_id"`
	Created     int64  `json:"created"`
}

// Secret is a stored secret: its value sealed with the scope's data key,
// bound to the scope and key names.
type Secret struct {
	Key         string `json:"key"`
	Sealed      []byte `json:"sealed"`
	LastUpdated int64  `json:"last_updated"`
}

// ACL gives a principal (a user name, group name or application id) a
// permission on a scope.
type ACL struct {
	Principal  string     `json:"principal"`
	Permission Permission `json:"permission"`
}

// Directory finds the principal an ACL names.
type Directory interface {
	LookupPrincipal(ctx context.Context, kind, name string) (id, display string, err error)
}

// Auditor records the reads of secret values made outside the API.
type Auditor interface {
	Append(ctx context.Context, rec *audit.Record) error
}

// Service holds the secret scopes of a region.
type Service struct {
	Store      store.Store
	Keys       *keys.Keyring
	Dir        Directory
	Audit      Auditor
	ResourceID string
	Log        *slog.Logger
}

// keyName is the platform key that wraps scope data keys.
const keyName = "secrets"

// matches reports whether an ACL's principal is p or one of p's groups.
func matches(a ACL, p principal.Principal) bool {
	if strings.EqualFold(a.Principal, p.Name) {
		return true
	}
	return p.InGroup(a.Principal)
}

// Allowed decides whether p holds need on a scope with the given ACLs:
// admins always do; otherwise the highest ACL naming p or one of its groups
// must reach need. It is pure.
func Allowed(p principal.Principal, acls []ACL, need Permission) bool {
	if p.Admin {
		return true
	}
	best := 0
	for _, a := range acls {
		if matches(a, p) {
			best = max(best, rank(a.Permission))
		}
	}
	return best >= rank(need)
}

func aclsOf(tx store.Tx, scope string) ([]ACL, error) {
	return store.List[ACL](tx, kindACL, scope+sep)
}

func scopeNotFound(name string) error {
	return api.NotFound("Scope %s does not exist!", name)
}

// check loads a scope and checks p holds need on it. A scope the caller has
// no permission on at all reads as missing is not right for Databricks
// users: they get PERMISSION_DENIED naming the scope.
func check(tx store.Tx, p principal.Principal, scope string, need Permission) (Scope, error) {
	sc, err := store.Get[Scope](tx, kindScope, scope)
	if errors.Is(err, store.ErrNotFound) {
		return sc, scopeNotFound(scope)
	}
	if err != nil {
		return sc, err
	}
	acls, err := aclsOf(tx, scope)
	if err != nil {
		return sc, err
	}
	if !Allowed(p, acls, need) {
		return sc, api.Denied("%s does not have %s permission on scope %s.", p.Name, need, scope)
	}
	return sc, nil
}

func aad(scope, key string) []byte { return []byte(scope + "\x00" + key) }

// dataKey unwraps a scope's data key. A disabled or missing key-encryption
// key fails closed (keys.ErrKeyDisabled: PERMISSION_DENIED naming the key).
func (s *Service) dataKey(ctx context.Context, sc Scope) ([]byte, error) {
	kek, err := s.Keys.KEK(keyName)
	if err != nil {
		return nil, err
	}
	dek, err := kek.Unwrap(ctx, sc.WrappedKey)
	if err != nil {
		return nil, fmt.Errorf("unwrap the data key of scope %s: %w", sc.Name, err)
	}
	return dek, nil
}

// GetValue returns a secret's value for the principal of ctx, with the same
// checks as the API's get, and writes the getSecret audit record itself: the
// cluster runtime (dbutils.secrets) reads values this way.
func (s *Service) GetValue(ctx context.Context, scope, key string) ([]byte, error) {
	p := principal.MustFrom(ctx)
	v, err := s.getValue(ctx, p, scope, key)
	if s.Audit != nil {
		rec := audit.New(s.ResourceID, "secrets", "getSecret", timeNow())
		rec.Identity.Email = p.Name
		rec.Properties.RequestParams = map[string]string{"scope": scope, "key": key}
		rec.Properties.RequestID = api.RequestID(ctx)
		rec.Properties.Response.StatusCode = 200
		if err != nil {
			e := api.ErrorOf(err)
			rec.Properties.Response.StatusCode, rec.Properties.Response.ErrorMessage = e.Status, e.Message
		}
		if aerr := s.Audit.Append(ctx, rec); aerr != nil {
			// No audit record, no secret.
			return nil, api.Errorf(api.TemporarilyUnavailable, "The audit log is unavailable; the secret was not read.")
		}
	}
	return v, err
}

func (s *Service) getValue(ctx context.Context, p principal.Principal, scope, key string) ([]byte, error) {
	var sc Scope
	var sec Secret
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		if sc, err = check(tx, p, scope, Read); err != nil {
			return err
		}
		sec, err = store.Get[Secret](tx, kindSecret, scope+sep+key)
		if errors.Is(err, store.ErrNotFound) {
			return api.NotFound("Secret does not exist with scope: %s and key: %s", scope, key)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	dek, err := s.dataKey(ctx, sc)
	if err != nil {
		return nil, err
	}
	v, err := keys.Open(dek, sec.Sealed, aad(scope, key))
	if err != nil {
		return nil, fmt.Errorf("open secret %s/%s: %w", scope, key, err)
	}
	return v, nil
}
