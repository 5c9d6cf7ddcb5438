// Command api is the load benchmark of Tandem's metadata API: authenticated
// reads over TLS with HTTP keep-alive, auditing on (every call's record is
// written durably before the answer). It starts a tandem server (unless
// -url is given), drives each endpoint with a fixed number of concurrent
// clients for a fixed time, and prints throughput and latency percentiles.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdata/tandem/internal/proc"
)

func main() {
	var (
		bin         = flag.String("bin", "bin/tandem", "tandem binary to start")
		url         = flag.String("url", "", "use a running server instead of starting one")
		token       = flag.String("token", "", "token for -url")
		caFile      = flag.String("ca", "", "CA file for -url")
		duration    = flag.Duration("duration", 20*time.Second, "time per endpoint")
		concurrency = flag.Int("c", 32, "concurrent clients (each one keep-alive connection)")
		store       = flag.String("store", "", "metadata store for the started server (empty: SQLite)")
	)
	flag.Parse()
	ctx := context.Background()
	if *url == "" {
		dir, err := os.MkdirTemp("", "tandem-bench-api-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*token = "dapi" + fmt.Sprintf("%032x", time.Now().UnixNano())
		addr := freeAddr()
		args := []string{"server", "--data-dir", dir, "--listen", addr}
		if *store != "" {
			args = append(args, "--store", *store)
		}
		logf, _ := os.Create(filepath.Join(dir, "server.log"))
		p, err := proc.Start(proc.Spec{Path: *bin, Args: args, Env: []string{"TANDEM_BOOTSTRAP_TOKEN=" + *token}, Stdout: logf, Stderr: logf})
		if err != nil {
			log.Fatal(err)
		}
		defer p.Stop(10 * time.Second)
		*url = "https://" + addr
		*caFile = filepath.Join(dir, "tls", "ca.pem")
		waitHealthy(*url, *caFile)
	}
	client := newClient(*caFile, *concurrency)
	setup(ctx, client, *url, *token)

	fmt.Printf("Tandem metadata API load: %d concurrent keep-alive TLS clients, %s per endpoint, auditing on\n", *concurrency, *duration)
	fmt.Printf("%-34s %10s %9s %9s %9s %9s %7s\n", "endpoint", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors")
	for _, ep := range []string{
		"/api/2.0/preview/scim/v2/Me",
		"/api/2.0/workspace/get-status?path=/Shared/bench/nb",
	} {
		r := run(client, *url+ep, *token, *concurrency, *duration)
		fmt.Printf("%-34s %10.0f %9.2f %9.2f %9.2f %9.2f %7d\n", shorten(ep), r.rps, r.p(50), r.p(90), r.p(99), r.p(100), r.errors)
	}
}

func shorten(s string) string {
	if len(s) > 34 {
		return s[:31] + "..."
	}
	return s
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newClient(caFile string, conns int) *http.Client {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		MaxConnsPerHost:     conns,
		ForceAttemptHTTP2:   false,
	}, Timeout: 30 * time.Second}
}

func waitHealthy(url, caFile string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(caFile); err == nil {
			resp, err := newClient(caFile, 1).Get(url + "/healthz")
			if err == nil && resp.StatusCode == 200 {
				resp.Body.Close()
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatal("server did not become healthy")
}

// setup creates the objects the read endpoints look at.
func setup(ctx context.Context, c *http.Client, url, token string) {
	post := func(path string, body any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, "POST", url+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	post("/api/2.0/workspace/mkdirs", map[string]string{"path": "/Shared/bench"})
	post("/api/2.0/workspace/import", map[string]any{"path": "/Shared/bench/nb", "language": "PYTHON", "format": "SOURCE",
		"content": "IyBEYXRhYnJpY2tzIG5vdGVib29rIHNvdXJjZQpwcmludCgxKQo=", "overwrite": true})
}

type result struct {
	rps       float64
	latencies []time.Duration
	errors    int64
}

func (r result) p(q float64) float64 {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(q / 100 * float64(len(r.latencies)-1))
	return float64(r.latencies[i].Microseconds()) / 1000
}

func run(c *http.Client, url, token string, conc int, d time.Duration) result {
	var (
		mu     sync.Mutex
		all    []time.Duration
		errs   atomic.Int64
		wg     sync.WaitGroup
		warmup = 2 * time.Second
	)
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(d)
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			for {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				el := time.Since(t0)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, el)
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return result{rps: float64(len(all)) / d.Seconds(), latencies: all, errors: errs.Load()}
}
