// Package router is the global endpoint of a deployment (tandem router):
// it serves the workspace URL on one address, checks both regions' health
// and role all the time and forwards every call to the region that leads
// the highest epoch, so SDKs, the CLI and browsers keep one URL through a
// failover. Calls a region refused because it no longer leads are sent
// again to the one that does (they were not acted on), so a planned
// failover is invisible to clients that retry 503s, as the Databricks SDKs
// do.
//
// It is not a load balancer: one region serves at a time.
package router

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/pki"
)

// Upstream is one region behind the router.
type Upstream struct {
	Name   string
	URL    string
	CAFile string
}

// Config configures a Router.
type Config struct {
	Regions []Upstream
	// Check is how often each region is checked (250 ms).
	Check time.Duration
	// MaxReplay is the largest request body kept to send a refused call
	// again (8 MiB); larger bodies stream through once.
	MaxReplay int64
	// Hold is how long a call refused by a leader that is being drained or
	// sealed for a planned failover waits for the new leader before the
	// refusal (a 503 clients retry) is passed on (15 s).
	Hold time.Duration
	Log  *slog.Logger
}

type upstream struct {
	Upstream
	target    *url.URL
	transport *http.Transport
	client    *http.Client

	healthy   bool
	role      dr.Role
	epoch     int64
	err       string
	checkedAt time.Time
}

// Router forwards calls to the region that leads.
type Router struct {
	cfg   Config
	log   *slog.Logger
	ups   []*upstream
	proxy *httputil.ReverseProxy

	mu       sync.Mutex
	active   *upstream
	epoch    int64
	switches int
	checkNow chan chan struct{}
	kick     chan struct{}
}

// New builds a Router; Run keeps its view of the regions current.
func New(cfg Config) (*Router, error) {
	if len(cfg.Regions) == 0 {
		return nil, errors.New("the router needs at least one region")
	}
	if cfg.Check == 0 {
		cfg.Check = 250 * time.Millisecond
	}
	if cfg.MaxReplay == 0 {
		cfg.MaxReplay = 8 << 20
	}
	if cfg.Hold == 0 {
		cfg.Hold = 15 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	r := &Router{cfg: cfg, log: cfg.Log, checkNow: make(chan chan struct{}), kick: make(chan struct{}, 1)}
	for _, u := range cfg.Regions {
		target, err := url.Parse(strings.TrimRight(u.URL, "/"))
		if err != nil || target.Scheme != "https" || target.Host == "" {
			return nil, fmt.Errorf("region %s: %q is not an https:// URL", u.Name, u.URL)
		}
		pool, err := pki.LoadPool(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("region %s: %w", u.Name, err)
		}
		tr := &http.Transport{
			TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 0, // long polls and streams
		}
		r.ups = append(r.ups, &upstream{Upstream: u, target: target, transport: tr,
			client: &http.Client{Transport: tr, Timeout: 2 * time.Second}})
	}
	r.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "https"
		},
		Transport:     r,
		FlushInterval: -1, // stream as it comes (logs, exports)
		ErrorHandler:  r.proxyError,
	}
	return r, nil
}

// Run checks the regions every Check until ctx ends.
func (r *Router) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Check)
	defer t.Stop()
	for {
		r.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		case done := <-r.checkNow:
			r.check(ctx)
			close(done)
		}
	}
}

// refresh asks Run for a check now and waits for it (bounded).
func (r *Router) refresh(ctx context.Context) {
	done := make(chan struct{})
	select {
	case r.checkNow <- done:
		select {
		case <-done:
		case <-ctx.Done():
		case <-time.After(3 * time.Second):
		}
	case <-ctx.Done():
	case <-time.After(3 * time.Second):
	}
}

func (r *Router) check(ctx context.Context) {
	var wg sync.WaitGroup
	type result struct {
		sum dr.RoleSummary
		err error
	}
	results := make([]result, len(r.ups))
	for i, u := range r.ups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].sum, results[i].err = u.fetchRole(ctx)
		}()
	}
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for i, u := range r.ups {
		u.checkedAt = now
		if err := results[i].err; err != nil {
			u.healthy, u.err = false, err.Error()
			continue
		}
		s := results[i].sum
		u.healthy, u.err, u.role, u.epoch = true, "", s.Role, s.Epoch
	}
	// The region that leads the highest epoch; ties go to the first name,
	// as the regions themselves decide.
	var best *upstream
	for _, u := range r.ups {
		if !u.healthy || !u.role.Leads() {
			continue
		}
		if best == nil || u.epoch > best.epoch || (u.epoch == best.epoch && u.Name < best.Name) {
			best = u
		}
	}
	if best == nil {
		// Nobody leads that answers: keep sending to the last leader (it may
		// be restarting); calls fail until a region leads again.
		return
	}
	if best != r.active {
		from := "none"
		if r.active != nil {
			from = r.active.Name
			r.switches++
		}
		r.log.Info("router: the workspace URL now reaches "+best.Name, "from", from, "epoch", best.epoch)
		r.active = best
	}
	r.epoch = max(r.epoch, best.epoch)
}

