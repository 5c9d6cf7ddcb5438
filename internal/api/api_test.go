package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

type fakeAuth struct{}

func (fakeAuth) Authenticate(ctx context.Context, token string) (principal.Principal, error) {
	if token == "good" {
		return principal.Principal{ID: "1", Kind: principal.User, Name: "ann@example.com"}, nil
	}
	return principal.Principal{}, Errorf(Unauthenticated, "Invalid access token.")
}

type memAudit struct {
	mu   sync.Mutex
	recs []*audit.Record
	fail error
}

func (m *memAudit) Append(ctx context.Context, r *audit.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.recs = append(m.recs, r)
	return nil
}

func (m *memAudit) last() *audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recs[len(m.recs)-1]
}

type putReq struct {
	Scope string `json:"scope"`
	Key   string `json:"key"`
	N     int64  `json:"n"`
}

func newTestMux(a *memAudit) *Mux {
	m := NewMux(Config{Auth: fakeAuth{}, Audit: a, ResourceID: "/R"})
	m.Handle(
		Route{Pattern: "POST /api/2.0/secrets/put", Category: "secrets", Action: "putSecret", Handler: func(ctx context.Context, r *Request) (any, error) {
			var p putReq
			if err := r.Decode(&p); err != nil {
				return nil, err
			}
			if p.Scope == "" {
				return nil, MissingField("scope")
			}
			return map[string]any{"ok": true, "token_value": "dapi-secret"}, nil
		}},
		Route{Pattern: "GET /api/2.0/things/get", Category: "things", Action: "get", Handler: func(ctx context.Context, r *Request) (any, error) {
			var q struct {
				ID     int64    `json:"id"`
				Flag   bool     `json:"flag"`
				States []string `json:"states"`
				Filter struct {
					Pinned bool `json:"is_pinned"`
				} `json:"filter_by"`
			}
			if err := r.Decode(&q); err != nil {
				return nil, err
			}
			return q, nil
		}},
		Route{Pattern: "GET /api/2.0/things/missing", Category: "things", Action: "missing", Handler: func(ctx context.Context, r *Request) (any, error) {
			return nil, store.ErrNotFound
		}},
		Route{Pattern: "GET /api/2.0/things/boom", Category: "things", Action: "boom", Handler: func(ctx context.Context, r *Request) (any, error) {
			return nil, errors.New("disk controller on fire at /secret/path")
		}},
		Route{Pattern: "GET /api/2.0/things/panic", Category: "things", Action: "panic", Handler: func(ctx context.Context, r *Request) (any, error) {
			panic("bug")
		}},
	)
	return m
}

func call(t *testing.T, m *Mux, method, target, body string) (*http.Response, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer good")
	w := httptest.NewRecorder()
	m.ServeHTTP(w, req)
	resp := w.Result()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp, out
}

