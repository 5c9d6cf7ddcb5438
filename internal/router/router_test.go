package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/pki"
)

// fakeRegion answers the role endpoint with whatever role and epoch the
// test sets, and records the calls it serves.
type fakeRegion struct {
	name string
	srv  *httptest.Server
	ca   string

	mu    sync.Mutex
	role  dr.Role
	epoch int64
	calls []string
}

func (f *fakeRegion) set(role dr.Role, epoch int64) {
	f.mu.Lock()
	f.role, f.epoch = role, epoch
	f.mu.Unlock()
}

func (f *fakeRegion) served() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func newFakeRegion(t *testing.T, name string, role dr.Role, epoch int64) *fakeRegion {
	f := &fakeRegion{name: name, role: role, epoch: epoch}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+dr.RolePath, func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		json.NewEncoder(w).Encode(dr.RoleSummary{Region: name, Role: f.role, Epoch: f.epoch})
	})
	mux.HandleFunc("POST /api/2.0/workspace/mkdirs", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		role := f.role
		if role == dr.Active {
			f.calls = append(f.calls, string(b))
		}
		f.mu.Unlock()
		switch role {
		case dr.Passive:
			w.Header().Set(dr.HeaderRefused, string(role))
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error_code":"INVALID_STATE","message":"passive"}`)
			return
		case dr.Draining, dr.Sealed:
			w.Header().Set(dr.HeaderRefused, string(role))
			w.WriteHeader(503)
			fmt.Fprint(w, `{"error_code":"TEMPORARILY_UNAVAILABLE","message":"failover in progress"}`)
			return
		}
		fmt.Fprintf(w, `{"served_by":%q}`, name)
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "first\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // never finishes by itself
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "tandem-echo" {
			http.Error(w, "upgrade required", 426)
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tandem-echo\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString(name + ":" + line)
		rw.Flush()
	})
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.ca = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	os.WriteFile(f.ca, pemBytes, 0o644)
	return f
}

