// Package servertest starts a real Tandem region in-process, on loopback
// with TLS, for integration tests, and gives them authenticated clients: raw
// HTTP and the official Databricks Go SDK.
package servertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/service/iam"

	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/identity"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/server"
)

// Server is a running region under test.
type Server struct {
	*server.Server
	URL        string
	CAFile     string
	DataDir    string
	AdminToken string
	t          testing.TB
}

// Option changes the configuration before the server starts.
type Option func(*config.Config)

// WithStore uses a metadata store other than SQLite in the data directory.
func WithStore(dsn string) Option { return func(c *config.Config) { c.Store = dsn } }

// WithDataDir uses an existing data directory (to restart a region).
func WithDataDir(dir string) Option { return func(c *config.Config) { c.DataDir = dir } }

// setups run between building the server and starting it, keyed by the
// config they were registered on (see WithSetup).
var (
	setupsMu sync.Mutex
	setups   = map[*config.Config][]func(*server.Server){}
)

// WithSetup changes the built server before it starts (to plug test doubles
// into its services where a real component is not the subject).
func WithSetup(fn func(*server.Server)) Option {
	return func(c *config.Config) {
		setupsMu.Lock()
		setups[c] = append(setups[c], fn)
		setupsMu.Unlock()
	}
}

// logOutputs are the writers that receive the server's log at debug level,
// keyed by the config they were registered on (see WithLogOutput).
var (
	logOutputsMu sync.Mutex
	logOutputs   = map[*config.Config]io.Writer{}
)

// WithLogOutput sends the server's log, at debug level, to w instead of
// stderr (for tests that check what the server logs).
func WithLogOutput(w io.Writer) Option {
	return func(c *config.Config) {
		logOutputsMu.Lock()
		logOutputs[c] = w
		logOutputsMu.Unlock()
	}
}

// Start starts a region and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Region = "test"
	for _, o := range opts {
		o(&cfg)
	}
	// A restarted region keeps its admin token: it is made on first start only.
	tokenFile := filepath.Join(cfg.DataDir, "servertest-admin-token")
	token := identity.NewTokenValue()
	if b, err := os.ReadFile(tokenFile); err == nil {
		token = string(b)
	} else if err := os.MkdirAll(cfg.DataDir, 0o700); err == nil {
		os.WriteFile(tokenFile, []byte(token), 0o600)
	}
	t.Setenv("TANDEM_BOOTSTRAP_TOKEN", token)
	level := slog.LevelWarn
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	var out io.Writer = os.Stderr
	logOutputsMu.Lock()
	if w, ok := logOutputs[&cfg]; ok {
		out, level = w, slog.LevelDebug
		delete(logOutputs, &cfg)
	}
	logOutputsMu.Unlock()
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	setupsMu.Lock()
	fns := setups[&cfg]
	delete(setups, &cfg)
	setupsMu.Unlock()
	for _, fn := range fns {
		fn(srv)
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return &Server{Server: srv, URL: srv.URL(), CAFile: srv.CAFile(), DataDir: cfg.DataDir, AdminToken: token, t: t}
}

// Transport trusts the region's CA.
func (s *Server) Transport() *http.Transport {
	pool, err := pki.LoadPool(s.CAFile)
	if err != nil {
		s.t.Fatal(err)
	}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
}

// SDK returns a Databricks Go SDK workspace client authenticated with token.
func (s *Server) SDK(token string) *databricks.WorkspaceClient {
	s.t.Helper()
	w, err := databricks.NewWorkspaceClient(&databricks.Config{
		Host: s.URL, Token: token, HTTPTransport: s.Transport(),
		// Fail fast in tests instead of the SDK's five minutes of retries.
		RetryTimeoutSeconds: 20,
		RateLimitPerSecond:  1000,
	})
	if err != nil {
		s.t.Fatalf("SDK client: %v", err)
	}
	return w
}

// User is a test principal with a token.
type User struct {
	ID       string
	UserName string
	Token    string
}

// NewUser creates a user through SCIM as the admin (in the admins group if
// admin) and issues it a token.
func (s *Server) NewUser(userName string, admin bool) User {
	s.t.Helper()
	ctx := context.Background()
	w := s.SDK(s.AdminToken)
	u, err := w.Users.Create(ctx, iam.User{UserName: userName})
	if err != nil {
		s.t.Fatalf("create user %s: %v", userName, err)
	}
	if admin {
		g, err := w.Groups.GetByDisplayName(ctx, "admins")
		if err != nil {
			s.t.Fatal(err)
		}
		err = w.Groups.Patch(ctx, iam.PartialUpdate{Id: g.Id, Operations: []iam.Patch{{Op: iam.PatchOpAdd, Path: "members", Value: []map[string]string{{"value": u.Id}}}},
			Schemas: []iam.PatchSchema{iam.PatchSchemaUrnIetfParamsScimApiMessages20PatchOp}})
		if err != nil {
			s.t.Fatal(err)
		}
	}
	tok, err := s.Identity.IssueToken(ctx, u.Id, "test", 0)
	if err != nil {
		s.t.Fatal(err)
	}
	return User{ID: u.Id, UserName: userName, Token: tok}
}

