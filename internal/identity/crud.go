package identity

import (
	"errors"
	"strings"
	"unicode"

	"github.com/google/uuid"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

func validName(field, s string, max int) error {
	if strings.TrimSpace(s) == "" {
		return api.MissingField(field)
	}
	if len(s) > max {
		return api.InvalidParam("%s is longer than %d characters.", field, max)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return api.InvalidParam("%s contains a control character.", field)
	}
	return nil
}

func validUserName(s string) error {
	if err := validName("userName", s, 256); err != nil {
		return err
	}
	at := strings.Index(s, "@")
	if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " /\\") {
		return api.InvalidParam("userName %q is not an email address.", s)
	}
	return nil
}

func validEntitlementList(cvs []ComplexValue) error {
	for _, e := range cvs {
		if !validEntitlements[e.Value] {
			return api.InvalidParam("Unknown entitlement %q; use one of workspace-access, databricks-sql-access, allow-cluster-create, allow-instance-pool-create.", e.Value)
		}
	}
	return nil
}

// UserCreated, if set on the service, runs in the transaction that creates a
// user (the workspace makes the user's home folder there).
type UserHook func(tx store.Tx, userName string) error

func (s *Service) createUser(tx store.Tx, u User) (User, error) {
	u.UserName = strings.TrimSpace(u.UserName)
	if err := validUserName(u.UserName); err != nil {
		return u, err
	}
	if err := validEntitlementList(u.Entitlements); err != nil {
		return u, err
	}
	if ok, err := store.Exists(tx, kindUserName, normName(u.UserName)); err != nil {
		return u, err
	} else if ok {
		return u, api.Errorf(api.ResourceAlreadyExists, "User with username %s already exists.", u.UserName)
	}
	id, err := newID(tx)
	if err != nil {
		return u, err
	}
	u.ID = id
	groups := u.Groups
	u.Groups, u.Schemas, u.Meta = nil, nil, nil
	if u.Active == nil {
		u.Active = boolPtr(true)
	}
	if len(u.Emails) == 0 {
		u.Emails = []ComplexValue{{Value: u.UserName, Type: "work", Primary: true}}
	}
	if err := store.Put(tx, kindUser, u.ID, u); err != nil {
		return u, err
	}
	if err := store.Put(tx, kindUserName, normName(u.UserName), u.ID); err != nil {
		return u, err
	}
	for _, g := range groups {
		if err := s.addToGroupID(tx, g.Value, u.ID); err != nil {
			return u, err
		}
	}
	if s.UserCreated != nil {
		if err := s.UserCreated(tx, u.UserName); err != nil {
			return u, err
		}
	}
	return u, nil
}

func (s *Service) addToGroupID(tx store.Tx, groupID, memberID string) error {
	g, err := store.Get[Group](tx, kindGroup, groupID)
	if errors.Is(err, store.ErrNotFound) {
		return api.InvalidParam("Group %s does not exist.", groupID)
	}
	if err != nil {
		return err
	}
	if g.DisplayName == principal.UsersGroup || hasValue(g.Members, memberID) {
		return nil
	}
	g.Members = append(g.Members, ComplexValue{Value: memberID})
	return store.Put(tx, kindGroup, g.ID, g)
}

func (s *Service) replaceUser(tx store.Tx, id string, u User) (User, error) {
	old, err := store.Get[User](tx, kindUser, id)
	if err != nil {
		return u, notFound("User", id, err)
	}
	u.UserName = strings.TrimSpace(u.UserName)
	if u.UserName == "" {
		u.UserName = old.UserName
	}
	if err := validUserName(u.UserName); err != nil {
		return u, err
	}
	if err := validEntitlementList(u.Entitlements); err != nil {
		return u, err
	}
	if normName(u.UserName) != normName(old.UserName) {
		if ok, err := store.Exists(tx, kindUserName, normName(u.UserName)); err != nil {
			return u, err
		} else if ok {
			return u, api.Errorf(api.ResourceAlreadyExists, "User with username %s already exists.", u.UserName)
		}
		if err := tx.Delete(kindUserName, normName(old.UserName)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return u, err
		}
		if err := store.Put(tx, kindUserName, normName(u.UserName), id); err != nil {
			return u, err
		}
	}
	u.ID = id
	u.Groups, u.Schemas, u.Meta = nil, nil, nil
	if u.Active == nil {
		u.Active = boolPtr(true)
	}
	return u, store.Put(tx, kindUser, id, u)
}

