package permissions

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Routes returns the Permissions API 2.0.
func (s *Service) Routes() []api.Route {
	return []api.Route{
		{Pattern: "GET /api/2.0/permissions/{type}/{id}", Category: "workspace", Action: "getPermissions", Handler: s.get},
		{Pattern: "PUT /api/2.0/permissions/{type}/{id}", Category: "workspace", Action: "changeAcl", Handler: s.change},
		{Pattern: "PATCH /api/2.0/permissions/{type}/{id}", Category: "workspace", Action: "changeAcl", Handler: s.change},
		{Pattern: "GET /api/2.0/permissions/{type}/{id}/permissionLevels", Category: "workspace", Action: "getPermissionLevels", Handler: s.levels},
	}
}

// Permission is one level a principal holds, and where it comes from.
type Permission struct {
	Level               Level    `json:"permission_level"`
	Inherited           bool     `json:"inherited"`
	InheritedFromObject []string `json:"inherited_from_object,omitempty"`
}

// AccessControl is one principal's entry of ObjectPermissions.
type AccessControl struct {
	UserName             string       `json:"user_name,omitempty"`
	GroupName            string       `json:"group_name,omitempty"`
	ServicePrincipalName string       `json:"service_principal_name,omitempty"`
	DisplayName          string       `json:"display_name,omitempty"`
	AllPermissions       []Permission `json:"all_permissions"`
}

// ObjectPermissions is the response of the Permissions API.
type ObjectPermissions struct {
	ObjectID          string          `json:"object_id"`
	ObjectType        string          `json:"object_type"`
	AccessControlList []AccessControl `json:"access_control_list"`
}

func (s *Service) typeOf(req *api.Request, change bool) (*ObjectType, string, error) {
	name, id := req.HTTP.PathValue("type"), req.HTTP.PathValue("id")
	t, ok := s.Type(name)
	if !ok {
		return nil, "", api.Errorf(api.EndpointNotFound, "No API found for '%s %s': unknown object type %q.", req.HTTP.Method, req.HTTP.URL.Path, name)
	}
	action := "getPermissions"
	if change {
		action = t.Action
	}
	req.SetAction(t.Category, action)
	return t, id, nil
}

func (s *Service) get(ctx context.Context, req *api.Request) (any, error) {
	t, id, err := s.typeOf(req, false)
	if err != nil {
		return nil, err
	}
	var out ObjectPermissions
	err = s.store.View(ctx, func(tx store.Tx) error {
		// Anyone holding a level on the object may see who else does.
		if err := s.Check(tx, principal.MustFrom(ctx), t.Name, id, t.Levels[0]); err != nil {
			return err
		}
		var err error
		out, err = s.render(tx, t, id)
		return err
	})
	return out, notFound(t, id, err)
}

func notFound(t *ObjectType, id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return api.NotFound("%s %s does not exist.", strings.TrimSuffix(t.Wire, "s"), id)
	}
	return err
}

// render builds the ObjectPermissions of an object: direct grants, grants
// inherited from parents, and the admins group's implicit CAN_MANAGE.
func (s *Service) render(tx store.Tx, t *ObjectType, id string) (ObjectPermissions, error) {
	obj, err := t.Resolve(tx, id)
	if err != nil {
		return ObjectPermissions{}, err
	}
	out := ObjectPermissions{ObjectID: "/" + t.Name + "/" + obj.ID, ObjectType: t.Wire}
	entries := map[string]*AccessControl{}
	var order []string
	add := func(g Grant, p Permission) {
		k := g.key()
		e, ok := entries[k]
		if !ok {
			e = &AccessControl{UserName: g.UserName, GroupName: g.GroupName, ServicePrincipalName: g.ServicePrincipalName}
			entries[k] = e
			order = append(order, k)
		}
		e.AllPermissions = append(e.AllPermissions, p)
	}
	direct, err := Grants(tx, obj.Type, obj.ID)
	if err != nil {
		return out, err
	}
	sortGrants(direct)
	for _, g := range direct {
		add(g, Permission{Level: g.Level})
	}
	for _, parent := range obj.Parents {
		gs, err := Grants(tx, parent.Type, parent.ID)
		if err != nil {
			return out, err
		}
		sortGrants(gs)
		for _, g := range gs {
			add(g, Permission{Level: g.Level, Inherited: true, InheritedFromObject: []string{"/" + parent.Type + "/" + parent.ID}})
		}
	}
	root := "/" + t.Name + "/"
	if len(obj.Parents) > 0 {
		root = "/" + obj.Parents[len(obj.Parents)-1].Type + "/"
	}
	add(Grant{GroupName: principal.AdminsGroup}, Permission{Level: adminLevel(t), Inherited: true, InheritedFromObject: []string{root}})
	for _, k := range order {
		out.AccessControlList = append(out.AccessControlList, *entries[k])
	}
	return out, nil
}

// adminLevel is the level shown for the admins group: CAN_MANAGE where the
// type has it.
func adminLevel(t *ObjectType) Level {
	if rank(t.Levels, CanManage) > 0 {
		return CanManage
	}
	return t.Levels[len(t.Levels)-1]
}

