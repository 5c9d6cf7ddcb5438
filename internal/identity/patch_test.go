package identity

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestApplyPatchOperations(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"displayName": "eng",
			"members":     []any{map[string]any{"value": "1"}, map[string]any{"value": "2"}},
		}
	}
	op := func(kind, path, value string) patchOp {
		o := patchOp{Op: kind, Path: path}
		if value != "" {
			o.Value = json.RawMessage(value)
		}
		return o
	}
	cases := []struct {
		name string
		ops  []patchOp
		want map[string]any
		err  bool
	}{
		{"add members skips duplicates", []patchOp{op("add", "members", `[{"value":"2"},{"value":"3"}]`)},
			map[string]any{"displayName": "eng", "members": []any{map[string]any{"value": "1"}, map[string]any{"value": "2"}, map[string]any{"value": "3"}}}, false},
		{"remove member by filter", []patchOp{op("remove", `members[value eq "1"]`, "")},
			map[string]any{"displayName": "eng", "members": []any{map[string]any{"value": "2"}}}, false},
		{"remove member by value", []patchOp{op("Remove", "members", `[{"value":"2"}]`)},
			map[string]any{"displayName": "eng", "members": []any{map[string]any{"value": "1"}}}, false},
		{"remove all members", []patchOp{op("remove", "members", "")},
			map[string]any{"displayName": "eng", "members": []any{}}, false},
		{"replace members", []patchOp{op("replace", "members", `[{"value":"9"}]`)},
			map[string]any{"displayName": "eng", "members": []any{map[string]any{"value": "9"}}}, false},
		{"replace scalar", []patchOp{op("replace", "displayName", `"data"`)},
			map[string]any{"displayName": "data", "members": []any{map[string]any{"value": "1"}, map[string]any{"value": "2"}}}, false},
		{"no path with object value", []patchOp{op("replace", "", `{"displayName":"x","schemas":["s"]}`)},
			map[string]any{"displayName": "x", "members": []any{map[string]any{"value": "1"}, map[string]any{"value": "2"}}}, false},
		{"entitlements added", []patchOp{op("add", "entitlements", `[{"value":"allow-cluster-create"}]`)},
			map[string]any{"displayName": "eng", "members": []any{map[string]any{"value": "1"}, map[string]any{"value": "2"}}, "entitlements": []any{map[string]any{"value": "allow-cluster-create"}}}, false},
		{"unknown op", []patchOp{op("move", "members", `[]`)}, nil, true},
		{"unpatchable attribute", []patchOp{op("replace", "id", `"7"`)}, nil, true},
		{"bad filter", []patchOp{op("remove", `members[value eq]`, "")}, nil, true},
		{"remove without path", []patchOp{op("remove", "", `{"a":1}`)}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := base()
			err := applyPatch(doc, c.ops, groupPatchable)
			if c.err {
				if err == nil {
					t.Fatalf("applyPatch succeeded: %v", doc)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, doc); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPageHonoursStartIndexAndEndsWithAnEmptyPage(t *testing.T) {
	var items []map[string]any
	for i := 0; i < 5; i++ {
		items = append(items, map[string]any{"id": string(rune('a' + i)), "userName": string(rune('a'+i)) + "@x"})
	}
	seen := 0
	start := int64(1)
	for pages := 0; pages < 10; pages++ {
		resp, err := page(listQuery{StartIndex: start, Count: 2}, items)
		if err != nil {
			t.Fatal(err)
		}
		if resp.TotalResults != 5 || resp.StartIndex != start {
			t.Fatalf("page at %d: %+v", start, resp)
		}
		if len(resp.Resources) == 0 {
			if seen != 5 {
				t.Fatalf("saw %d items before the empty page", seen)
			}
			return
		}
		seen += len(resp.Resources)
		start += int64(len(resp.Resources))
	}
	t.Fatal("paging never reached an empty page")
}
