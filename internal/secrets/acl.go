package secrets

import (
	"strings"

	"github.com/tandemdata/tandem/internal/principal"
)

// Permission is the level a scope ACL gives its principal.
type Permission string

// ACL levels, lowest first: each includes the ones below it.
const (
	Read   Permission = "READ"
	Write  Permission = "WRITE"
	Manage Permission = "MANAGE"
)

// rank orders the levels; 0 is no level (or an unknown one).
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

// ACL gives a principal a permission on a scope. The principal is a user
// name, a group name or a service principal's application id.
type ACL struct {
	Principal  string     `json:"principal"`
	Permission Permission `json:"permission"`
}

// Action is something a caller does to a scope that its ACLs govern.
type Action string

// The actions on a scope, named as their audit actions are.
const (
	ListSecrets  Action = "listSecrets"
	GetSecret    Action = "getSecret"
	PutSecret    Action = "putSecret"
	DeleteSecret Action = "deleteSecret"
	PutACL       Action = "putAcl"
	DeleteACL    Action = "deleteAcl"
	ListACLs     Action = "listAcls"
	GetACL       Action = "getAcl"
	DeleteScope  Action = "deleteScope"
)

// needs is the level each action needs, as Databricks documents them: READ
// lists the secrets and reads their values, WRITE also puts and deletes
// them, MANAGE also changes the ACLs and deletes the scope.
var needs = map[Action]Permission{
	ListSecrets:  Read,
	GetSecret:    Read,
	PutSecret:    Write,
	DeleteSecret: Write,
	PutACL:       Manage,
	DeleteACL:    Manage,
	ListACLs:     Manage,
	GetACL:       Manage,
	DeleteScope:  Manage,
}

// Level returns the highest permission the ACLs give p, through an ACL that
// names p or one of its groups (every principal is in "users"), or "" if
// none does. Names compare without case, as the directory's do.
func Level(p principal.Principal, acls []ACL) Permission {
	var best Permission
	for _, a := range acls {
		if names(a, p) && rank(a.Permission) > rank(best) {
			best = a.Permission
		}
	}
	return best
}

func names(a ACL, p principal.Principal) bool {
	if a.Principal == "" {
		return false
	}
	if strings.EqualFold(a.Principal, p.Name) {
		return true
	}
	for _, g := range p.Groups {
		if strings.EqualFold(a.Principal, g) {
			return true
		}
	}
	return false
}

// May decides whether p may do a on a scope with the given ACLs: admins may
// do everything; anyone else needs the action's level. An unknown action or
// a missing principal is refused. It is pure.
func May(p principal.Principal, a Action, acls []ACL) bool {
	need, ok := needs[a]
	if !ok || p.IsZero() {
		return false
	}
	if p.Admin {
		return true
	}
	return rank(Level(p, acls)) >= rank(need)
}
