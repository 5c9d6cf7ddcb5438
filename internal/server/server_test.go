package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/settings"

	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var ctx = context.Background()

func TestTLSIsOnAndRefusesVersionsBelow12(t *testing.T) {
	srv := servertest.Start(t)
	pool, _ := pki.LoadPool(srv.CAFile)
	addr := srv.URL[len("https://"):]
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v})
		if err == nil {
			conn.Close()
			t.Errorf("TLS version %x accepted", v)
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v, ServerName: "localhost"})
		if err != nil {
			t.Errorf("TLS version %x refused: %v", v, err)
			continue
		}
		conn.Close()
	}
	// Plain HTTP gets nothing useful.
	resp, err := http.Get("http://" + addr + "/healthz")
	if err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP served /healthz")
	}
}

func TestHealthzNeedsNoToken(t *testing.T) {
	srv := servertest.Start(t)
	r := srv.Do("", http.MethodGet, "/healthz", nil)
	if r.Status != 200 || r.JSON(t)["status"] != "ok" {
		t.Fatalf("healthz: %d %s", r.Status, r.Body)
	}
}

func TestUserSuppliedCertificateReplacesTheLocalCA(t *testing.T) {
	// An operator's own CA and certificate, for a name the local CA would not use.
	caDir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(caDir, "Operator CA")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.IssueServer("tandem.example.internal", []string{"tandem.example.internal", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(caDir, "cert.pem"), filepath.Join(caDir, "key.pem")
	os.WriteFile(certFile, iss.CertPEM, 0o600)
	os.WriteFile(keyFile, iss.KeyPEM, 0o600)
	srv := servertest.Start(t, func(c *config.Config) { c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile })

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatalf("operator CA does not verify the served certificate: %v", err)
	}
	resp.Body.Close()
	// The region's own CA no longer verifies it.
	own, _ := pki.LoadPool(srv.CAFile)
	client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: own}}}
	if _, err := client.Get(srv.URL + "/healthz"); err == nil {
		t.Error("the local CA still verifies the served certificate")
	}
}

func TestBootstrapTokenIsMadeOnlyOnFirstStart(t *testing.T) {
	dir := t.TempDir()
	srv := servertest.Start(t, servertest.WithDataDir(dir))
	w := srv.SDK(srv.AdminToken)
	// The admin replaces the bootstrap token with one of its own, then revokes it.
	own, err := w.Tokens.Create(ctx, settings.CreateTokenRequest{Comment: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	infos, _ := w.Tokens.ListAll(ctx)
	for _, i := range infos {
		if i.Comment == "bootstrap token" {
			if err := w.Tokens.DeleteByTokenId(ctx, i.TokenId); err != nil {
				t.Fatal(err)
			}
		}
	}
	boot := srv.AdminToken
	srv.Close()

	// Restarting with the same environment does not bring the token back.
	cfg := config.Default()
	cfg.DataDir, cfg.Listen, cfg.Region = dir, "127.0.0.1:0", "test"
	t.Setenv("TANDEM_BOOTSTRAP_TOKEN", boot)
	s2, err := server.New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Identity.Authenticate(ctx, boot); err == nil {
		t.Error("revoked bootstrap token works again after a restart")
	}
	if _, err := s2.Identity.Authenticate(ctx, own.TokenValue); err != nil {
		t.Errorf("admin's own token lost across a restart: %v", err)
	}
}

func TestServerRunsOnPostgreSQL(t *testing.T) {
	srv := servertest.Start(t, servertest.WithStore(testenv.Postgres(t)))
	w := srv.SDK(srv.AdminToken)
	me, err := w.CurrentUser.Me(ctx)
	if err != nil || me.UserName != "admin@tandem.local" {
		t.Fatalf("Me on PostgreSQL: %+v, %v", me, err)
	}
	user := srv.NewUser("pg@example.com", false)
	if _, err := srv.SDK(user.Token).CurrentUser.Me(ctx); err != nil {
		t.Fatal(err)
	}
}

// A call whose body stopped arriving does not outlive Close: past the
// grace, its connection is closed under it, so it cannot hold what closing
// the state waits for.
func TestCloseEndsACallWhoseBodyStoppedArriving(t *testing.T) {
	srv := servertest.Start(t)
	srv.ShutdownGrace = 300 * time.Millisecond
	pr, pw := io.Pipe()
	defer pw.Close()
	form := multipart.NewWriter(pw)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/2.0/dbfs/put", pr)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
	req.Header.Set("Content-Type", form.FormDataContentType())
	done := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: srv.Transport()}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	form.WriteField("path", "/stalled.bin")
	f, _ := form.CreateFormFile("file", "stalled.bin")
	f.Write(make([]byte, 300<<10)) // a few blocks' worth arrives, then nothing
	time.Sleep(200 * time.Millisecond)

	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("the stalled upload was answered as if it had completed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled upload's connection is still open after Close returned")
	}
}
