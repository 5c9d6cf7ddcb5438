package secrets

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Store kinds owned by this package. A secret's metadata and its sealed
// value are apart so that listing and counting a scope's secrets never read
// up to 1000 values of up to 128 KB.
const (
	kindScope  store.Kind = "secrets.scope"  // scope name -> Scope
	kindSecret store.Kind = "secrets.secret" // scope␟key -> Secret
	kindValue  store.Kind = "secrets.value"  // scope␟key -> sealedValue
	kindACL    store.Kind = "secrets.acl"    // scope␟lower-case principal -> ACL
)

// sep joins a scope name to a key or principal in store keys; names cannot
// hold it.
const sep = "\x1f"

// Limits, as Databricks has them.
const (
	MaxValue           = 128 << 10
	MaxSecretsPerScope = 1000
	MaxScopes          = 1000
)

// nameRE is what scope and key names may be.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,128}$`)

// Backend types of a scope.
const (
	BackendDatabricks    = "DATABRICKS"
	BackendAzureKeyVault = "AZURE_KEYVAULT"
)

// Scope is a secret scope. Its data key is stored only wrapped by the
// platform key KeyID names.
type Scope struct {
	Name        string `json:"name"`
	BackendType string `json:"backend_type"`
	WrappedKey  []byte `json:"wrapped_key"`
	KeyID       string `json:"key_id"`
	Created     int64  `json:"created"`
	CreatedBy   string `json:"created_by"`
}

// Secret is what a list shows of a secret: its key and when it last changed.
type Secret struct {
	Key         string `json:"key"`
	LastUpdated int64  `json:"last_updated"`
}

// sealedValue is a secret's value sealed with its scope's data key, bound to
// the scope and key names.
type sealedValue struct {
	Sealed []byte `json:"sealed"`
}

// Directory finds the principals ACLs name.
type Directory interface {
	LookupPrincipal(ctx context.Context, kind, name string) (id, display string, err error)
}

// Keyring gives the platform key-encryption keys.
type Keyring interface {
	KEK(name string) (keys.KEK, error)
}

// Auditor durably stores the audit records of reads made outside the API.
type Auditor interface {
	Append(ctx context.Context, rec *audit.Record) error
}

// Service holds the secret scopes of a region.
type Service struct {
	Store store.Store
	Keys  Keyring
	Dir   Directory
	// Audit receives the getSecret records of GetValue; without it GetValue
	// reads nothing.
	Audit Auditor
	// ResourceID is the workspace's resource id in audit records.
	ResourceID string
	// Now is the clock of GetValue's audit records (time.Now if nil).
	Now func() time.Time
}

// keyName is the platform key that wraps the scopes' data keys.
const keyName = "secrets"

func scopeNotFound(name string) error {
	return api.NotFound("Scope %s does not exist!", name)
}

func secretNotFound(scope, key string) error {
	return api.NotFound("Secret does not exist with scope: %s and key: %s", scope, key)
}

func aclsOf(tx store.Tx, scope string) ([]ACL, error) {
	return store.List[ACL](tx, kindACL, scope+sep)
}

// check loads a scope and decides whether p may do a on it. A caller without
// the level gets PERMISSION_DENIED naming the scope, as in Databricks.
func check(tx store.Tx, p principal.Principal, scope string, a Action) (Scope, error) {
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
	if !May(p, a, acls) {
		return sc, api.Denied("%s does not have %s permission on scope %s to perform this action.", p.Name, needs[a], scope)
	}
	return sc, nil
}

// aad binds a sealed value to its scope and key: a value copied to another
// key does not open.
func aad(scope, key string) []byte { return []byte(scope + "\x00" + key) }

// dataKey unwraps a scope's data key. A disabled or missing platform key
// fails closed (keys.ErrKeyDisabled and keys.ErrKeyNotFound answer
// PERMISSION_DENIED naming the key, never its material).
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

// GetValue returns a secret's value for the principal of ctx, with the
// checks of the API's get (READ on the scope), and writes the
// secrets/getSecret audit record itself, through the journal: the cluster
// runtime (dbutils.secrets) reads values this way. If called while serving
// an API request, the record carries that request's id, address and user
// agent. A read that cannot be audited returns no value.
func (s *Service) GetValue(ctx context.Context, scope, key string) ([]byte, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	at := now()
	var (
		value []byte
		err   error
	)
	p, ok := principal.From(ctx)
	switch {
	case !ok || p.IsZero():
		err = api.Errorf(api.Unauthenticated, "Secrets are read on behalf of a user or service principal; the call named none.")
	default:
		if err = validName("scope", scope); err == nil {
			if err = validName("key", key); err == nil {
				value, err = s.getValue(ctx, p, scope, key)
			}
		}
	}
	if s.Audit == nil {
		clear(value)
		return nil, errors.New("secrets: no audit journal is configured, so no value is read")
	}
	rec := api.NewRecord(ctx, s.ResourceID, "secrets", "getSecret", at, map[string]string{"scope": scope, "key": key}, err)
	if aerr := s.Audit.Append(ctx, rec); aerr != nil {
		clear(value)
		return nil, api.Wrap(aerr, api.TemporarilyUnavailable, "The audit log is unavailable, so the secret was not read. Retry later.")
	}
	return value, err
}

// getValue reads and opens a secret's value for p.
func (s *Service) getValue(ctx context.Context, p principal.Principal, scope, key string) ([]byte, error) {
	var (
		sc  Scope
		val sealedValue
	)
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		if sc, err = check(tx, p, scope, GetSecret); err != nil {
			return err
		}
		val, err = store.Get[sealedValue](tx, kindValue, scope+sep+key)
		if errors.Is(err, store.ErrNotFound) {
			return secretNotFound(scope, key)
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
	defer clear(dek)
	v, err := keys.Open(dek, val.Sealed, aad(scope, key))
	if err != nil {
		// The error names where, never what.
		return nil, fmt.Errorf("open secret %s/%s: %w", scope, key, err)
	}
	return v, nil
}