// Response is a raw API response.
type Response struct {
	Status int
	Body   []byte
	Header http.Header
}

// JSON decodes the body.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// Do sends a raw request. body may be nil, a []byte, a string, or a value to
// encode as JSON.
func (s *Server) Do(token, method, path string, body any) Response {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = bytes.NewReader([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Transport: s.Transport(), Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Body: b, Header: resp.Header}
}

// WriteDatabricksConfig writes a ~/.databrickscfg-style file for the Python
// SDK and CLI and returns its path.
func (s *Server) WriteDatabricksConfig(token string) string {
	p := filepath.Join(s.t.TempDir(), "databrickscfg")
	content := fmt.Sprintf("[DEFAULT]\nhost = %s\ntoken = %s\n", s.URL, token)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// WithRegion names the region.
func WithRegion(name string) Option { return func(c *config.Config) { c.Region = name } }

// WithListen serves on a fixed address (to restart a region where its
// peer expects it).
func WithListen(addr string) Option { return func(c *config.Config) { c.Listen = addr } }

// WithConfig changes the configuration in any other way.
func WithConfig(fn func(*config.Config)) Option { return Option(fn) }

// Pair is a primary and a secondary region paired for disaster recovery,
// each trusting the other's CA, with the same admin token (it is
// replicated).
type Pair struct {
	Primary, Secondary *Server
	// Dirs and Addrs of both regions, to restart one where the other
	// expects it.
	PrimaryDir, SecondaryDir   string
	PrimaryAddr, SecondaryAddr string
	// SecondaryDials, if set before Start, is the address the secondary
	// uses to reach the primary (a proxy that a test can cut).
	SecondaryDials             string
	PrimaryOpts, SecondaryOpts []Option
}

// StartPair starts a primary region and a secondary that copies the
// workspace from it and follows it; opts apply to both.
func StartPair(t testing.TB, opts ...Option) *Pair {
	t.Helper()
	p := NewPair(t)
	p.Start(t, opts...)
	return p
}

// NewPair chooses the directories and addresses of a pair and makes both
// CAs (as tandem up does), so each region can name the other's CA file from
// its first start.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	p := &Pair{PrimaryDir: t.TempDir(), SecondaryDir: t.TempDir(), PrimaryAddr: FreeAddr(t), SecondaryAddr: FreeAddr(t)}
	for _, d := range []struct{ dir, name string }{{p.PrimaryDir, "primary"}, {p.SecondaryDir, "secondary"}} {
		if _, err := pki.LoadOrCreateCA(filepath.Join(d.dir, "tls"), "Tandem CA "+d.name); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// Start starts both regions of the pair, the primary first.
func (p *Pair) Start(t testing.TB, opts ...Option) {
	t.Helper()
	p.PrimaryOpts = append([]Option{WithDataDir(p.PrimaryDir), WithListen(p.PrimaryAddr), WithRegion("primary"),
		WithConfig(func(c *config.Config) {
			c.DR.Peer = "https://" + p.SecondaryAddr
			c.DR.PeerCAFile = filepath.Join(p.SecondaryDir, "tls", pki.CAFile)
		})}, opts...)
	p.Primary = Start(t, p.PrimaryOpts...)
	// The secondary's admin token is the primary's: it arrives by replication.
	if err := os.WriteFile(filepath.Join(p.SecondaryDir, "servertest-admin-token"), []byte(p.Primary.AdminToken), 0o600); err != nil {
		t.Fatal(err)
	}
	dial := p.PrimaryAddr
	if p.SecondaryDials != "" {
		dial = p.SecondaryDials
	}
	p.SecondaryOpts = append([]Option{WithDataDir(p.SecondaryDir), WithListen(p.SecondaryAddr), WithRegion("secondary"),
		WithConfig(func(c *config.Config) {
			c.DR.Primary = "https://" + dial
			c.DR.PeerCAFile = filepath.Join(p.PrimaryDir, "tls", pki.CAFile)
		})}, opts...)
	p.Secondary = Start(t, p.SecondaryOpts...)
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago (for regions that must know each other's address before they start).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