type changeRequest struct {
	AccessControlList []Grant `json:"access_control_list"`
}

func (s *Service) change(ctx context.Context, req *api.Request) (any, error) {
	t, id, err := s.typeOf(req, true)
	if err != nil {
		return nil, err
	}
	var r changeRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := s.validate(ctx, t, r.AccessControlList); err != nil {
		return nil, err
	}
	replace := req.HTTP.Method == http.MethodPut
	var out ObjectPermissions
	_, err = s.store.Update(ctx, func(tx store.Tx) error {
		p := principal.MustFrom(ctx)
		if err := s.Check(tx, p, t.Name, id, t.ManageLevel); err != nil {
			return err
		}
		obj, err := t.Resolve(tx, id)
		if err != nil {
			return err
		}
		current, err := Grants(tx, obj.Type, obj.ID)
		if err != nil {
			return err
		}
		next := merge(nil, r.AccessControlList)
		if !replace {
			next = merge(current, r.AccessControlList)
		}
		next, err = keepOwner(t, current, next, r.AccessControlList)
		if err != nil {
			return err
		}
		if err := Set(tx, obj.Type, obj.ID, next...); err != nil {
			return err
		}
		out, err = s.render(tx, t, obj.ID)
		return err
	})
	if err != nil {
		return nil, notFound(t, id, err)
	}
	return out, nil
}

// keepOwner enforces that a type with IS_OWNER has exactly one owner: a new
// owner in the request replaces the old one; a request without one keeps it.
func keepOwner(t *ObjectType, current, next, requested []Grant) ([]Grant, error) {
	if rank(t.Levels, IsOwner) == 0 {
		return next, nil
	}
	var newOwner *Grant
	for i := range requested {
		if requested[i].Level == IsOwner {
			if newOwner != nil {
				return nil, api.InvalidParam("An object can have only one owner (IS_OWNER).")
			}
			newOwner = &requested[i]
		}
	}
	var out []Grant
	for _, g := range next {
		if g.Level == IsOwner && (newOwner == nil || g.key() != newOwner.key()) {
			continue
		}
		out = append(out, g)
	}
	if newOwner == nil {
		for _, g := range current {
			if g.Level == IsOwner {
				out = merge(out, []Grant{g})
			}
		}
	}
	return out, nil
}

func (s *Service) validate(ctx context.Context, t *ObjectType, grants []Grant) error {
	for _, g := range grants {
		n := 0
		for _, v := range []string{g.UserName, g.GroupName, g.ServicePrincipalName} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return api.InvalidParam("Each access control entry needs exactly one of user_name, group_name and service_principal_name.")
		}
		if rank(t.Levels, g.Level) == 0 {
			return api.InvalidParam("Permission level %q is not valid for %s; valid levels are %s.", g.Level, t.Name, levelList(t.Levels))
		}
		if strings.EqualFold(g.GroupName, principal.AdminsGroup) {
			return api.InvalidParam("The admins group always has full permissions; its grants cannot be changed.")
		}
		if g.Level == IsOwner && g.GroupName != "" {
			return api.InvalidParam("The owner (IS_OWNER) must be a user or a service principal, not a group.")
		}
		kind, name := "user", g.UserName
		if g.GroupName != "" {
			kind, name = "group", g.GroupName
		} else if g.ServicePrincipalName != "" {
			kind, name = "service_principal", g.ServicePrincipalName
		}
		if s.dir != nil {
			if _, _, err := s.dir.LookupPrincipal(ctx, kind, name); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return api.InvalidParam("Principal %s (%s) does not exist in this workspace.", name, strings.ReplaceAll(kind, "_", " "))
				}
				return err
			}
		}
	}
	return nil
}

func levelList(ls []Level) string {
	var s []string
	for _, l := range ls {
		s = append(s, string(l))
	}
	return strings.Join(s, ", ")
}

func (s *Service) levels(ctx context.Context, req *api.Request) (any, error) {
	t, id, err := s.typeOf(req, false)
	if err != nil {
		return nil, err
	}
	err = s.store.View(ctx, func(tx store.Tx) error {
		return s.Check(tx, principal.MustFrom(ctx), t.Name, id, t.Levels[0])
	})
	if err != nil {
		return nil, notFound(t, id, err)
	}
	type levelInfo struct {
		Level       Level  `json:"permission_level"`
		Description string `json:"description"`
	}
	out := []levelInfo{}
	for _, l := range t.Levels {
		out = append(out, levelInfo{Level: l, Description: descriptions[l]})
	}
	return map[string]any{"permission_levels": out}, nil
}

// ValidateGrants checks grants for an object type as the Permissions API
// does (levels valid for the type, principals that exist, one owner), for
// services that take an access_control_list at creation.
func (s *Service) ValidateGrants(ctx context.Context, typeName string, grants []Grant) error {
	t, ok := s.Type(typeName)
	if !ok {
		return fmt.Errorf("permissions: unknown object type %q", typeName)
	}
	if _, err := keepOwner(t, nil, grants, grants); err != nil {
		return err
	}
	return s.validate(ctx, t, grants)
}