func (s *Service) deleteUser(tx store.Tx, id string) error {
	u, err := store.Get[User](tx, kindUser, id)
	if err != nil {
		return notFound("User", id, err)
	}
	if err := s.removeEverywhere(tx, id); err != nil {
		return err
	}
	if err := tx.Delete(kindUserName, normName(u.UserName)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return tx.Delete(kindUser, id)
}

// removeEverywhere removes a principal from every group and revokes its tokens.
func (s *Service) removeEverywhere(tx store.Tx, id string) error {
	groups, err := store.List[Group](tx, kindGroup, "")
	if err != nil {
		return err
	}
	for _, g := range groups {
		if !hasValue(g.Members, id) {
			continue
		}
		g.Members = removeValues(g.Members, id)
		if err := store.Put(tx, kindGroup, g.ID, g); err != nil {
			return err
		}
	}
	tokens, err := store.List[Token](tx, kindToken, "")
	if err != nil {
		return err
	}
	for _, t := range tokens {
		if t.OwnerID == id {
			if err := deleteToken(tx, t); err != nil {
				return err
			}
		}
	}
	return nil
}

func deleteToken(tx store.Tx, t Token) error {
	if err := tx.Delete(kindToken, t.Hash); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := tx.Delete(kindTokenID, t.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

func removeValues(cvs []ComplexValue, vals ...string) []ComplexValue {
	out := cvs[:0:0]
	for _, c := range cvs {
		keep := true
		for _, v := range vals {
			if c.Value == v {
				keep = false
			}
		}
		if keep {
			out = append(out, c)
		}
	}
	return out
}

func (s *Service) createGroup(tx store.Tx, g Group) (Group, error) {
	g.DisplayName = strings.TrimSpace(g.DisplayName)
	if err := validName("displayName", g.DisplayName, 256); err != nil {
		return g, err
	}
	if err := validEntitlementList(g.Entitlements); err != nil {
		return g, err
	}
	if ok, err := store.Exists(tx, kindGroupName, normName(g.DisplayName)); err != nil {
		return g, err
	} else if ok {
		return g, api.Errorf(api.ResourceAlreadyExists, "Group with name %s already exists.", g.DisplayName)
	}
	id, err := newID(tx)
	if err != nil {
		return g, err
	}
	g.ID = id
	if err := s.checkMembers(tx, g.ID, g.Members); err != nil {
		return g, err
	}
	g.Members = cleanMembers(g.Members)
	g.Groups, g.Schemas, g.Meta = nil, nil, nil
	if err := store.Put(tx, kindGroup, g.ID, g); err != nil {
		return g, err
	}
	return g, store.Put(tx, kindGroupName, normName(g.DisplayName), g.ID)
}

// checkMembers makes sure every member exists and that no group would
// contain itself.
func (s *Service) checkMembers(tx store.Tx, groupID string, members []ComplexValue) error {
	for _, m := range members {
		if m.Value == "" {
			return api.InvalidParam("A member has no value (the member's id).")
		}
		if m.Value == groupID {
			return api.InvalidParam("A group cannot be a member of itself.")
		}
		found := false
		for _, k := range []store.Kind{kindUser, kindSP, kindGroup} {
			ok, err := store.Exists(tx, k, m.Value)
			if err != nil {
				return err
			}
			found = found || ok
		}
		if !found {
			return api.InvalidParam("Member %s is not a user, service principal or group of this workspace.", m.Value)
		}
	}
	// Cycles through nested groups.
	groups, err := store.List[Group](tx, kindGroup, "")
	if err != nil {
		return err
	}
	for _, m := range members {
		if memberships(groups, groupID)[m.Value] {
			return api.InvalidParam("Adding group %s would make a cycle of nested groups.", m.Value)
		}
	}
	return nil
}

func cleanMembers(ms []ComplexValue) []ComplexValue {
	seen := map[string]bool{}
	out := make([]ComplexValue, 0, len(ms))
	for _, m := range ms {
		if seen[m.Value] {
			continue
		}
		seen[m.Value] = true
		out = append(out, ComplexValue{Value: m.Value})
	}
	return out
}

func builtin(name string) bool {
	return name == principal.AdminsGroup || name == principal.UsersGroup
}

func (s *Service) replaceGroup(tx store.Tx, id string, g Group) (Group, error) {
	old, err := store.Get[Group](tx, kindGroup, id)
	if err != nil {
		return g, notFound("Group", id, err)
	}
	g.DisplayName = strings.TrimSpace(g.DisplayName)
	if g.DisplayName == "" {
		g.DisplayName = old.DisplayName
	}
	if err := validName("displayName", g.DisplayName, 256); err != nil {
		return g, err
	}
	if err := validEntitlementList(g.Entitlements); err != nil {
		return g, err
	}
	if normName(g.DisplayName) != normName(old.DisplayName) {
		if builtin(old.DisplayName) {
			return g, api.InvalidParam("The built-in group %s cannot be renamed.", old.DisplayName)
		}
		if ok, err := store.Exists(tx, kindGroupName, normName(g.DisplayName)); err != nil {
			return g, err
		} else if ok {
			return g, api.Errorf(api.ResourceAlreadyExists, "Group with name %s already exists.", g.DisplayName)
		}
		if err := tx.Delete(kindGroupName, normName(old.DisplayName)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return g, err
		}
		if err := store.Put(tx, kindGroupName, normName(g.DisplayName), id); err != nil {
			return g, err
		}
	}
	if old.DisplayName == principal.UsersGroup {
		g.Members = nil // every principal is in users; the list is computed
	}
	if err := s.checkMembers(tx, id, g.Members); err != nil {
		return g, err
	}
	g.ID = id
	g.Members = cleanMembers(g.Members)
	g.Groups, g.Schemas, g.Meta = nil, nil, nil
	return g, store.Put(tx, kindGroup, id, g)
}

func (s *Service) deleteGroup(tx store.Tx, id string) error {
	g, err := store.Get[Group](tx, kindGroup, id)
	if err != nil {
		return notFound("Group", id, err)
	}
	if builtin(g.DisplayName) {
		return api.InvalidParam("The built-in group %s cannot be deleted.", g.DisplayName)
	}
	if err := s.removeEverywhere(tx, id); err != nil {
		return err
	}
	if err := tx.Delete(kindGroupName, normName(g.DisplayName)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return tx.Delete(kindGroup, id)
}

func (s *Service) createSP(tx store.Tx, sp ServicePrincipal) (ServicePrincipal, error) {
	sp.ApplicationID = strings.TrimSpace(sp.ApplicationID)
	if sp.ApplicationID == "" {
		sp.ApplicationID = uuid.NewString()
	} else if _, err := uuid.Parse(sp.ApplicationID); err != nil {
		return sp, api.InvalidParam("applicationId %q is not a UUID.", sp.ApplicationID)
	}
	if sp.DisplayName != "" {
		if err := validName("displayName", sp.DisplayName, 256); err != nil {
			return sp, err
		}
	}
	if err := validEntitlementList(sp.Entitlements); err != nil {
		return sp, err
	}
	if ok, err := store.Exists(tx, kindSPApp, normName(sp.ApplicationID)); err != nil {
		return sp, err
	} else if ok {
		return sp, api.Errorf(api.ResourceAlreadyExists, "Service principal with application id %s already exists.", sp.ApplicationID)
	}
	id, err := newID(tx)
	if err != nil {
		return sp, err
	}
	sp.ID = id
	groups := sp.Groups
	sp.Groups, sp.Schemas, sp.Meta = nil, nil, nil
	if sp.Active == nil {
		sp.Active = boolPtr(true)
	}
	if err := store.Put(tx, kindSP, id, sp); err != nil {
		return sp, err
	}
	if err := store.Put(tx, kindSPApp, normName(sp.ApplicationID), id); err != nil {
		return sp, err
	}
	for _, g := range groups {
		if err := s.addToGroupID(tx, g.Value, id); err != nil {
			return sp, err
		}
	}
	return sp, nil
}

func (s *Service) replaceSP(tx store.Tx, id string, sp ServicePrincipal) (ServicePrincipal, error) {
	old, err := store.Get[ServicePrincipal](tx, kindSP, id)
	if err != nil {
		return sp, notFound("Service principal", id, err)
	}
	if sp.ApplicationID != "" && normName(sp.ApplicationID) != normName(old.ApplicationID) {
		return sp, api.InvalidParam("The applicationId of a service principal cannot change.")
	}
	if err := validEntitlementList(sp.Entitlements); err != nil {
		return sp, err
	}
	sp.ID, sp.ApplicationID = id, old.ApplicationID
	sp.Groups, sp.Schemas, sp.Meta = nil, nil, nil
	if sp.Active == nil {
		sp.Active = boolPtr(true)
	}
	return sp, store.Put(tx, kindSP, id, sp)
}

func (s *Service) deleteSP(tx store.Tx, id string) error {
	sp, err := store.Get[ServicePrincipal](tx, kindSP, id)
	if err != nil {
		return notFound("Service principal", id, err)
	}
	if err := s.removeEverywhere(tx, id); err != nil {
		return err
	}
	if err := tx.Delete(kindSPApp, normName(sp.ApplicationID)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return tx.Delete(kindSP, id)
}

func notFound(what, id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return api.NotFound("%s %s not found.", what, id)
	}
	return err
}
