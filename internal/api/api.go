// Package api is the shared HTTP layer of Tandem's Databricks-compatible REST
// API: routes, request decoding, the one error model, authentication and the
// audit hook. Domain packages own their handlers and declare them as Routes;
// this package mounts them behind the same middleware.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/principal"
)

// Handler serves one API call. It returns the value to encode as the JSON
// response (nil for {}), a *Raw for a non-JSON response, or an error.
type Handler func(ctx context.Context, req *Request) (any, error)

// Route is one endpoint of the API.
type Route struct {
	// Pattern is a net/http pattern with a method: "POST /api/2.0/workspace/mkdirs".
	Pattern string
	// Category and Action name the call in its audit record
	// (Microsoft.Databricks/<Category>/<Action>).
	Category string
	Action   string
	Handler  Handler
	// Public routes need no token (health checks).
	Public bool
	// MaxBody bounds the request body; 0 means DefaultMaxBody.
	MaxBody int64
	// Stream leaves the body unread for the handler (large uploads); its
	// requestParams then come from the query and form fields only.
	Stream bool
	// SCIM answers errors with the SCIM error fields too.
	SCIM bool
	// Drop names top-level request fields kept out of the audit record
	// (bulky contents); secrets are always dropped.
	Drop []string
	// NoAudit skips the audit record (health checks and metrics scrapes only).
	NoAudit bool
	// NoResult keeps the response body out of the audit record.
	NoResult bool
	// DR marks disaster-recovery operations: a passive region serves them
	// whatever their method, where it refuses every other write.
	DR bool
}

// DefaultMaxBody bounds request bodies of routes that set no MaxBody. It
// admits a DBFS add-block (1 MiB of data, base64 in JSON) with room.
const DefaultMaxBody = 4 << 20

// Raw is a response that is not JSON (file downloads, proxied pages).
type Raw struct {
	ContentType string
	Body        []byte
	Header      http.Header
	// Status is the HTTP status; 0 means 200.
	Status int
}

// Reply is a JSON response with a status other than 200 (201 Created, 204
// No Content with a nil Body).
type Reply struct {
	Status int
	Body   any
}

// Authenticator resolves the bearer token of a request to its principal.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (principal.Principal, error)
}

// Auditor stores an audit record durably.
type Auditor interface {
	Append(ctx context.Context, rec *audit.Record) error
}

// Config configures a Mux.
type Config struct {
	Auth   Authenticator
	Audit  Auditor
	Logger *slog.Logger
	// ResourceID is the workspace's resource id in audit records.
	ResourceID string
	// OrgID is the workspace id returned in X-Databricks-Org-Id.
	OrgID int64
	// Guard, if set, runs before every authenticated handler; an error stops
	// the call (a passive region refusing writes, for example).
	Guard func(ctx context.Context, r *http.Request, route *Route) error
}

// Mux routes API calls to handlers.
type Mux struct {
	cfg    Config
	mux    *http.ServeMux
	log    *slog.Logger
	routes []Route
}

// NewMux returns an empty Mux.
func NewMux(cfg Config) *Mux {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Mux{cfg: cfg, mux: http.NewServeMux(), log: log}
}

// Routes returns every mounted route (the authorization test walks them).
func (m *Mux) Routes() []Route { return append([]Route(nil), m.routes...) }

// Handle mounts routes.
func (m *Mux) Handle(routes ...Route) {
	m.routes = append(m.routes, routes...)
	for i := range routes {
		rt := routes[i]
		m.mux.Handle(rt.Pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(w, r, &rt)
		}))
	}
}

// ServeHTTP serves API calls; an unknown endpoint is ENDPOINT_NOT_FOUND.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := m.mux.Handler(r); pattern == "" {
		rt := &Route{Category: unknownCategory(r.URL.Path), Action: "endpointNotFound", Handler: func(context.Context, *Request) (any, error) {
			return nil, Errorf(EndpointNotFound, "No API found for '%s %s'", r.Method, r.URL.Path)
		}}
		m.serve(w, r, rt)
		return
	}
	m.mux.ServeHTTP(w, r)
}

