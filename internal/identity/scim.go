package identity

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

const scimBase = "/api/2.0/preview/scim/v2"

// Routes returns the SCIM, Token and Token management endpoints.
func (s *Service) Routes() []api.Route {
	routes := []api.Route{{Pattern: "GET " + scimBase + "/Me", Category: "accounts", Action: "getCurrentUser", Handler: s.me, SCIM: true}}
	routes = append(routes, users.routes(s, "Users", "listUsers", "add", "getUser", "updateUser", "delete")...)
	routes = append(routes, groupsResource.routes(s, "Groups", "listGroups", "createGroup", "getGroup", "updateGroup", "removeGroup")...)
	routes = append(routes, servicePrincipals.routes(s, "ServicePrincipals", "listServicePrincipals", "addServicePrincipal",
		"getServicePrincipal", "updateServicePrincipal", "deleteServicePrincipal")...)
	return append(routes, s.tokenRoutes()...)
}

func requireAdmin(ctx context.Context) error {
	if p := principal.MustFrom(ctx); !p.Admin {
		return api.Denied("Only workspace admins can do this; %s is not in the admins group.", p.Name)
	}
	return nil
}

// listQuery is the query of SCIM list calls.
type listQuery struct {
	Filter             string `json:"filter"`
	Attributes         string `json:"attributes"`
	ExcludedAttributes string `json:"excludedAttributes"`
	StartIndex         int64  `json:"startIndex"`
	Count              int64  `json:"count"`
	SortBy             string `json:"sortBy"`
	SortOrder          string `json:"sortOrder"`
}

