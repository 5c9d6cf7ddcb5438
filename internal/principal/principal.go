// Package principal is the authenticated caller of a request: who it is, the
// groups it belongs to and whether it administers the workspace. The
// identity package resolves it from a token; every other package reads it
// from the request context to decide what the caller may do.
package principal

import (
	"context"
	"slices"
)

// Kind is the kind of a principal.
type Kind string

const (
	User             Kind = "user"
	ServicePrincipal Kind = "service_principal"
	// System is Tandem itself acting on schedules, autoscaling and other
	// automated work; audit records name it System-User, as Databricks does.
	System Kind = "system"
)

// SystemName is the audit identity of automated actions.
const SystemName = "System-User"

// AdminsGroup and UsersGroup are the built-in groups of every workspace.
const (
	AdminsGroup = "admins"
	UsersGroup  = "users"
)

// Principal is an authenticated caller.
type Principal struct {
	ID   string // SCIM id, a decimal number as a string
	Kind Kind
	// Name is the user name (an email) of a user, or the application id of a
	// service principal; permissions and audit records name the caller by it.
	Name        string
	DisplayName string
	// Groups are the names of every group the principal is in, directly or
	// through nested groups, including "users".
	Groups []string
	Admin  bool
	// Entitlements are what the principal may do beyond its permissions
	// (allow-cluster-create, allow-instance-pool-create, ...), its own and
	// its groups'; admins hold every one.
	Entitlements []string
	// TokenID is the id of the personal access token used, if any.
	TokenID string
}

// SystemPrincipal is the principal of automated actions.
var SystemPrincipal = Principal{ID: "0", Kind: System, Name: SystemName, DisplayName: SystemName, Admin: true}

// InGroup reports whether p is in the named group.
func (p Principal) InGroup(name string) bool { return slices.Contains(p.Groups, name) }

// HasEntitlement reports whether p holds the named entitlement.
func (p Principal) HasEntitlement(name string) bool {
	return p.Admin || slices.Contains(p.Entitlements, name)
}

// IsZero reports whether p is the zero Principal (no caller).
func (p Principal) IsZero() bool { return p.ID == "" && p.Name == "" }

type ctxKey struct{}

// With returns ctx carrying p.
func With(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// From returns the principal carried by ctx, and whether there is one.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// MustFrom returns the principal carried by ctx or the zero Principal.
func MustFrom(ctx context.Context) Principal {
	p, _ := From(ctx)
	return p
}
