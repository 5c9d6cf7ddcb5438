package audit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTruncateFollowsTheHundredKilobyteRule(t *testing.T) {
	big := strings.Repeat("x", 200*1024)
	many := map[string]string{}
	for i := 0; i < 20000; i++ {
		many[strings.Repeat("k", 8)+string(rune('a'+i%26))+strings.Repeat("y", i%7)+itoa(i)] = "v"
	}
	cases := []struct {
		name  string
		in    map[string]string
		limit int
		check func(t *testing.T, out map[string]string)
	}{
		{"small map unchanged", map[string]string{"path": "/a"}, MaxParamsBytes, func(t *testing.T, out map[string]string) {
			if diff := cmp.Diff(map[string]string{"path": "/a"}, out); diff != "" {
				t.Error(diff)
			}
		}},
		{"one huge value is cut and marked", map[string]string{"path": "/a", "content": big}, MaxParamsBytes, func(t *testing.T, out map[string]string) {
			if out["path"] != "/a" {
				t.Errorf("short value changed: %q", out["path"])
			}
			if !strings.HasSuffix(out["content"], TruncatedSuffix) {
				t.Errorf("cut value does not end with %q", TruncatedSuffix)
			}
			if n := encodedSize(out); n > MaxParamsBytes || n < MaxParamsBytes-64 {
				t.Errorf("encoded size %d, want close to and at most %d", n, MaxParamsBytes)
			}
		}},
		{"two big values cut to the same length", map[string]string{"a": big, "b": big[:150*1024], "c": "keep"}, MaxParamsBytes, func(t *testing.T, out map[string]string) {
			if len(out["a"]) != len(out["b"]) {
				t.Errorf("cut lengths differ: %d vs %d", len(out["a"]), len(out["b"]))
			}
			if out["c"] != "keep" {
				t.Errorf("short value changed")
			}
		}},
		{"too many keys becomes TRUNCATED", many, MaxParamsBytes, func(t *testing.T, out map[string]string) {
			if diff := cmp.Diff(map[string]string{TruncatedKey: ""}, out); diff != "" {
				t.Error(diff)
			}
		}},
		{"multibyte values are not split", map[string]string{"s": strings.Repeat("é", 100)}, 120, func(t *testing.T, out map[string]string) {
			v := strings.TrimSuffix(out["s"], TruncatedSuffix)
			if !json.Valid([]byte(`"`+v+`"`)) || strings.ContainsRune(v, '\uFFFD') || len(v)%2 != 0 {
				t.Errorf("value split inside a character: %q", v)
			}
			if encodedSize(out) > 120 {
				t.Errorf("size %d over limit", encodedSize(out))
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, Truncate(c.in, c.limit)) })
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestParamsDropSecretsAtAnyDepth(t *testing.T) {
	var body map[string]any
	json.Unmarshal([]byte(`{
		"scope": "s", "key": "k", "string_value": "hunter2",
		"new_cluster": {"docker_image": {"basic_auth": {"username": "u", "password": "pw"}}, "num_workers": 2},
		"content": "Ym9vaw==", "token_value": "dapi123", "overwrite": true, "n": 3, "list": ["a", {"secret": "s2"}]
	}`), &body)
	got := Params(body, "content")
	want := map[string]string{
		"scope":       "s",
		"key":         "k",
		"new_cluster": `{"docker_image":{"basic_auth":{"password":"[REDACTED]","username":"u"}},"num_workers":2}`,
		"overwrite":   "true",
		"n":           "3",
		"list":        `["a",{"secret":"[REDACTED]"}]`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Params (-want +got):\n%s", diff)
	}
	for _, v := range got {
		for _, secret := range []string{"hunter2", "pw", "dapi123", "s2"} {
			if strings.Contains(v, secret) {
				t.Errorf("secret %q reached the record: %s", secret, v)
			}
		}
	}
}

func TestNewRecordNamesTheOperation(t *testing.T) {
	r := New("/SUBSCRIPTIONS/X", "secrets", "putSecret", time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC))
	if r.OperationName != "Microsoft.Databricks/secrets/putSecret" || r.Properties.ServiceName != "secrets" ||
		r.Properties.ActionName != "putSecret" || r.Time != "2026-01-02T03:04:05.006Z" || r.Properties.LogID == "" {
		t.Errorf("record = %+v", r)
	}
	b, _ := json.Marshal(r)
	for _, field := range []string{`"identity":{"email":"","subjectName":null}`, `"sessionId":null`, `"operationVersion":"1.0.0"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("wire form lacks %s: %s", field, b)
		}
	}
}
