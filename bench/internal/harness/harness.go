// Package harness is what the benchmarks that start a real tandem server
// share: starting it on a free loopback address, a client trusting the
// region's CA, waiting for health, and ending the instances it made.
package harness

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/databricks/databricks-sdk-go"
)

// Must ends the benchmark on an error.
func Must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// FreeAddr is a free 127.0.0.1 address.
func FreeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Transport trusts the CA in caFile.
func Transport(caFile string) *http.Transport {
	pem, err := os.ReadFile(caFile)
	Must(err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
}

// WaitHealthy waits up to 30 s for the server at url to answer /healthz.
func WaitHealthy(url, caFile string) {
	for i := 0; i < 300; i++ {
		if _, err := os.Stat(caFile); err == nil {
			c := &http.Client{Transport: Transport(caFile), Timeout: time.Second}
			if resp, err := c.Get(url + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatal("server did not become healthy")
}

// KillInstances ends every instance a server with data directory dir made
// (they outlive it by design).
func KillInstances(dir string) {
	entries, _ := os.ReadDir(filepath.Join(dir, "instances"))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "instances", e.Name(), "agent.pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

// Server is a `tandem server` process a benchmark started, on a free
// loopback address with a data directory of its own.
type Server struct {
	URL, CAFile, Token, Dir string
	cmd                     *exec.Cmd
}

// StartServer starts bin (`tandem server`) with the virtualenv venv and
// waits until it is healthy; name names its temporary data directory.
func StartServer(name, bin, venv string) *Server {
	dir, err := os.MkdirTemp("", "tandem-bench-"+name+"-")
	Must(err)
	absVenv, _ := filepath.Abs(venv)
	absBin, _ := filepath.Abs(bin)
	s := &Server{Token: fmt.Sprintf("dapi%032x", time.Now().UnixNano()), Dir: dir}
	addr := FreeAddr()
	s.URL, s.CAFile = "https://"+addr, filepath.Join(dir, "tls", "ca.pem")
	s.cmd = exec.Command(absBin, "server", "--data-dir", dir, "--listen", addr)
	s.cmd.Env = append(os.Environ(), "TANDEM_BOOTSTRAP_TOKEN="+s.Token, "TANDEM_VENV="+absVenv, "TANDEM_BIN="+absBin)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	Must(err)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	Must(s.cmd.Start())
	WaitHealthy(s.URL, s.CAFile)
	return s
}

// Client is a Databricks Go SDK client of the server as its admin.
func (s *Server) Client() *databricks.WorkspaceClient {
	w, err := databricks.NewWorkspaceClient(&databricks.Config{Host: s.URL, Token: s.Token, HTTPTransport: Transport(s.CAFile),
		RateLimitPerSecond: 1000})
	Must(err)
	return w
}

// Stop stops the server and the instances it made, and removes its data
// directory unless keep (then it prints where it is).
func (s *Server) Stop(keep bool) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	KillInstances(s.Dir)
	if keep {
		fmt.Println("data directory kept:", s.Dir)
		return
	}
	os.RemoveAll(s.Dir)
}