func TestErrorsUseTheDatabricksBodyAndStatus(t *testing.T) {
	m := newTestMux(&memAudit{})
	cases := []struct {
		name, method, target, body string
		status                     int
		code                       string
		msgHas                     string
	}{
		{"unknown endpoint", "GET", "/api/2.0/nope/x", "", 404, EndpointNotFound, "No API found for 'GET /api/2.0/nope/x'"},
		{"wrong method", "GET", "/api/2.0/secrets/put", "", 404, EndpointNotFound, "No API found"},
		{"malformed JSON", "POST", "/api/2.0/secrets/put", `{"scope": `, 400, MalformedRequest, "Invalid JSON"},
		{"not an object", "POST", "/api/2.0/secrets/put", `[1,2]`, 400, MalformedRequest, "Invalid JSON"},
		{"wrong type", "POST", "/api/2.0/secrets/put", `{"scope": 5}`, 400, MalformedRequest, "field 'scope' must be a string"},
		{"trailing data", "POST", "/api/2.0/secrets/put", `{"scope":"a"} {}`, 400, MalformedRequest, "unexpected data"},
		{"missing field", "POST", "/api/2.0/secrets/put", `{}`, 400, InvalidParameterValue, "Missing required field: scope"},
		{"oversized body", "POST", "/api/2.0/secrets/put", `{"scope":"` + strings.Repeat("x", DefaultMaxBody) + `"}`, 413, RequestTooLarge, "larger than"},
		{"bad query integer", "GET", "/api/2.0/things/get?id=abc", "", 400, InvalidParameterValue, "parameter 'id'"},
		{"sentinel not found", "GET", "/api/2.0/things/missing", "", 404, ResourceDoesNotExist, "does not exist"},
		{"internal error hides details", "GET", "/api/2.0/things/boom", "", 500, InternalError, "request's id"},
		{"panic is an internal error", "GET", "/api/2.0/things/panic", "", 500, InternalError, "request's id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := call(t, m, c.method, c.target, c.body)
			if resp.StatusCode != c.status || body["error_code"] != c.code {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, body, c.status, c.code)
			}
			msg, _ := body["message"].(string)
			if !strings.Contains(msg, c.msgHas) {
				t.Errorf("message %q lacks %q", msg, c.msgHas)
			}
			if strings.Contains(msg, "/secret/path") {
				t.Errorf("internal detail leaked: %q", msg)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no request id")
			}
		})
	}
}

func TestQueryDecodingFollowsTheSDKEncoding(t *testing.T) {
	m := newTestMux(&memAudit{})
	resp, body := call(t, m, "GET", "/api/2.0/things/get?id=42&flag=true&states=RUNNING&states=PENDING&filter_by.is_pinned=true", "")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	if body["id"] != float64(42) || body["flag"] != true || len(body["states"].([]any)) != 2 ||
		body["filter_by"].(map[string]any)["is_pinned"] != true {
		t.Errorf("decoded %v", body)
	}
	// A bare trailing "?" (the SDK sends it) is fine.
	if resp, _ := call(t, m, "GET", "/api/2.0/things/get?", ""); resp.StatusCode != 200 {
		t.Errorf("bare ? = %d", resp.StatusCode)
	}
}

func TestEveryCallIsAuditedWithoutSecrets(t *testing.T) {
	a := &memAudit{}
	m := newTestMux(a)
	resp, _ := call(t, m, "POST", "/api/2.0/secrets/put", `{"scope":"s","key":"k","string_value":"hunter2"}`)
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	r := a.last()
	if r.OperationName != "Microsoft.Databricks/secrets/putSecret" || r.Identity.Email != "ann@example.com" ||
		r.Properties.RequestID != resp.Header.Get("X-Request-Id") || r.Properties.Response.StatusCode != 200 {
		t.Errorf("record = %+v", r)
	}
	b, _ := json.Marshal(r)
	if strings.Contains(string(b), "hunter2") || strings.Contains(string(b), "dapi-secret") {
		t.Errorf("secret in the record: %s", b)
	}
	if r.Properties.RequestParams["scope"] != "s" || r.Properties.RequestParams["key"] != "k" {
		t.Errorf("params = %v", r.Properties.RequestParams)
	}
	// Failed calls and refused tokens are recorded too.
	call(t, m, "GET", "/api/2.0/things/missing", "")
	if got := a.last(); got.Properties.Response.StatusCode != 404 || got.Properties.Response.ErrorMessage == "" {
		t.Errorf("error record = %+v", got.Properties.Response)
	}
	req := httptest.NewRequest("GET", "/api/2.0/things/get", nil)
	req.Header.Set("Authorization", "Bearer bad")
	m.ServeHTTP(httptest.NewRecorder(), req)
	if got := a.last(); got.OperationName != "Microsoft.Databricks/accounts/tokenLogin" || got.Properties.Response.StatusCode != 401 {
		t.Errorf("refused token record = %s %d", got.OperationName, got.Properties.Response.StatusCode)
	}
}