// unknownCategory guesses the audit category of an unknown path from its
// service segment (/api/2.0/<service>/...).
func unknownCategory(path string) string {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) >= 3 && parts[0] == "api" {
		s := parts[2]
		if len(s) > 0 && len(s) <= 40 && strings.IndexFunc(s, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_')
		}) < 0 {
			return s
		}
	}
	return "accounts"
}

// Request is an API call being served.
type Request struct {
	HTTP      *http.Request
	ID        string
	Principal principal.Principal
	body      []byte
	fields    map[string]any // top-level body fields, for the audit record
	route     *Route
	params    map[string]string
	category  string
	action    string
}

// SetAction names the call in its audit record when the route alone cannot
// (one route serving several object types).
func (r *Request) SetAction(category, action string) {
	r.category, r.action = category, action
}

// Body returns the buffered request body (nil for streaming routes).
func (r *Request) Body() []byte { return r.body }

// SetAuditParam adds or replaces a requestParams entry of the audit record
// (for values the handler derives, such as a resolved path).
func (r *Request) SetAuditParam(key, value string) {
	if r.params == nil {
		r.params = map[string]string{}
	}
	r.params[key] = value
}

type ctxRequestKey struct{}

// RequestFrom returns the API request served by ctx, if any.
func RequestFrom(ctx context.Context) (*Request, bool) {
	r, ok := ctx.Value(ctxRequestKey{}).(*Request)
	return r, ok
}

// RequestID returns the id of the request served by ctx, or "".
func RequestID(ctx context.Context) string {
	if r, ok := RequestFrom(ctx); ok {
		return r.ID
	}
	return ""
}

func (m *Mux) serve(w http.ResponseWriter, hr *http.Request, rt *Route) {
	start := time.Now()
	req := &Request{HTTP: hr, ID: uuid.NewString(), route: rt}
	w.Header().Set("X-Request-Id", req.ID)
	ctx := context.WithValue(hr.Context(), ctxRequestKey{}, req)

	var (
		result any
		err    error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				m.log.Error("handler panicked", "request_id", req.ID, "path", hr.URL.Path, "panic", fmt.Sprint(p))
				err = Errorf(InternalError, "Internal error; the server log has the details under this request's id.")
			}
		}()
		if err = m.readBody(req, rt); err != nil {
			return
		}
		if !rt.Public {
			p, aerr := m.authenticate(ctx, hr)
			if aerr != nil {
				err = aerr
				// A refused token is an accounts/tokenLogin event, whatever
				// the endpoint, as in Databricks' audit log.
				rt = &Route{Category: "accounts", Action: "tokenLogin", Pattern: rt.Pattern, Drop: rt.Drop}
				return
			}
			req.Principal = p
			ctx = principal.With(ctx, p)
			if m.cfg.Guard != nil {
				if err = m.cfg.Guard(ctx, hr, rt); err != nil {
					return
				}
			}
		}
		result, err = rt.Handler(ctx, req)
	}()

	status, body, ctype, header := m.encode(req, rt, result, err)
	if !rt.NoAudit && m.cfg.Audit != nil {
		rec := m.record(req, rt, start, status, body, err)
		if aerr := m.cfg.Audit.Append(ctx, rec); aerr != nil {
			// Fail closed: a call that cannot be audited is not answered as
			// a success.
			m.log.Error("audit record not written", "request_id", req.ID, "err", aerr)
			e := Errorf(TemporarilyUnavailable, "The audit log is unavailable; the call was not acknowledged. Retry later.")
			status, body, ctype, header = m.encode(req, rt, nil, e)
		}
	}
	for k, vs := range header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", ctype)
	if hr.URL.Path == "/api/2.0/preview/scim/v2/Me" && m.cfg.OrgID != 0 {
		w.Header().Set("X-Databricks-Org-Id", fmt.Sprint(m.cfg.OrgID))
	}
	w.WriteHeader(status)
	if hr.Method != http.MethodHead {
		w.Write(body)
	}
	if status >= 500 {
		m.log.Error("api call failed", "request_id", req.ID, "method", hr.Method, "path", hr.URL.Path, "status", status, "err", err)
	}
}

