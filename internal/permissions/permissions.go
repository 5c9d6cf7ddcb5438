package permissions

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// kindACL holds the direct grants of each object, keyed "<type>/<id>".
const kindACL store.Kind = "permissions.acl"

// Grant gives one principal a level on an object. Exactly one of the
// principal fields is set.
type Grant struct {
	UserName             string `json:"user_name,omitempty"`
	GroupName            string `json:"group_name,omitempty"`
	ServicePrincipalName string `json:"service_principal_name,omitempty"`
	Level                Level  `json:"permission_level"`
}

func (g Grant) key() string {
	switch {
	case g.UserName != "":
		return "u:" + strings.ToLower(g.UserName)
	case g.ServicePrincipalName != "":
		return "s:" + strings.ToLower(g.ServicePrincipalName)
	default:
		return "g:" + strings.ToLower(g.GroupName)
	}
}

// appliesTo reports whether the grant names p or one of its groups.
func (g Grant) appliesTo(p principal.Principal) bool {
	switch {
	case g.UserName != "":
		return p.Kind == principal.User && strings.EqualFold(g.UserName, p.Name)
	case g.ServicePrincipalName != "":
		return p.Kind == principal.ServicePrincipal && strings.EqualFold(g.ServicePrincipalName, p.Name)
	default:
		return p.InGroup(g.GroupName)
	}
}

// ACL is the direct grants of one object.
type ACL struct {
	Grants []Grant `json:"grants"`
}

// Ref names an object of a type.
type Ref struct {
	Type string // the type's URL segment: "directories", "clusters"
	ID   string
}

// Object is a resolved object: what it is, how to show it, and the objects
// it inherits grants from, nearest first.
type Object struct {
	Ref
	// Display names the object in error messages: a workspace path, a
	// cluster name.
	Display string
	Parents []Ref
}

// ObjectType is one kind of securable object. Domain packages register
// theirs with Register.
type ObjectType struct {
	// Name is the URL segment of the Permissions API: "clusters", "notebooks".
	Name string
	// Wire is object_type in responses: "cluster", "notebook".
	Wire string
	// Levels are the type's permission levels, lowest first.
	Levels []Level
	// Category and Action name ACL changes in the audit log.
	Category, Action string
	// Resolve finds the object with the id (store.ErrNotFound if there is
	// none) and its parents.
	Resolve func(tx store.Tx, id string) (Object, error)
	// Default is the level every principal holds when the object's ACL is
	// empty (authorization/tokens: CAN_USE for everyone until configured).
	Default Level
	// ManageLevel is the level that may change the ACL (CAN_MANAGE when empty).
	ManageLevel Level
}

// Directory checks that a principal named in a grant exists. kind is "user",
// "service_principal" or "group".
type Directory interface {
	LookupPrincipal(ctx context.Context, kind, name string) (id, display string, err error)
}

// Service checks and manages permissions.
type Service struct {
	store store.Store
	dir   Directory

	mu    sync.RWMutex
	types map[string]*ObjectType
}

// New returns the permissions service.
func New(st store.Store, dir Directory) *Service {
	return &Service{store: st, dir: dir, types: map[string]*ObjectType{}}
}

// Register adds an object type.
func (s *Service) Register(t ObjectType) {
	if t.ManageLevel == None {
		t.ManageLevel = CanManage
	}
	s.mu.Lock()
	s.types[t.Name] = &t
	s.mu.Unlock()
}

// Type returns a registered type.
func (s *Service) Type(name string) (*ObjectType, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.types[name]
	return t, ok
}

func aclKey(typ, id string) string { return typ + "/" + id }

// Effective returns the level p holds on the object: the highest of its
// direct and inherited grants. Admins hold the type's top level.
func (s *Service) Effective(tx store.Tx, p principal.Principal, typ, id string) (Level, Object, error) {
	t, ok := s.Type(typ)
	if !ok {
		return None, Object{}, fmt.Errorf("permissions: unknown object type %q", typ)
	}
	obj, err := t.Resolve(tx, id)
	if err != nil {
		return None, obj, err
	}
	if p.Admin {
		return t.Levels[len(t.Levels)-1], obj, nil
	}
	level := None
	empty := true
	for _, ref := range append([]Ref{obj.Ref}, obj.Parents...) {
		acl, err := store.Get[ACL](tx, kindACL, aclKey(ref.Type, ref.ID))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return None, obj, err
		}
		if ref == obj.Ref && len(acl.Grants) > 0 {
			empty = false
		}
		for _, g := range acl.Grants {
			if g.appliesTo(p) {
				level = Max(t.Levels, level, g.Level)
			}
		}
	}
	if empty && t.Default != None {
		level = Max(t.Levels, level, t.Default)
	}
	return level, obj, nil
}

// Check returns nil if p holds need on the object, PERMISSION_DENIED if not,
// and the resolver's error (store.ErrNotFound) if there is no such object.
func (s *Service) Check(tx store.Tx, p principal.Principal, typ, id string, need Level) error {
	level, obj, err := s.Effective(tx, p, typ, id)
	if err != nil {
		return err
	}
	t, _ := s.Type(typ)
	if Covers(t.Levels, level, need) {
		return nil
	}
	return api.Denied("%s does not have %s permission on %s. Ask an owner or admin to grant it.", p.Name, need, obj.Display)
}

// CheckContext is Check in its own read transaction, with the principal of ctx.
func (s *Service) CheckContext(ctx context.Context, typ, id string, need Level) error {
	return s.store.View(ctx, func(tx store.Tx) error {
		return s.Check(tx, principal.MustFrom(ctx), typ, id, need)
	})
}

// Set replaces the direct grants of an object (inside the caller's
// transaction, with no validation: for creation defaults).
func Set(tx store.Tx, typ, id string, grants ...Grant) error {
	return store.Put(tx, kindACL, aclKey(typ, id), ACL{Grants: grants})
}

// Add adds or changes one direct grant.
func Add(tx store.Tx, typ, id string, g Grant) error {
	acl, err := store.Get[ACL](tx, kindACL, aclKey(typ, id))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	acl.Grants = merge(acl.Grants, []Grant{g})
	return store.Put(tx, kindACL, aclKey(typ, id), acl)
}

// Delete removes an object's grants, when the object is deleted.
func Delete(tx store.Tx, typ, id string) error {
	if err := tx.Delete(kindACL, aclKey(typ, id)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// Grants returns an object's direct grants.
func Grants(tx store.Tx, typ, id string) ([]Grant, error) {
	acl, err := store.Get[ACL](tx, kindACL, aclKey(typ, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return acl.Grants, err
}

// merge sets each principal of add to its level in grants.
func merge(grants, add []Grant) []Grant {
	idx := map[string]int{}
	out := append([]Grant(nil), grants...)
	for i, g := range out {
		idx[g.key()] = i
	}
	for _, g := range add {
		if i, ok := idx[g.key()]; ok {
			out[i] = g
			continue
		}
		idx[g.key()] = len(out)
		out = append(out, g)
	}
	return out
}

// sortGrants orders grants for stable output: users, service principals,
// then groups, each by name.
func sortGrants(gs []Grant) {
	sort.SliceStable(gs, func(i, j int) bool { return gs[i].key() < gs[j].key() })
}
