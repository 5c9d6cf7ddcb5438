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
	scim := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "accounts", Action: action, Handler: h, SCIM: true}
	}
	return append([]api.Route{
		scim("GET "+scimBase+"/Me", "getCurrentUser", s.me),

		scim("GET "+scimBase+"/Users", "listUsers", s.listUsers),
		scim("POST "+scimBase+"/Users", "add", s.createUserHandler),
		scim("GET "+scimBase+"/Users/{id}", "getUser", s.getUserHandler),
		scim("PUT "+scimBase+"/Users/{id}", "updateUser", s.putUserHandler),
		scim("PATCH "+scimBase+"/Users/{id}", "updateUser", s.patchUserHandler),
		scim("DELETE "+scimBase+"/Users/{id}", "delete", s.deleteUserHandler),

		scim("GET "+scimBase+"/Groups", "listGroups", s.listGroups),
		scim("POST "+scimBase+"/Groups", "createGroup", s.createGroupHandler),
		scim("GET "+scimBase+"/Groups/{id}", "getGroup", s.getGroupHandler),
		scim("PUT "+scimBase+"/Groups/{id}", "updateGroup", s.putGroupHandler),
		scim("PATCH "+scimBase+"/Groups/{id}", "updateGroup", s.patchGroupHandler),
		scim("DELETE "+scimBase+"/Groups/{id}", "removeGroup", s.deleteGroupHandler),

		scim("GET "+scimBase+"/ServicePrincipals", "listServicePrincipals", s.listSPs),
		scim("POST "+scimBase+"/ServicePrincipals", "addServicePrincipal", s.createSPHandler),
		scim("GET "+scimBase+"/ServicePrincipals/{id}", "getServicePrincipal", s.getSPHandler),
		scim("PUT "+scimBase+"/ServicePrincipals/{id}", "updateServicePrincipal", s.putSPHandler),
		scim("PATCH "+scimBase+"/ServicePrincipals/{id}", "updateServicePrincipal", s.patchSPHandler),
		scim("DELETE "+scimBase+"/ServicePrincipals/{id}", "deleteServicePrincipal", s.deleteSPHandler),
	}, s.tokenRoutes()...)
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

// ---- Users

func (s *Service) listUsers(ctx context.Context, req *api.Request) (any, error) {
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
		return store.ScanPrefix(tx, kindUser, "", func(_ string, u User) error {
			items = append(items, toMap(renderUser(u, groups)))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortByID(items)
	return page(q, items)
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

func (s *Service) getUserHandler(ctx context.Context, req *api.Request) (any, error) {
	id := req.HTTP.PathValue("id")
	var q listQuery
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	var out map[string]any
	err := s.store.View(ctx, func(tx store.Tx) error {
		u, err := store.Get[User](tx, kindUser, id)
		if err != nil {
			return notFound("User", id, err)
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		out = project(toMap(renderUser(u, groups)), q.Attributes, q.ExcludedAttributes)
		return err
	})
	return out, err
}

func (s *Service) createUserHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var u User
	if err := req.Decode(&u); err != nil {
		return nil, err
	}
	var out User
	err := s.update(ctx, func(tx store.Tx) error {
		created, err := s.createUser(tx, u)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		out = renderUser(created, groups)
		return err
	})
	if err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusCreated, Body: out}, nil
}

func (s *Service) putUserHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var u User
	if err := req.Decode(&u); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	var out User
	err := s.update(ctx, func(tx store.Tx) error {
		replaced, err := s.replaceUser(tx, id, u)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		out = renderUser(replaced, groups)
		return err
	})
	return out, err
}

func (s *Service) patchUserHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	ops, err := decodePatch(req)
	if err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	var out User
	err = s.update(ctx, func(tx store.Tx) error {
		u, err := store.Get[User](tx, kindUser, id)
		if err != nil {
			return notFound("User", id, err)
		}
		doc := toMap(u)
		if err := applyPatch(doc, ops, userPatchable); err != nil {
			return err
		}
		var next User
		if err := remarshal(doc, &next); err != nil {
			return err
		}
		replaced, err := s.replaceUser(tx, id, next)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		out = renderUser(replaced, groups)
		return err
	})
	return out, err
}

func (s *Service) deleteUserHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	if id == principal.MustFrom(ctx).ID {
		return nil, api.InvalidParam("You cannot delete yourself.")
	}
	err := s.update(ctx, func(tx store.Tx) error { return s.deleteUser(tx, id) })
	if err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusNoContent}, nil
}

// ---- Groups