type ctxAuthenticatedKey struct{}

// Authenticated returns ctx marking p as the caller already authenticated
// by other means: the agent gateway relays a task's call as the task's
// principal after checking the agent's certificate and the task. Only
// in-process code can set it; nothing on the wire does.
func Authenticated(ctx context.Context, p principal.Principal) context.Context {
	return context.WithValue(ctx, ctxAuthenticatedKey{}, p)
}

func (m *Mux) authenticate(ctx context.Context, r *http.Request) (principal.Principal, error) {
	if p, ok := ctx.Value(ctxAuthenticatedKey{}).(principal.Principal); ok && !p.IsZero() {
		return p, nil
	}
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		return principal.Principal{}, Errorf(Unauthenticated, "Authentication is required: send a personal access token as 'Authorization: Bearer <token>'.")
	}
	if m.cfg.Auth == nil {
		return principal.Principal{}, Errorf(Unauthenticated, "Authentication is not configured.")
	}
	return m.cfg.Auth.Authenticate(ctx, strings.TrimSpace(token))
}

// readBody buffers the body (up to the route's limit) and parses its
// top-level fields for the audit record.
func (m *Mux) readBody(req *Request, rt *Route) error {
	hr := req.HTTP
	if rt.Stream || hr.Body == nil {
		return nil
	}
	limit := rt.MaxBody
	if limit == 0 {
		limit = DefaultMaxBody
	}
	b, err := io.ReadAll(io.LimitReader(hr.Body, limit+1))
	if err != nil {
		return Errorf(MalformedRequest, "Could not read the request body: %v", err)
	}
	if int64(len(b)) > limit {
		return Errorf(RequestTooLarge, "The request body is larger than the %d-byte limit of this endpoint.", limit)
	}
	req.body = b
	if isJSON(hr) && len(bytes.TrimSpace(b)) > 0 {
		var fields map[string]any
		if json.Unmarshal(b, &fields) == nil {
			req.fields = fields
		}
	}
	return nil
}

func isJSON(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return true
	}
	mt, _, _ := mime.ParseMediaType(ct)
	// The legacy databricks-cli sends its JSON bodies as text/json.
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/json" || mt == "text/plain"
}

// errorBody is the Databricks error body. SCIM routes add SCIM's schema and
// status, but not its "detail": both Databricks SDKs let a detail override
// error_code (making every SCIM error SCIM_<status>), and clients branch on
// the code.
type errorBody struct {
	ErrorCode string   `json:"error_code"`
	Message   string   `json:"message"`
	Schemas   []string `json:"schemas,omitempty"`
	Status    string   `json:"status,omitempty"`
}

func (m *Mux) encode(req *Request, rt *Route, result any, err error) (int, []byte, string, http.Header) {
	if err != nil {
		e := ErrorOf(err)
		if e.Code == InternalError {
			m.log.Error("internal error", "request_id", req.ID, "path", req.HTTP.URL.Path, "err", err)
		}
		body := errorBody{ErrorCode: e.Code, Message: e.Message}
		if rt.SCIM {
			body.Schemas = []string{"urn:ietf:params:scim:api:messages:2.0:Error"}
			body.Status = fmt.Sprint(e.Status)
		}
		b, _ := json.Marshal(body)
		return e.Status, b, "application/json", e.header
	}
	switch v := result.(type) {
	case Reply:
		if v.Body == nil {
			if v.Status == http.StatusNoContent {
				return v.Status, nil, "application/json", nil
			}
			return v.Status, []byte("{}"), "application/json", nil
		}
		b, merr := json.Marshal(v.Body)
		if merr != nil {
			return m.encode(req, rt, nil, merr)
		}
		return v.Status, b, "application/json", nil
	case *Raw:
		ct := v.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		status := v.Status
		if status == 0 {
			status = http.StatusOK
		}
		return status, v.Body, ct, v.Header
	case nil:
		return http.StatusOK, []byte("{}"), "application/json", nil
	default:
		b, merr := json.Marshal(v)
		if merr != nil {
			m.log.Error("encode response", "request_id", req.ID, "err", merr)
			return m.encode(req, rt, nil, merr)
		}
		return http.StatusOK, b, "application/json", nil
	}
}

