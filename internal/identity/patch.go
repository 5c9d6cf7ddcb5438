package identity

import (
	"encoding/json"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
)

// patchOp is one operation of a SCIM PatchOp request.
type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

type patchRequest struct {
	Schemas    []string  `json:"schemas"`
	Operations []patchOp `json:"Operations"`
}

// Attributes that PATCH may change, per resource: the canonical name and
// whether it is multi-valued.
var (
	userPatchable = map[string]bool{"active": false, "displayName": false, "userName": false, "name": false,
		"externalId": false, "emails": true, "entitlements": true, "roles": true}
	groupPatchable = map[string]bool{"displayName": false, "externalId": false, "members": true, "entitlements": true, "roles": true}
	spPatchable    = map[string]bool{"active": false, "displayName": false, "externalId": false, "entitlements": true, "roles": true}
)

func decodePatch(req *api.Request) ([]patchOp, error) {
	var pr patchRequest
	if err := req.Decode(&pr); err != nil {
		return nil, err
	}
	if len(pr.Operations) == 0 {
		return nil, api.MissingField("Operations")
	}
	return pr.Operations, nil
}

// applyPatch applies SCIM patch operations to a resource rendered as a JSON
// map. It is pure: the caller validates and stores the result.
func applyPatch(doc map[string]any, ops []patchOp, allowed map[string]bool) error {
	for _, op := range ops {
		kind := strings.ToLower(op.Op)
		if kind != "add" && kind != "remove" && kind != "replace" {
			return api.InvalidParam("Unsupported patch op %q; use add, remove or replace.", op.Op)
		}
		var value any
		if len(op.Value) > 0 {
			if err := json.Unmarshal(op.Value, &value); err != nil {
				return api.InvalidParam("Invalid patch value: %v.", err)
			}
		}
		if strings.TrimSpace(op.Path) == "" {
			obj, ok := value.(map[string]any)
			if !ok || kind == "remove" {
				return api.InvalidParam("A patch operation without a path needs an object value and op add or replace.")
			}
			for k, v := range obj {
				if strings.HasPrefix(k, "urn:") || k == "schemas" {
					continue
				}
				if err := applyOne(doc, kind, k, v, allowed); err != nil {
					return err
				}
			}
			continue
		}
		if err := applyOne(doc, kind, op.Path, value, allowed); err != nil {
			return err
		}
	}
	return nil
}

func applyOne(doc map[string]any, kind, path string, value any, allowed map[string]bool) error {
	attr, filter, sub, err := parsePath(path)
	if err != nil {
		return err
	}
	canon := ""
	for name := range allowed {
		if strings.EqualFold(name, attr) {
			canon = name
		}
	}
	if canon == "" {
		return api.InvalidParam("Attribute %q cannot be patched.", attr)
	}
	multi := allowed[canon]
	if !multi {
		if filter != nil {
			return api.InvalidParam("Attribute %q is single-valued; a filter does not apply.", attr)
		}
		if sub != "" {
			m, _ := doc[canon].(map[string]any)
			if m == nil {
				m = map[string]any{}
			}
			if kind == "remove" {
				delete(m, sub)
			} else {
				m[sub] = value
			}
			doc[canon] = m
			return nil
		}
		if kind == "remove" {
			delete(doc, canon)
		} else {
			doc[canon] = value
		}
		return nil
	}
	existing, _ := doc[canon].([]any)
	items := asItems(value)
	switch kind {
	case "add":
		for _, it := range items {
			if !containsValue(existing, itemValue(it)) {
				existing = append(existing, it)
			}
		}
	case "replace":
		if filter == nil {
			existing = items
			break
		}
		var out []any
		for _, e := range existing {
			if filter.Match(func(n string) []string { return attrValues(asMap(e), n) }) {
				if len(items) == 1 {
					if m, ok := items[0].(map[string]any); ok && sub == "" {
						out = append(out, m)
						continue
					}
				}
			}
			out = append(out, e)
		}
		existing = out
	case "remove":
		var out []any
		for _, e := range existing {
			drop := false
			switch {
			case filter != nil:
				drop = filter.Match(func(n string) []string { return attrValues(asMap(e), n) })
			case len(items) > 0:
				drop = containsValue(items, itemValue(e))
			default:
				drop = true
			}
			if !drop {
				out = append(out, e)
			}
		}
		existing = out
	}
	if existing == nil {
		existing = []any{}
	}
	doc[canon] = existing
	return nil
}

// parsePath splits "members[value eq \"1\"].display" into its attribute,
// filter and sub-attribute.
func parsePath(path string) (attr string, filter Filter, sub string, err error) {
	path = strings.TrimSpace(path)
	if i := strings.Index(path, "["); i >= 0 {
		j := strings.LastIndex(path, "]")
		if j < i {
			return "", nil, "", api.InvalidParam("Invalid patch path %q: missing ].", path)
		}
		attr = path[:i]
		filter, err = ParseFilter(path[i+1 : j])
		if err != nil {
			return "", nil, "", api.InvalidParam("Invalid patch path %q: %v.", path, err)
		}
		if rest := path[j+1:]; rest != "" {
			sub = strings.TrimPrefix(rest, ".")
		}
		return attr, filter, sub, nil
	}
	if i := strings.Index(path, "."); i >= 0 {
		return path[:i], nil, path[i+1:], nil
	}
	return path, nil, "", nil
}

func asItems(v any) []any {
	switch t := v.(type) {
	case nil:
		return nil
	case []any:
		return t
	case string:
		return []any{map[string]any{"value": t}}
	default:
		return []any{t}
	}
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func itemValue(v any) string {
	if m, ok := v.(map[string]any); ok {
		s, _ := m["value"].(string)
		return s
	}
	s, _ := v.(string)
	return s
}

func containsValue(items []any, v string) bool {
	for _, it := range items {
		if itemValue(it) == v {
			return true
		}
	}
	return false
}
