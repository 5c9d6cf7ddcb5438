// Package gateway is the control plane's end of the agent channel: the
// HTTPS endpoints that node agents dial out to (SE1). An agent is
// authenticated by the client certificate issued for its instance, never by
// a personal access token, and no port of the agent listens for the control
// plane: everything the control plane wants from an instance travels back on
// the agent's own long poll.
//
// The gateway is transport only. What an instance should do, and what its
// reports mean, is the Backend's business (the compute service).
package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
)

// ErrUnknownAgent is returned by Backend.Agent for a certificate that does
// not belong to a live instance.
var ErrUnknownAgent = errors.New("unknown agent")

// ErrAgentUnavailable is returned by Proxy when the instance's agent is not
// connected or does not answer in time.
var ErrAgentUnavailable = errors.New("the instance's agent is not connected")

// Backend decides what agents do and takes their reports.
type Backend interface {
	// Agent checks that the certificate (by serial number) was issued for
	// the live instance id; ErrUnknownAgent otherwise.
	Agent(ctx context.Context, instanceID, serial string) error
	// Work returns what the instance should do now, given what it has. An
	// empty response means nothing to do; the gateway then waits for Kick.
	Work(ctx context.Context, instanceID string, req wire.PollRequest) (wire.PollResponse, error)
	// Report takes an agent's report.
	Report(ctx context.Context, instanceID string, r wire.Report) (wire.ReportResponse, error)
	// TaskPrincipal returns the principal a task running on the instance
	// acts as, for its relayed API calls.
	TaskPrincipal(ctx context.Context, instanceID, taskID string) (principal.Principal, error)
}

// Gateway serves the agent endpoints.
type Gateway struct {
	Backend Backend
	// API serves relayed workspace API calls (the API mux).
	API http.Handler
	Log *slog.Logger
	// PollWait bounds a long poll; HeartbeatEvery is how often agents
	// report.
	PollWait       time.Duration
	HeartbeatEvery time.Duration

	mu      sync.Mutex
	kick    chan struct{} // closed and replaced by Kick
	queues  map[string][]wire.ProxyRequest
	pending map[string]chan proxyResult
	// online counts the polls in flight per instance.
	online map[string]int
	closed chan struct{}
}

type proxyResult struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (g *Gateway) init() {
	if g.kick == nil {
		g.closed = make(chan struct{})
		g.kick = make(chan struct{})
		g.queues = map[string][]wire.ProxyRequest{}
		g.pending = map[string]chan proxyResult{}
		g.online = map[string]int{}
	}
}

// Kick wakes every waiting poll to look for work again. The backend calls
// it after changing what instances should do.
func (g *Gateway) Kick() {
	g.mu.Lock()
	g.init()
	close(g.kick)
	g.kick = make(chan struct{})
	g.mu.Unlock()
}

// Close ends the polls waiting now and makes new ones return at once (the
// server is shutting down; agents come back to the next one).
func (g *Gateway) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	select {
	case <-g.closed:
	default:
		close(g.closed)
	}
}

func (g *Gateway) kicked() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	return g.kick
}

// Connected reports whether the instance has a poll waiting now.
func (g *Gateway) Connected(instanceID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.online[instanceID] > 0
}

func (g *Gateway) pollWait() time.Duration {
	if g.PollWait > 0 {
		return g.PollWait
	}
	return 25 * time.Second
}

func (g *Gateway) heartbeat() time.Duration {
	if g.HeartbeatEvery > 0 {
		return g.HeartbeatEvery
	}
	return 2 * time.Second
}

func (g *Gateway) log() *slog.Logger {
	if g.Log != nil {
		return g.Log
	}
	return slog.Default()
}

// ServeHTTP serves the gateway's paths.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := g.authenticate(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	switch {
	case r.URL.Path == wire.PathPoll && r.Method == http.MethodPost:
		g.poll(w, r, id)
	case r.URL.Path == wire.PathReport && r.Method == http.MethodPost:
		g.report(w, r, id)
	case strings.HasPrefix(r.URL.Path, wire.PathProxy) && r.Method == http.MethodPost:
		g.proxyResponse(w, r, id, strings.TrimPrefix(r.URL.Path, wire.PathProxy))
	case strings.HasPrefix(r.URL.Path, wire.PathAPI+"/api/"):
		g.relay(w, r, id)
	default:
		writeError(w, http.StatusNotFound, "no such gateway endpoint")
	}
}

// authenticate returns the instance id of the agent's verified client
// certificate. The TLS listener has verified the chain against the
// region's CA; the backend checks that the certificate is the one issued
// for a live instance (its serial number), so a deleted instance's
// certificate, or one issued for something else, is refused.
func (g *Gateway) authenticate(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return "", errors.New("the gateway needs a client certificate issued for an instance")
	}
	leaf := r.TLS.PeerCertificates[0]
	id := leaf.Subject.CommonName
	if err := g.Backend.Agent(r.Context(), id, leaf.SerialNumber.Text(16)); err != nil {
		if errors.Is(err, ErrUnknownAgent) {
			return "", fmt.Errorf("the certificate does not belong to a live instance")
		}
		g.log().Error("gateway: check agent", "instance_id", id, "err", err)
		return "", errors.New("the agent could not be checked")
	}
	return id, nil
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error_code": http.StatusText(status), "message": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// maxReport bounds a report (log chunks are sent in bounded batches).
const maxReport = 16 << 20