// listResponse is SCIM's ListResponse. Resources is always present: the SDK
// stops paging on an empty page.
type listResponse struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int64    `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []any    `json:"Resources"`
}

// maxCount bounds one SCIM page.
const maxCount = 10000

// page applies a SCIM list query to resources (each rendered as a JSON map).
func page(q listQuery, items []map[string]any) (listResponse, error) {
	f, err := ParseFilter(q.Filter)
	if err != nil {
		return listResponse{}, api.InvalidParam("Invalid filter %q: %v.", q.Filter, err)
	}
	var matched []map[string]any
	for _, it := range items {
		if f == nil || f.Match(func(name string) []string { return attrValues(it, name) }) {
			matched = append(matched, it)
		}
	}
	if q.SortBy != "" {
		desc := strings.EqualFold(q.SortOrder, "descending")
		sort.SliceStable(matched, func(i, j int) bool {
			a, b := first(attrValues(matched[i], q.SortBy)), first(attrValues(matched[j], q.SortBy))
			if desc {
				return strings.ToLower(a) > strings.ToLower(b)
			}
			return strings.ToLower(a) < strings.ToLower(b)
		})
	}
	start := q.StartIndex
	if start < 1 {
		start = 1
	}
	count := q.Count
	if count <= 0 || count > maxCount {
		count = maxCount
	}
	resp := listResponse{Schemas: []string{schemaList}, TotalResults: len(matched), StartIndex: start, Resources: []any{}}
	for i := start - 1; i < int64(len(matched)) && int64(len(resp.Resources)) < count; i++ {
		resp.Resources = append(resp.Resources, project(matched[i], q.Attributes, q.ExcludedAttributes))
	}
	resp.ItemsPerPage = len(resp.Resources)
	return resp, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// attrValues returns the values of a (possibly dotted, case-insensitive)
// attribute of a rendered resource: "userName", "emails.value", "members.value".
func attrValues(it map[string]any, name string) []string {
	parts := strings.Split(name, ".")
	var cur []any = []any{it}
	for _, p := range parts {
		var next []any
		for _, c := range cur {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			for k, v := range m {
				if !strings.EqualFold(k, p) {
					continue
				}
				if arr, ok := v.([]any); ok {
					next = append(next, arr...)
				} else {
					next = append(next, v)
				}
			}
		}
		cur = next
	}
	var out []string
	for _, c := range cur {
		switch v := c.(type) {
		case string:
			out = append(out, v)
		case bool:
			out = append(out, strconv.FormatBool(v))
		case float64:
			out = append(out, strconv.FormatFloat(v, 'f', -1, 64))
		case map[string]any:
			if s, ok := v["value"].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// project keeps the requested attributes (plus id and schemas), or drops the
// excluded ones.
func project(it map[string]any, attrs, excluded string) map[string]any {
	if attrs == "" && excluded == "" {
		return it
	}
	out := map[string]any{}
	if attrs != "" {
		keep := map[string]bool{"id": true, "schemas": true}
		for _, a := range strings.Split(attrs, ",") {
			keep[strings.ToLower(strings.SplitN(strings.TrimSpace(a), ".", 2)[0])] = true
		}
		for k, v := range it {
			if keep[strings.ToLower(k)] {
				out[k] = v
			}
		}
		return out
	}
	drop := map[string]bool{}
	for _, a := range strings.Split(excluded, ",") {
		drop[strings.ToLower(strings.TrimSpace(a))] = true
	}
	for k, v := range it {
		if !drop[strings.ToLower(k)] || k == "id" {
			out[k] = v
		}
	}
	return out
}

func toMap(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// groupRefs returns the groups a member is in directly, as SCIM group refs.
func groupRefs(groups []Group, id string) []ComplexValue {
	var out []ComplexValue
	for _, g := range groups {
		if g.DisplayName == principal.UsersGroup || hasValue(g.Members, id) {
			out = append(out, ComplexValue{Value: g.ID, Display: g.DisplayName, Type: "direct", Ref: "Groups/" + g.ID})
		}
	}
	return out
}

func renderUser(u User, groups []Group) User {
	u.Schemas = []string{schemaUser, schemaUserExt}
	u.Groups = groupRefs(groups, u.ID)
	u.Meta = &Meta{ResourceType: "User"}
	return u
}

func renderSP(sp ServicePrincipal, groups []Group) ServicePrincipal {
	sp.Schemas = []string{schemaSP}
	sp.Groups = groupRefs(groups, sp.ID)
	sp.Meta = &Meta{ResourceType: "ServicePrincipal"}
	return sp
}

// renderGroup fills in display names of members; the users group lists
// every principal.
func (s *Service) renderGroup(tx store.Tx, g Group, groups []Group) (Group, error) {
	g.Schemas = []string{schemaGroup}
	g.Meta = &Meta{ResourceType: "WorkspaceGroup"}
	members := g.Members
	if g.DisplayName == principal.UsersGroup {
		members = nil
		users, err := store.List[User](tx, kindUser, "")
		if err != nil {
			return g, err
		}
		for _, u := range users {
			members = append(members, ComplexValue{Value: u.ID})
		}
		sps, err := store.List[ServicePrincipal](tx, kindSP, "")
		if err != nil {
			return g, err
		}
		for _, sp := range sps {
			members = append(members, ComplexValue{Value: sp.ID})
		}
	}
	g.Members = nil
	for _, m := range members {
		cv := ComplexValue{Value: m.Value}
		if u, err := store.Get[User](tx, kindUser, m.Value); err == nil {
			cv.Display, cv.Ref = u.DisplayName, "Users/"+u.ID
			if cv.Display == "" {
				cv.Display = u.UserName
			}
		} else if sp, err := store.Get[ServicePrincipal](tx, kindSP, m.Value); err == nil {
			cv.Display, cv.Ref = sp.DisplayName, "ServicePrincipals/"+sp.ID
		} else if mg, err := store.Get[Group](tx, kindGroup, m.Value); err == nil {
			cv.Display, cv.Ref = mg.DisplayName, "Groups/"+mg.ID
		}
		g.Members = append(g.Members, cv)
	}
	g.Groups = nil
	for _, pg := range groups {
		if hasValue(pg.Members, g.ID) {
			g.Groups = append(g.Groups, ComplexValue{Value: pg.ID, Display: pg.DisplayName, Type: "direct", Ref: "Groups/" + pg.ID})
		}
	}
	return g, nil
}

func (s *Service) me(ctx context.Context, req *api.Request) (any, error) {
	p := principal.MustFrom(ctx)
	var out any
	err := s.store.View(ctx, func(tx store.Tx) error {
		groups, err := store.List[Group](tx, kindGroup, "")
		if err != nil {
			return err
		}
		if p.Kind == principal.ServicePrincipal {
			sp, err := store.Get[ServicePrincipal](tx, kindSP, p.ID)
			out = renderSP(sp, groups)
			return err
		}
		u, err := store.Get[User](tx, kindUser, p.ID)
		out = renderUser(u, groups)
		return err
	})
	return out, err
}

// resource is one SCIM resource type (Users, Groups, ServicePrincipals):
// how to load, render, create, replace and delete it. Its handlers are the
// same for every type.
type resource[T any] struct {
	noun      string // in messages: "User"
	kind      store.Kind
	patchable map[string]bool
	render    func(s *Service, tx store.Tx, v T, groups []Group) (any, error)
	create    func(s *Service, tx store.Tx, v T) (T, error)
	replace   func(s *Service, tx store.Tx, id string, v T) (T, error)
	remove    func(s *Service, tx store.Tx, id string) error
	// mayDelete refuses deletes the type does not allow (yourself).
	mayDelete func(ctx context.Context, id string) error
}

var users = resource[User]{
	noun: "User", kind: kindUser, patchable: userPatchable,
	render: func(_ *Service, _ store.Tx, u User, groups []Group) (any, error) { return renderUser(u, groups), nil },
	create: (*Service).createUser, replace: (*Service).replaceUser, remove: (*Service).deleteUser,
	mayDelete: func(ctx context.Context, id string) error {
		if id == principal.MustFrom(ctx).ID {
			return api.InvalidParam("You cannot delete yourself.")
		}
		return nil
	},
}

var groupsResource = resource[Group]{
	noun: "Group", kind: kindGroup, patchable: groupPatchable,
	render: func(s *Service, tx store.Tx, g Group, groups []Group) (any, error) {
		return s.renderGroup(tx, g, groups)
	},
	create: (*Service).createGroup, replace: (*Service).replaceGroup, remove: (*Service).deleteGroup,
}

var servicePrincipals = resource[ServicePrincipal]{
	noun: "Service principal", kind: kindSP, patchable: spPatchable,
	render: func(_ *Service, _ store.Tx, sp ServicePrincipal, groups []Group) (any, error) {
		return renderSP(sp, groups), nil
	},
	create: (*Service).createSP, replace: (*Service).replaceSP, remove: (*Service).deleteSP,
}

// routes returns the six SCIM endpoints of a resource type.
func (r resource[T]) routes(s *Service, path, list, add, get, update, del string) []api.Route {
	scim := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "accounts", Action: action, Handler: h, SCIM: true}
	}
	base := scimBase + "/" + path
	return []api.Route{
		scim("GET "+base, list, func(ctx context.Context, req *api.Request) (any, error) { return r.list(ctx, s, req) }),
		scim("POST "+base, add, func(ctx context.Context, req *api.Request) (any, error) { return r.createHandler(ctx, s, req) }),
		scim("GET "+base+"/{id}", get, func(ctx context.Context, req *api.Request) (any, error) { return r.get(ctx, s, req) }),
		scim("PUT "+base+"/{id}", update, func(ctx context.Context, req *api.Request) (any, error) { return r.put(ctx, s, req) }),
		scim("PATCH "+base+"/{id}", update, func(ctx context.Context, req *api.Request) (any, error) { return r.patch(ctx, s, req) }),
		scim("DELETE "+base+"/{id}", del, func(ctx context.Context, req *api.Request) (any, error) { return r.delete(ctx, s, req) }),
	}
}

func (r resource[T]) load(tx store.Tx, id string) (T, error) {
	v, err := store.Get[T](tx, r.kind, id)
	if err != nil {
		return v, notFound(r.noun, id, err)
	}
	return v, nil
}

func (r resource[T]) list(ctx context.Context, s *Service, req *api.Request) (any, error) {
	var q listQuery
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	var items []map[string]any
	err := s.store.View(ctx, func(tx store.Tx) error {
		groups, err := store.List[Group](tx, kindGroup, "")
		if err != nil {
			return err
		}
		return store.ScanPrefix(tx, r.kind, "", func(_ string, v T) error {
			out, err := r.render(s, tx, v, groups)
			items = append(items, toMap(out))
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	sortByID(items)
	return page(q, items)
}

func (r resource[T]) get(ctx context.Context, s *Service, req *api.Request) (any, error) {
	id := req.HTTP.PathValue("id")
	var q listQuery
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	var out map[string]any
	err := s.store.View(ctx, func(tx store.Tx) error {
		v, err := r.load(tx, id)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		if err != nil {
			return err
		}
		rendered, err := r.render(s, tx, v, groups)
		out = project(toMap(rendered), q.Attributes, q.ExcludedAttributes)
		return err
	})
	return out, err
}

// change runs one admin-only change in a transaction and renders its result.
func (r resource[T]) change(ctx context.Context, s *Service, fn func(tx store.Tx) (T, error)) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var out any
	err := s.update(ctx, func(tx store.Tx) error {
		v, err := fn(tx)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		if err != nil {
			return err
		}
		out, err = r.render(s, tx, v, groups)
		return err
	})
	return out, err
}

func (r resource[T]) createHandler(ctx context.Context, s *Service, req *api.Request) (any, error) {
	var v T
	if err := req.Decode(&v); err != nil {
		return nil, err
	}
	out, err := r.change(ctx, s, func(tx store.Tx) (T, error) { return r.create(s, tx, v) })
	if err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusCreated, Body: out}, nil
}

func (r resource[T]) put(ctx context.Context, s *Service, req *api.Request) (any, error) {
	var v T
	if err := req.Decode(&v); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	return r.change(ctx, s, func(tx store.Tx) (T, error) { return r.replace(s, tx, id, v) })
}

func (r resource[T]) patch(ctx context.Context, s *Service, req *api.Request) (any, error) {
	ops, err := decodePatch(req)
	if err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	return r.change(ctx, s, func(tx store.Tx) (T, error) {
		var next T
		cur, err := r.load(tx, id)
		if err != nil {
			return next, err
		}
		doc := toMap(cur)
		if err := applyPatch(doc, ops, r.patchable); err != nil {
			return next, err
		}
		if err := remarshal(doc, &next); err != nil {
			return next, err
		}
		return r.replace(s, tx, id, next)
	})
}

func (r resource[T]) delete(ctx context.Context, s *Service, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	if r.mayDelete != nil {
		if err := r.mayDelete(ctx, id); err != nil {
			return nil, err
		}
	}
	if err := s.update(ctx, func(tx store.Tx) error { return r.remove(s, tx, id) }); err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusNoContent}, nil
}

func sortByID(items []map[string]any) {
	sort.SliceStable(items, func(i, j int) bool {
		a, _ := items[i]["id"].(string)
		b, _ := items[j]["id"].(string)
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	})
}

func remarshal(in any, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return api.InvalidParam("Invalid value for attribute %s.", te.Field)
		}
		return api.InvalidParam("Invalid patch value: %v.", err)
	}
	return nil
}