func startRouter(t *testing.T, regions ...*fakeRegion) (*Server, *http.Client) {
	t.Helper()
	var ups []Upstream
	for _, f := range regions {
		ups = append(ups, Upstream{Name: f.name, URL: f.srv.URL, CAFile: f.ca})
	}
	r, err := New(Config{Regions: ups, Check: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(r, t.TempDir(), "127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Close() })
	pool, err := pki.LoadPool(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return s, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func waitActive(t *testing.T, s *Server, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Router.Status().ActiveRegion != name {
		if time.Now().After(deadline) {
			t.Fatalf("router active = %q, want %s", s.Router.Status().ActiveRegion, name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func post(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRouterFollowsTheHighestEpoch(t *testing.T) {
	a := newFakeRegion(t, "a", dr.Active, 1)
	b := newFakeRegion(t, "b", dr.Passive, 1)
	s, c := startRouter(t, a, b)
	waitActive(t, s, "a")
	if code, body := post(t, c, s.URL()+"/api/2.0/workspace/mkdirs", `{"path":"/x"}`); code != 200 || !strings.Contains(body, `"a"`) {
		t.Fatalf("first call: %d %s", code, body)
	}
	// b is promoted while a, not yet fenced, still says it is active: the
	// higher epoch wins.
	b.set(dr.Active, 2)
	waitActive(t, s, "b")
	if st := s.Router.Status(); st.Epoch != 2 || st.Switches != 1 {
		t.Errorf("status: %+v", st)
	}
	// The router serves its view to regions and tools.
	resp, err := c.Get(s.URL() + dr.RouterStatusPath)
	if err != nil {
		t.Fatal(err)
	}
	var rs dr.RouterStatus
	json.NewDecoder(resp.Body).Decode(&rs)
	resp.Body.Close()
	if rs.ActiveRegion != "b" || len(rs.Regions) != 2 {
		t.Errorf("router status: %+v", rs)
	}
	// A stale epoch never takes the URL back.
	a.set(dr.Active, 1)
	time.Sleep(100 * time.Millisecond)
	if s.Router.Status().ActiveRegion != "b" {
		t.Errorf("a stale leader took the URL back")
	}
}

func TestRouterReplaysACallTheFormerLeaderRefused(t *testing.T) {
	a := newFakeRegion(t, "a", dr.Active, 1)
	b := newFakeRegion(t, "b", dr.Passive, 1)
	r, err := New(Config{Regions: []Upstream{{Name: "a", URL: a.srv.URL, CAFile: a.ca}, {Name: "b", URL: b.srv.URL, CAFile: b.ca}},
		Check: time.Hour}) // only explicit checks: the router's view is stale on purpose
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(r, t.TempDir(), "127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	defer s.Close()
	waitActive(t, s, "a")
	pool, _ := pki.LoadPool(s.CAFile)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	// The failover happens between two checks.
	a.set(dr.Passive, 2)
	b.set(dr.Active, 2)
	code, body := post(t, c, s.URL()+"/api/2.0/workspace/mkdirs", `{"path":"/replayed"}`)
	if code != 200 || !strings.Contains(body, `"b"`) {
		t.Fatalf("call during the switch: %d %s", code, body)
	}
	if got := b.served(); len(got) != 1 || got[0] != `{"path":"/replayed"}` {
		t.Errorf("b served %q", got)
	}
	if got := a.served(); len(got) != 0 {
		t.Errorf("a acted on the refused call: %q", got)
	}
}

func TestRouterHoldsCallsDuringAPlannedFailover(t *testing.T) {
	a := newFakeRegion(t, "a", dr.Active, 1)
	b := newFakeRegion(t, "b", dr.Passive, 1)
	s, c := startRouter(t, a, b)
	waitActive(t, s, "a")

	// a is sealed; b takes over 300 ms later: the call waits and lands in b.
	a.set(dr.Sealed, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		b.set(dr.Active, 2)
		a.set(dr.Passive, 2)
	}()
	start := time.Now()
	code, body := post(t, c, s.URL()+"/api/2.0/workspace/mkdirs", `{"path":"/held"}`)
	if code != 200 || !strings.Contains(body, `"b"`) || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("held call: %d %s after %s", code, body, time.Since(start))
	}

	// b is drained, then the failover is called off: the call lands in b.
	b.set(dr.Draining, 2)
	go func() {
		time.Sleep(200 * time.Millisecond)
		b.set(dr.Active, 2)
	}()
	code, body = post(t, c, s.URL()+"/api/2.0/workspace/mkdirs", `{"path":"/resumed"}`)
	if code != 200 || !strings.Contains(body, `"b"`) {
		t.Fatalf("call during a failover called off: %d %s", code, body)
	}
	if got := b.served(); len(got) != 2 || got[1] != `{"path":"/resumed"}` {
		t.Errorf("b served %q", got)
	}
}

func TestRouterStreamsAndPassesUpgrades(t *testing.T) {
	a := newFakeRegion(t, "a", dr.Active, 1)
	s, c := startRouter(t, a)
	waitActive(t, s, "a")

	// The first chunk arrives while the upstream is still writing.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/stream", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("streamed line %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()

	// A protocol upgrade (websockets) passes through both ways.
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(s.CAFile)
	pool.AppendCertsFromPEM(b)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(s.URL(), "https://"), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tandem-echo\r\n\r\n")
	br := bufio.NewReader(conn)
	status, _ := br.ReadString('\n')
	if !strings.Contains(status, "101") {
		t.Fatalf("upgrade answered %q", status)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
	}
	fmt.Fprint(conn, "hello\n")
	echo, err := br.ReadString('\n')
	if err != nil || echo != "a:hello\n" {
		t.Fatalf("echo %q, %v", echo, err)
	}
}

func TestRouterWithoutALeaderAnswers503(t *testing.T) {
	a := newFakeRegion(t, "a", dr.Passive, 1)
	s, c := startRouter(t, a)
	time.Sleep(50 * time.Millisecond)
	code, body := post(t, c, s.URL()+"/api/2.0/workspace/mkdirs", `{}`)
	if code != 503 || !strings.Contains(body, "TEMPORARILY_UNAVAILABLE") {
		t.Errorf("no leader: %d %s", code, body)
	}
}