func (g *Gateway) poll(w http.ResponseWriter, r *http.Request, id string) {
	var req wire.PollRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad poll: "+err.Error())
		return
	}
	g.mu.Lock()
	g.init()
	g.online[id]++
	closed := g.closed
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		if g.online[id]--; g.online[id] <= 0 {
			delete(g.online, id)
		}
		g.mu.Unlock()
	}()
	wait := g.pollWait()
	if req.WaitMillis > 0 && time.Duration(req.WaitMillis)*time.Millisecond < wait {
		wait = time.Duration(req.WaitMillis) * time.Millisecond
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		// Take the kick channel before looking, so a change made while
		// looking is not missed.
		kick := g.kicked()
		resp, err := g.Backend.Work(r.Context(), id, req)
		if err != nil {
			if r.Context().Err() == nil {
				g.log().Error("gateway: work", "instance_id", id, "err", err)
			}
			writeError(w, http.StatusServiceUnavailable, "the control plane could not compute the instance's work")
			return
		}
		g.mu.Lock()
		resp.Proxy = append(resp.Proxy, g.queues[id]...)
		delete(g.queues, id)
		g.mu.Unlock()
		if resp.Assignment != nil || resp.MasterURL != "" || len(resp.StartTasks) > 0 || len(resp.CancelTasks) > 0 || len(resp.Proxy) > 0 || resp.Exit {
			resp.HeartbeatMillis = g.heartbeat().Milliseconds()
			writeJSON(w, resp)
			return
		}
		select {
		case <-kick:
		case <-deadline.C:
			writeJSON(w, wire.PollResponse{HeartbeatMillis: g.heartbeat().Milliseconds()})
			return
		case <-closed:
			writeJSON(w, wire.PollResponse{HeartbeatMillis: g.heartbeat().Milliseconds()})
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (g *Gateway) report(w http.ResponseWriter, r *http.Request, id string) {
	var rep wire.Report
	if err := json.NewDecoder(io.LimitReader(r.Body, maxReport)).Decode(&rep); err != nil {
		writeError(w, http.StatusBadRequest, "bad report: "+err.Error())
		return
	}
	resp, err := g.Backend.Report(r.Context(), id, rep)
	if err != nil {
		g.log().Error("gateway: report", "instance_id", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "the report was not kept; send it again")
		return
	}
	writeJSON(w, resp)
}

// maxProxyBody bounds a proxied response.
const maxProxyBody = 64 << 20

// Proxy makes an HTTP request to a UI on the instance, through its agent,
// and returns the response.
func (g *Gateway) Proxy(ctx context.Context, instanceID string, req wire.ProxyRequest) (int, http.Header, []byte, error) {
	var b [12]byte
	rand.Read(b[:])
	req.ID = hex.EncodeToString(b[:])
	ch := make(chan proxyResult, 1)
	g.mu.Lock()
	g.init()
	g.queues[instanceID] = append(g.queues[instanceID], req)
	g.pending[req.ID] = ch
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.pending, req.ID)
		q := g.queues[instanceID]
		for i := range q {
			if q[i].ID == req.ID {
				g.queues[instanceID] = append(q[:i:i], q[i+1:]...)
				break
			}
		}
		g.mu.Unlock()
	}()
	g.Kick()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case res := <-ch:
		return res.status, res.header, res.body, res.err
	case <-timeout.C:
		return 0, nil, nil, ErrAgentUnavailable
	case <-ctx.Done():
		return 0, nil, nil, ctx.Err()
	}
}

func (g *Gateway) proxyResponse(w http.ResponseWriter, r *http.Request, id, reqID string) {
	g.mu.Lock()
	ch, ok := g.pending[reqID]
	g.mu.Unlock()
	if !ok {
		io.Copy(io.Discard, io.LimitReader(r.Body, maxProxyBody))
		w.WriteHeader(http.StatusGone)
		return
	}
	var res proxyResult
	if msg := r.Header.Get(wire.HeaderProxyError); msg != "" {
		res.err = fmt.Errorf("%w: %s", ErrAgentUnavailable, msg)
	} else {
		res.status, _ = strconv.Atoi(r.Header.Get(wire.HeaderProxyStatus))
		res.header = http.Header{}
		if h := r.Header.Get(wire.HeaderProxyHeader); h != "" {
			json.Unmarshal([]byte(h), &res.header)
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxProxyBody+1))
		switch {
		case err != nil:
			res.err = err
		case len(body) > maxProxyBody:
			res.err = fmt.Errorf("the response is larger than %d bytes", maxProxyBody)
		default:
			res.body = body
		}
	}
	select {
	case ch <- res:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

// relay serves a task's call to the workspace API as the task's
// principal: the agent names the task, the backend checks that the task
// runs on this instance and says who it runs as, and the API mux serves
// the call as if that principal had sent it (with its own audit record).
// The task never holds a token.
func (g *Gateway) relay(w http.ResponseWriter, r *http.Request, id string) {
	taskID := r.Header.Get(wire.HeaderTask)
	p, err := g.Backend.TaskPrincipal(r.Context(), id, taskID)
	if err != nil {
		writeError(w, http.StatusForbidden, "no running task "+strconv.Quote(taskID)+" on this instance")
		return
	}
	if g.API == nil {
		writeError(w, http.StatusNotFound, "no API to relay to")
		return
	}
	in := r.Clone(api.Authenticated(r.Context(), p))
	in.URL.Path = strings.TrimPrefix(r.URL.Path, wire.PathAPI)
	in.URL.RawPath = ""
	in.RequestURI = ""
	in.Header.Del("Authorization")
	in.Header.Del(wire.HeaderTask)
	g.API.ServeHTTP(w, in)
}

// EncodeProxyHeader encodes a proxied response's header for
// wire.HeaderProxyHeader.
func EncodeProxyHeader(h http.Header) string {
	b, _ := json.Marshal(h)
	return string(bytes.TrimSpace(b))
}
