// Package harness is what the benchmarks that start a real tandem server
// share: a free loopback address, a client transport trusting the region's
// CA, waiting for health, and ending the instances a server made.
package harness

import (
	"crypto/tls"
	"crypto/x509"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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