func (u *upstream) fetchRole(ctx context.Context) (dr.RoleSummary, error) {
	var s dr.RoleSummary
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.target.String()+dr.RolePath, nil)
	if err != nil {
		return s, err
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return s, err
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("%s answered %d", dr.RolePath, resp.StatusCode)
	}
	return s, json.Unmarshal(b, &s)
}

// Status is the router's view.
func (r *Router) Status() dr.RouterStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := dr.RouterStatus{Epoch: r.epoch, Switches: r.switches}
	if r.active != nil {
		s.ActiveRegion, s.ActiveURL = r.active.Name, r.active.URL
	}
	for _, u := range r.ups {
		ru := dr.RouterUpstream{Name: u.Name, URL: u.URL, Healthy: u.healthy, Role: u.role, Epoch: u.epoch, Error: u.err}
		if !u.checkedAt.IsZero() {
			ru.CheckedAt = u.checkedAt.UnixMilli()
		}
		s.Regions = append(s.Regions, ru)
	}
	return s
}

func (r *Router) current() *upstream {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active
}

// ServeHTTP serves the router's status and forwards everything else.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == dr.RouterStatusPath {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Status())
		return
	}
	if r.current() == nil {
		writeError(w, http.StatusServiceUnavailable, "TEMPORARILY_UNAVAILABLE",
			"No region of this workspace is serving right now: the router has not found one that leads. Retry in a few seconds.")
		return
	}
	r.proxy.ServeHTTP(w, req)
}

// errNoRegion ends a call when no region leads.
var errNoRegion = errors.New("no region leads")

// RoundTrip sends a call to the region that leads, and once more to the new
// leader if the first refused it because it no longer leads.
func (r *Router) RoundTrip(req *http.Request) (*http.Response, error) {
	up := r.current()
	if up == nil {
		return nil, errNoRegion
	}
	replay := req.Body == nil || req.Body == http.NoBody
	if !replay && req.ContentLength >= 0 && req.ContentLength <= r.cfg.MaxReplay && !isUpgrade(req) {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		replay = true
	}
	resp, err := up.send(req)
	refused := ""
	if err == nil {
		refused = resp.Header.Get(dr.HeaderRefused)
	}
	if refused == "" || !replay {
		return resp, err
	}
	// The region refused without acting: look again and, if another region
	// leads now, send the call there. A leader that is being drained or
	// sealed is seconds from handing over: hold the call until it has (or
	// resumes), so that a planned failover looks like one slow call.
	hold := time.Now().Add(r.cfg.Hold)
	for {
		r.refresh(req.Context())
		next := r.current()
		if next != nil && next != up {
			return r.resend(resp, req, next)
		}
		if refused == string(dr.Passive) || time.Now().After(hold) || req.Context().Err() != nil {
			return resp, nil
		}
		select {
		case <-req.Context().Done():
			return resp, nil
		case <-time.After(50 * time.Millisecond):
		}
		if role, ok := r.roleOf(up); ok && role == dr.Active {
			// The planned failover was called off: the same region serves.
			return r.resend(resp, req, up)
		}
	}
}

func (r *Router) resend(refusal *http.Response, req *http.Request, to *upstream) (*http.Response, error) {
	refusal.Body.Close()
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		req.Body = body
	}
	return to.send(req)
}

func (r *Router) roleOf(u *upstream) (dr.Role, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return u.role, u.healthy
}

func (u *upstream) send(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = u.target.Scheme, u.target.Host
	out.Host = u.target.Host
	return u.transport.RoundTrip(out)
}

func isUpgrade(req *http.Request) bool {
	return strings.EqualFold(req.Header.Get("Connection"), "upgrade") || req.Header.Get("Upgrade") != ""
}

func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	name := "?"
	if up := r.current(); up != nil {
		name = up.Name
	}
	r.log.Warn("router: forward failed", "region", name, "path", req.URL.Path, "err", err)
	// The region did not answer: whether it acted is unknown, so the call
	// is not sent again; the client's retry reaches whoever leads then.
	writeError(w, http.StatusServiceUnavailable, "TEMPORARILY_UNAVAILABLE",
		fmt.Sprintf("Region %s did not answer; a failover may be under way. Retry in a few seconds.", name))
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error_code": code, "message": msg})
}
