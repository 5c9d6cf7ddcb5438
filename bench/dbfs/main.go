// Command dbfs measures Tandem's DBFS with large files: a multipart put
// streamed into blocks (how the legacy CLI's `fs cp` uploads), an upload
// through create, add-block and close (how the SDKs upload), and a read back
// in 1 MiB reads (how every client downloads), each checked by SHA-256. It
// starts a tandem server, reports throughput and the server's peak memory,
// and removes everything it made.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/proc"
)

func main() {
	bin := flag.String("bin", "bin/tandem", "tandem binary to start")
	size := flag.Int64("size", 1<<30, "bytes per file")
	keep := flag.Bool("keep", false, "keep the server's data directory (to inspect its metadata store)")
	flag.Parse()

	dir, err := os.MkdirTemp("", "tandem-bench-dbfs-")
	if err != nil {
		log.Fatal(err)
	}
	if *keep {
		defer fmt.Printf("data directory kept: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	token := fmt.Sprintf("dapi%032x", rand.Uint64())
	addr := freeAddr()
	logf, _ := os.Create(filepath.Join(dir, "server.log"))
	srv, err := proc.Start(proc.Spec{Path: *bin, Args: []string{"server", "--data-dir", filepath.Join(dir, "data"), "--listen", addr},
		Env: []string{"TANDEM_BOOTSTRAP_TOKEN=" + token}, Stdout: logf, Stderr: logf})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(10 * time.Second)
	c := &client{base: "https://" + addr, token: token}
	c.waitHealthy(filepath.Join(dir, "data", "tls", "ca.pem"))

	mb := float64(*size) / (1 << 20)
	fmt.Printf("Tandem DBFS, %.0f MiB files, over TLS on loopback, auditing on\n", mb)
	fmt.Printf("%-44s %9s %9s\n", "operation", "seconds", "MiB/s")
	report := func(what string, d time.Duration) {
		fmt.Printf("%-44s %9.1f %9.1f\n", what, d.Seconds(), mb/d.Seconds())
	}

	want := sum(*size)
	d, err := c.multipartPut("/bench/put.bin", *size)
	check("multipart put", err)
	report("put, multipart form streamed (8 MiB blocks)", d)
	d, err = c.blockUpload("/bench/blocks.bin", *size)
	check("create/add-block/close", err)
	report("create, add-block (1 MiB) x N, close", d)
	for _, p := range []string{"/bench/put.bin", "/bench/blocks.bin"} {
		start := time.Now()
		got, err := c.readAll(p, *size)
		check("read "+p, err)
		if !bytes.Equal(got, want) {
			log.Fatalf("%s read back differs from what was written", p)
		}
		report("read "+p+", 1 MiB reads", time.Since(start))
	}
	fmt.Printf("server peak resident memory: %s\n", peakRSS(srv.Pid()))
}

func check(what string, err error) {
	if err != nil {
		log.Fatalf("%s: %v", what, err)
	}
}

// content is the benchmark file: a fixed pseudo-random stream.
func content(size int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{1}), size)
}

func sum(size int64) []byte {
	h := sha256.New()
	io.Copy(h, content(size))
	return h.Sum(nil)
}

type client struct {
	base, token string
	http        *http.Client
}

func (c *client) waitHealthy(caFile string) {
	for i := 0; i < 300; i++ {
		if pem, err := os.ReadFile(caFile); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			c.http = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
			if resp, err := c.http.Get(c.base + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatal("the server did not become healthy")
}

func (c *client) do(method, path string, body io.Reader, contentType string, out any) error {
	req, _ := http.NewRequest(method, c.base+path, body)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (c *client) post(path string, in, out any) error {
	b, _ := json.Marshal(in)
	return c.do(http.MethodPost, path, bytes.NewReader(b), "application/json", out)
}

func (c *client) multipartPut(path string, size int64) (time.Duration, error) {
	pr, pw := io.Pipe()
	form := multipart.NewWriter(pw)
	go func() {
		form.WriteField("path", path)
		fw, _ := form.CreateFormFile("contents", filepath.Base(path))
		if _, err := io.Copy(fw, content(size)); err != nil {
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(form.Close())
	}()
	start := time.Now()
	err := c.do(http.MethodPost, "/api/2.0/dbfs/put", pr, form.FormDataContentType(), nil)
	return time.Since(start), err
}

func (c *client) blockUpload(path string, size int64) (time.Duration, error) {
	start := time.Now()
	var h struct {
		Handle int64 `json:"handle"`
	}
	if err := c.post("/api/2.0/dbfs/create", map[string]any{"path": path}, &h); err != nil {
		return 0, err
	}
	r := content(size)
	buf := make([]byte, 1<<20)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if err := c.post("/api/2.0/dbfs/add-block", map[string]any{"handle": h.Handle, "data": base64.StdEncoding.EncodeToString(buf[:n])}, nil); err != nil {
				return 0, err
			}
		}
		if err != nil {
			break
		}
	}
	err := c.post("/api/2.0/dbfs/close", map[string]any{"handle": h.Handle}, nil)
	return time.Since(start), err
}

// readAll reads a file in 1 MiB reads and returns its SHA-256.
func (c *client) readAll(path string, size int64) ([]byte, error) {
	var h hash.Hash = sha256.New()
	var off int64
	for off < size {
		var r struct {
			BytesRead int64  `json:"bytes_read"`
			Data      string `json:"data"`
		}
		q := url.Values{"path": {path}, "offset": {fmt.Sprint(off)}, "length": {fmt.Sprint(1 << 20)}}
		if err := c.do(http.MethodGet, "/api/2.0/dbfs/read?"+q.Encode(), nil, "", &r); err != nil {
			return nil, err
		}
		if r.BytesRead == 0 {
			return nil, fmt.Errorf("unexpected end of %s at %d", path, off)
		}
		b, err := base64.StdEncoding.DecodeString(r.Data)
		if err != nil {
			return nil, err
		}
		h.Write(b)
		off += r.BytesRead
	}
	return h.Sum(nil), nil
}

func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