// maxResultBytes bounds the response kept in an audit record.
const maxResultBytes = 4 << 10

func (m *Mux) record(req *Request, rt *Route, start time.Time, status int, body []byte, err error) *audit.Record {
	category, action := rt.Category, rt.Action
	if req.category != "" {
		category, action = req.category, req.action
	}
	rec := audit.New(m.cfg.ResourceID, category, action, start)
	p := req.Principal
	rec.Identity.Email = p.Name
	if p.IsZero() {
		rec.Identity.Email = "unknown"
	}
	rec.Properties.SourceIPAddress = sourceIP(req.HTTP)
	rec.Properties.UserAgent = req.HTTP.UserAgent()
	rec.Properties.RequestID = req.ID
	fields := map[string]any{}
	for k, vs := range req.HTTP.URL.Query() {
		if len(vs) == 1 {
			fields[k] = vs[0]
		} else {
			fields[k] = strings.Join(vs, ",")
		}
	}
	for k, v := range req.fields {
		fields[k] = v
	}
	params := audit.Params(fields, rt.Drop...)
	for k, v := range req.params {
		if !audit.IsSensitive(k) {
			params[k] = v
		}
	}
	rec.Properties.RequestParams = audit.Truncate(params, audit.MaxParamsBytes)
	rec.Properties.Response.StatusCode = status
	if err != nil {
		rec.Properties.Response.ErrorMessage = ErrorOf(err).Message
	} else if req.HTTP.Method != http.MethodGet && !rt.NoResult && len(body) <= maxResultBytes && json.Valid(body) {
		// Results of changes (new ids) are kept, scrubbed of secrets such
		// as a new token's value; reads are not copied into the log.
		var v any
		if json.Unmarshal(body, &v) == nil {
			if b, merr := json.Marshal(audit.Scrub(v)); merr == nil && string(b) != "{}" {
				rec.Properties.Response.Result = string(b)
			}
		}
	}
	return rec
}

// NewRecord returns the audit record of an action a domain service performs
// for the caller of ctx outside a route of its own, such as a secret read
// for the cluster runtime. The identity is the principal of ctx; the request
// id, source address and user agent are those of the API request ctx serves,
// if any; the outcome is err's, as the caller would see it. Sensitive
// params are dropped, as for any record.
func NewRecord(ctx context.Context, resourceID, category, action string, at time.Time, params map[string]string, err error) *audit.Record {
	rec := audit.New(resourceID, category, action, at)
	p, _ := principal.From(ctx)
	rec.Identity.Email = p.Name
	if p.IsZero() {
		rec.Identity.Email = "unknown"
	}
	if req, ok := RequestFrom(ctx); ok {
		rec.Properties.RequestID = req.ID
		rec.Properties.SourceIPAddress = sourceIP(req.HTTP)
		rec.Properties.UserAgent = req.HTTP.UserAgent()
	}
	kept := make(map[string]string, len(params))
	for k, v := range params {
		if !audit.IsSensitive(k) {
			kept[k] = v
		}
	}
	rec.Properties.RequestParams = audit.Truncate(kept, audit.MaxParamsBytes)
	rec.Properties.Response.StatusCode = http.StatusOK
	if err != nil {
		e := ErrorOf(err)
		rec.Properties.Response.StatusCode, rec.Properties.Response.ErrorMessage = e.Status, e.Message
	}
	return rec
}

func sourceIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
