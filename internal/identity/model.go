// Package identity holds the workspace's principals (users, groups, service
// principals), their personal access tokens, and the SCIM 2.0, Token and
// Token management APIs over them. It resolves a bearer token to the
// principal of a request.
package identity

import (
	"strings"
)

// Store kinds owned by this package. Name indexes map a unique name to the
// id of the object holding it.
const (
	kindUser      = "identity.user"
	kindUserName  = "identity.user.name"
	kindGroup     = "identity.group"
	kindGroupName = "identity.group.name"
	kindSP        = "identity.sp"
	kindSPApp     = "identity.sp.app"
	kindToken     = "identity.token"    // key: sha256 of the token value
	kindTokenID   = "identity.token.id" // key: token id, value: hash
	kindBootstrap = "identity.bootstrap"
)

// KindPrefix is the prefix of every store kind of this package; a change to
// any of them can change who a token belongs to.
const KindPrefix = "identity."

// SCIM schema URNs.
const (
	schemaUser      = "urn:ietf:params:scim:schemas:core:2.0:User"
	schemaUserExt   = "urn:ietf:params:scim:schemas:extension:workspace:2.0:User"
	schemaGroup     = "urn:ietf:params:scim:schemas:core:2.0:Group"
	schemaSP        = "urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"
	schemaList      = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	schemaPatchOp   = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	entitlementWSA  = "workspace-access"
	entitlementSQL  = "databricks-sql-access"
	entitlementCC   = "allow-cluster-create"
	entitlementPool = "allow-instance-pool-create"
)

// Entitlements a principal can hold.
var validEntitlements = map[string]bool{entitlementWSA: true, entitlementSQL: true, entitlementCC: true, entitlementPool: true}

// ComplexValue is SCIM's multi-valued attribute element.
type ComplexValue struct {
	Value   string `json:"value,omitempty"`
	Display string `json:"display,omitempty"`
	Primary bool   `json:"primary,omitempty"`
	Type    string `json:"type,omitempty"`
	Ref     string `json:"$ref,omitempty"`
}

// Name is a user's name.
type Name struct {
	GivenName  string `json:"givenName,omitempty"`
	FamilyName string `json:"familyName,omitempty"`
}

// Meta is SCIM resource metadata.
type Meta struct {
	ResourceType string `json:"resourceType,omitempty"`
}

// User is a workspace user, as stored and as SCIM returns it. Groups is
// computed from group membership when returned.
type User struct {
	Schemas      []string       `json:"schemas,omitempty"`
	ID           string         `json:"id"`
	UserName     string         `json:"userName"`
	DisplayName  string         `json:"displayName,omitempty"`
	Active       *bool          `json:"active,omitempty"`
	Name         *Name          `json:"name,omitempty"`
	Emails       []ComplexValue `json:"emails,omitempty"`
	Groups       []ComplexValue `json:"groups,omitempty"`
	Entitlements []ComplexValue `json:"entitlements,omitempty"`
	Roles        []ComplexValue `json:"roles,omitempty"`
	ExternalID   string         `json:"externalId,omitempty"`
	Meta         *Meta          `json:"meta,omitempty"`
}

// Group is a group of principals; Members hold user, service principal and
// group ids.
type Group struct {
	Schemas      []string       `json:"schemas,omitempty"`
	ID           string         `json:"id"`
	DisplayName  string         `json:"displayName"`
	Members      []ComplexValue `json:"members,omitempty"`
	Groups       []ComplexValue `json:"groups,omitempty"`
	Entitlements []ComplexValue `json:"entitlements,omitempty"`
	Roles        []ComplexValue `json:"roles,omitempty"`
	ExternalID   string         `json:"externalId,omitempty"`
	Meta         *Meta          `json:"meta,omitempty"`
}

// ServicePrincipal is a non-human principal identified by an application id.
type ServicePrincipal struct {
	Schemas       []string       `json:"schemas,omitempty"`
	ID            string         `json:"id"`
	ApplicationID string         `json:"applicationId"`
	DisplayName   string         `json:"displayName,omitempty"`
	Active        *bool          `json:"active,omitempty"`
	Groups        []ComplexValue `json:"groups,omitempty"`
	Entitlements  []ComplexValue `json:"entitlements,omitempty"`
	Roles         []ComplexValue `json:"roles,omitempty"`
	ExternalID    string         `json:"externalId,omitempty"`
	Meta          *Meta          `json:"meta,omitempty"`
}

// Token is a stored personal access token: only its hash, never its value.
type Token struct {
	ID           string `json:"id"`
	Hash         string `json:"hash"`
	OwnerID      string `json:"owner_id"`
	OwnerName    string `json:"owner_name"`
	Comment      string `json:"comment,omitempty"`
	CreationTime int64  `json:"creation_time"`
	ExpiryTime   int64  `json:"expiry_time"` // -1: never
	CreatedByID  string `json:"created_by_id"`
	CreatedBy    string `json:"created_by"`
}

func boolPtr(b bool) *bool { return &b }

func isActive(p *bool) bool { return p == nil || *p }

func values(cvs []ComplexValue) []string {
	out := make([]string, 0, len(cvs))
	for _, c := range cvs {
		out = append(out, c.Value)
	}
	return out
}

func hasValue(cvs []ComplexValue, v string) bool {
	for _, c := range cvs {
		if c.Value == v {
			return true
		}
	}
	return false
}

// normName is the index key of a case-insensitive unique name.
func normName(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