func TestACallThatCannotBeAuditedIsNotAcknowledged(t *testing.T) {
	a := &memAudit{fail: errors.New("disk full")}
	m := newTestMux(a)
	resp, body := call(t, m, "POST", "/api/2.0/secrets/put", `{"scope":"s","key":"k"}`)
	if resp.StatusCode != http.StatusServiceUnavailable || body["error_code"] != TemporarilyUnavailable {
		t.Errorf("got %d %v", resp.StatusCode, body)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{}`, `{"scope":"a","n":1}`, `{"n":"x"}`, `[`, `null`, `{"scope":null}`, "\x00"} {
		f.Add(s, "id=1&states=A")
	}
	f.Fuzz(func(t *testing.T, body, query string) {
		req := &http.Request{Method: "POST", URL: &url.URL{Path: "/x", RawQuery: query}, Header: http.Header{}}
		r := &Request{HTTP: req, body: []byte(body)}
		var v putReq
		err := r.Decode(&v)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != MalformedRequest && e.Code != InvalidParameterValue) {
				t.Fatalf("Decode(%q) returned a non-API error %v", body, err)
			}
		}
	})
}

func TestLegacyCLIBodiesSentAsTextJSONReachTheAuditRecord(t *testing.T) {
	a := &memAudit{}
	m := newTestMux(a)
	req := httptest.NewRequest("POST", "/api/2.0/secrets/put", strings.NewReader(`{"scope":"s","key":"k","string_value":"hunter2"}`))
	req.Header.Set("Authorization", "Bearer good")
	req.Header.Set("Content-Type", "text/json") // as databricks-cli 0.18 sends it
	w := httptest.NewRecorder()
	m.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	r := a.last()
	if r.Properties.RequestParams["scope"] != "s" || r.Properties.RequestParams["key"] != "k" {
		t.Errorf("params = %v", r.Properties.RequestParams)
	}
	if _, ok := r.Properties.RequestParams["string_value"]; ok {
		t.Errorf("the secret value is in the record: %v", r.Properties.RequestParams)
	}
}

func TestNewRecordNamesTheCallerAndTheEnclosingRequest(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ann := principal.Principal{ID: "1", Kind: principal.User, Name: "ann@example.com"}
	hr := httptest.NewRequest("GET", "/api/2.0/x", nil)
	hr.RemoteAddr = "10.1.2.3:5555"
	hr.Header.Set("User-Agent", "agent/1")
	inReq := context.WithValue(principal.With(context.Background(), ann), ctxRequestKey{}, &Request{HTTP: hr, ID: "req-1"})
	cases := []struct {
		name                 string
		ctx                  context.Context
		err                  error
		email, reqID, ip, ua string
		status               int
		errorMessage         bool
	}{
		{"outside a request", principal.With(context.Background(), ann), nil, "ann@example.com", "", "", "", 200, false},
		{"inside a request", inReq, nil, "ann@example.com", "req-1", "10.1.2.3", "agent/1", 200, false},
		{"failed", inReq, NotFound("Scope s does not exist!"), "ann@example.com", "req-1", "10.1.2.3", "agent/1", 404, true},
		{"no principal", context.Background(), nil, "unknown", "", "", "", 200, false},
	}
	for _, c := range cases {
		r := NewRecord(c.ctx, "/R", "secrets", "getSecret", at, map[string]string{"scope": "s", "key": "k", "string_value": "hunter2"}, c.err)
		got := []any{r.OperationName, r.Time, r.Identity.Email, r.Properties.RequestID, r.Properties.SourceIPAddress,
			r.Properties.UserAgent, r.Properties.Response.StatusCode, r.Properties.Response.ErrorMessage != ""}
		want := []any{"Microsoft.Databricks/secrets/getSecret", "2026-01-02T03:04:05.000Z", c.email, c.reqID, c.ip, c.ua, c.status, c.errorMessage}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: field %d = %v, want %v", c.name, i, got[i], want[i])
			}
		}
		if r.Properties.RequestParams["scope"] != "s" || r.Properties.RequestParams["key"] != "k" || r.Properties.RequestParams["string_value"] != "" {
			t.Errorf("%s: params = %v", c.name, r.Properties.RequestParams)
		}
	}
}