func (s *Service) listGroups(ctx context.Context, req *api.Request) (any, error) {
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
		for _, g := range groups {
			r, err := s.renderGroup(tx, g, groups)
			if err != nil {
				return err
			}
			items = append(items, toMap(r))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortByID(items)
	return page(q, items)
}

func (s *Service) getGroupHandler(ctx context.Context, req *api.Request) (any, error) {
	id := req.HTTP.PathValue("id")
	var q listQuery
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	var out map[string]any
	err := s.store.View(ctx, func(tx store.Tx) error {
		g, err := store.Get[Group](tx, kindGroup, id)
		if err != nil {
			return notFound("Group", id, err)
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		if err != nil {
			return err
		}
		r, err := s.renderGroup(tx, g, groups)
		out = project(toMap(r), q.Attributes, q.ExcludedAttributes)
		return err
	})
	return out, err
}

func (s *Service) createGroupHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var g Group
	if err := req.Decode(&g); err != nil {
		return nil, err
	}
	var out Group
	err := s.update(ctx, func(tx store.Tx) error {
		created, err := s.createGroup(tx, g)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		if err != nil {
			return err
		}
		out, err = s.renderGroup(tx, created, groups)
		return err
	})
	if err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusCreated, Body: out}, nil
}

func (s *Service) putGroupHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var g Group
	if err := req.Decode(&g); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	var out Group
	err := s.update(ctx, func(tx store.Tx) error {
		replaced, err := s.replaceGroup(tx, id, g)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		if err != nil {
			return err
		}
		out, err = s.renderGroup(tx, replaced, groups)
		return err
	})
	return out, err
}

func (s *Service) patchGroupHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	ops, err := decodePatch(req)
	if err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	var out Group
	err = s.update(ctx, func(tx store.Tx) error {
		g, err := store.Get[Group](tx, kindGroup, id)
		if err != nil {
			return notFound("Group", id, err)
		}
		doc := toMap(g)
		if err := applyPatch(doc, ops, groupPatchable); err != nil {
			return err
		}
		var next Group
		if err := remarshal(doc, &next); err != nil {
			return err
		}
		replaced, err := s.replaceGroup(tx, id, next)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		if err != nil {
			return err
		}
		out, err = s.renderGroup(tx, replaced, groups)
		return err
	})
	return out, err
}

func (s *Service) deleteGroupHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	if err := s.update(ctx, func(tx store.Tx) error { return s.deleteGroup(tx, id) }); err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusNoContent}, nil
}

// ---- Service principals

func (s *Service) listSPs(ctx context.Context, req *api.Request) (any, error) {
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
		return store.ScanPrefix(tx, kindSP, "", func(_ string, sp ServicePrincipal) error {
			items = append(items, toMap(renderSP(sp, groups)))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortByID(items)
	return page(q, items)
}

func (s *Service) getSPHandler(ctx context.Context, req *api.Request) (any, error) {
	id := req.HTTP.PathValue("id")
	var q listQuery
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	var out map[string]any
	err := s.store.View(ctx, func(tx store.Tx) error {
		sp, err := store.Get[ServicePrincipal](tx, kindSP, id)
		if err != nil {
			return notFound("Service principal", id, err)
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		out = project(toMap(renderSP(sp, groups)), q.Attributes, q.ExcludedAttributes)
		return err
	})
	return out, err
}

func (s *Service) createSPHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var sp ServicePrincipal
	if err := req.Decode(&sp); err != nil {
		return nil, err
	}
	var out ServicePrincipal
	err := s.update(ctx, func(tx store.Tx) error {
		created, err := s.createSP(tx, sp)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		out = renderSP(created, groups)
		return err
	})
	if err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusCreated, Body: out}, nil
}

func (s *Service) putSPHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var sp ServicePrincipal
	if err := req.Decode(&sp); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	var out ServicePrincipal
	err := s.update(ctx, func(tx store.Tx) error {
		replaced, err := s.replaceSP(tx, id, sp)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		out = renderSP(replaced, groups)
		return err
	})
	return out, err
}

func (s *Service) patchSPHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	ops, err := decodePatch(req)
	if err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	var out ServicePrincipal
	err = s.update(ctx, func(tx store.Tx) error {
		sp, err := store.Get[ServicePrincipal](tx, kindSP, id)
		if err != nil {
			return notFound("Service principal", id, err)
		}
		doc := toMap(sp)
		if err := applyPatch(doc, ops, spPatchable); err != nil {
			return err
		}
		var next ServicePrincipal
		if err := remarshal(doc, &next); err != nil {
			return err
		}
		replaced, err := s.replaceSP(tx, id, next)
		if err != nil {
			return err
		}
		groups, err := store.List[Group](tx, kindGroup, "")
		out = renderSP(replaced, groups)
		return err
	})
	return out, err
}

func (s *Service) deleteSPHandler(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("id")
	if err := s.update(ctx, func(tx store.Tx) error { return s.deleteSP(tx, id) }); err != nil {
		return nil, err
	}
	return api.Reply{Status: http.StatusNoContent}, nil
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
