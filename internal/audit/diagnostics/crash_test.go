package diagnostics_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/audit/destination"
	"github.com/tandemdata/tandem/internal/audit/digest"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/proc"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/storage"
)

// tandemBin returns TANDEM_BIN or a binary built for the test.
func tandemBin(t *testing.T) string {
	if b := os.Getenv("TANDEM_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(t.TempDir(), "tandem")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tandemdata/tandem/cmd/tandem").CombinedOutput()
	if err != nil {
		t.Fatalf("build tandem: %v\n%s", err, out)
	}
	return bin
}

type region struct {
	t       *testing.T
	bin     string
	dir     string
	addr    string
	token   string
	p       *proc.Process
	client  *http.Client
	logFile *os.File
}

func (r *region) start() {
	r.t.Helper()
	cfg := filepath.Join(r.dir, "config.yaml")
	os.WriteFile(cfg, []byte("audit:\n  digest_period: 1s\n"), 0o600)
	var err error
	r.p, err = proc.Start(proc.Spec{Path: r.bin, Args: []string{"server", "--data-dir", r.dir, "--listen", r.addr, "--region", "crash", "--config", cfg},
		Env: []string{"TANDEM_BOOTSTRAP_TOKEN=" + r.token}, Stdout: r.logFile, Stderr: r.logFile})
	if err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if pool, err := pki.LoadPool(filepath.Join(r.dir, "tls", pki.CAFile)); err == nil {
			r.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 16}}
			if resp, err := r.client.Get("https://" + r.addr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("server did not start; see %s", r.logFile.Name())
}

func (r *region) do(method, path string, body any) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "https://"+r.addr+path, rd)
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// TestKillNineLosesNoAcknowledgedRecord drives API calls into a real
// server process, kills it with SIGKILL at a random moment, restarts it,
// and checks that every call that was answered has its record once in the
// query store and in the storage account, and that the digest chain holds.
func TestKillNineLosesNoAcknowledgedRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	bin := tandemBin(t)
	dir := t.TempDir()
	logFile, _ := os.Create(filepath.Join(dir, "server.log"))
	defer logFile.Close()
	tok := make([]byte, 16)
	rand.Read(tok)
	r := &region{t: t, bin: bin, dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), token: "dapi" + hex.EncodeToString(tok), logFile: logFile}
	r.start()
	defer func() { r.p.Stop(10 * time.Second) }()
	if st, _, b, err := r.do("PUT", "/api/2.0/tandem/diagnostic-settings/storage", map[string]any{
		"logs": []map[string]any{{"category_group": "allLogs", "enabled": true}}, "storage_account": map[string]any{}}); err != nil || st != 200 {
		t.Fatalf("put setting: %d %s %v", st, b, err)
	}

	var mu sync.Mutex
	answered := map[string]bool{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				path := "/api/2.0/preview/scim/v2/Me"
				if i%5 == 0 {
					path = "/api/2.0/token/list"
				}
				st, h, _, err := r.do("GET", path, nil)
				if err == nil && st == 200 {
					mu.Lock()
					answered[h.Get("X-Request-Id")] = true
					mu.Unlock()
				}
			}
		}()
	}
	wait, _ := rand.Int(rand.Reader, big.NewInt(2000))
	time.Sleep(time.Duration(500+wait.Int64()) * time.Millisecond)
	r.p.Kill()
	stop()
	wg.Wait()
	if len(answered) < 50 {
		t.Fatalf("only %d calls answered before the kill", len(answered))
	}
	t.Logf("%d calls answered before kill -9", len(answered))

	r.start()
	// Every answered call is in the query store, once.
	deadline := time.Now().Add(60 * time.Second)
	var missing []string
	for {
		counts := map[string]int{}
		q := url.Values{"page_size": {"1000"}}
		for {
			st, _, b, err := r.do("GET", "/api/2.0/tandem/audit/records?"+q.Encode(), nil)
			if err != nil || st != 200 {
				t.Fatalf("query: %d %s %v", st, b, err)
			}
			var page recordsPage
			json.Unmarshal(b, &page)
			for _, rec := range page.Records {
				counts[rec.Properties.RequestID]++
			}
			if page.NextPageToken == "" {
				break
			}
			q.Set("page_token", page.NextPageToken)
		}
		missing = missing[:0]
		for id := range answered {
			switch counts[id] {
			case 0:
				missing = append(missing, id)
			case 1:
			default:
				t.Fatalf("request %s has %d records in the query store", id, counts[id])
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d answered calls have no record in the query store, e.g. %s", len(missing), len(answered), missing[0])
	}

	// And in the storage account, once after deduplication by logId. The
	// account encrypts what it holds: read it through the account, opened
	// read-only beside the running server.
	cfg := config.Default()
	cfg.DataDir = dir
	ctx = context.Background()
	ro, closeRO, err := server.OpenStorage(ctx, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRO()
	deadline = time.Now().Add(30 * time.Second)
	for {
		byLog := map[string]string{}
		ro.List(ctx, "", func(oi storage.ObjectInfo) error {
			p := oi.Name
			if !strings.HasSuffix(p, "PT1H.json") {
				return nil
			}
			f, err := ro.Get(ctx, p, 0, -1)
			if err != nil {
				return nil
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 4<<20)
			for sc.Scan() {
				rec, err := destination.FromWire(sc.Bytes())
				if err != nil {
					t.Fatalf("%s holds a line that is not a record: %v: %.200s", p, err, sc.Text())
				}
				byLog[rec.Properties.LogID] = rec.Properties.RequestID
			}
			return nil
		})
		perRequest := map[string]int{}
		for _, req := range byLog {
			perRequest[req]++
		}
		missing = missing[:0]
		for id := range answered {
			if perRequest[id] != 1 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d answered calls are not in the storage account once, e.g. %s", len(missing), missing[0])
	}

	// The digest chain survived the kill: wait for a digest after the
	// restart, stop the server and verify with the region's public key.
	time.Sleep(2500 * time.Millisecond)
	r.p.Stop(10 * time.Second)
	pubPEM, err := os.ReadFile(filepath.Join(dir, "audit", digest.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := digest.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := digest.Verify(storage.FS(ctx, ro), pub)
	if err != nil || !rep.OK() || len(rep.Chains) != 1 || rep.Chains[0].Files == 0 {
		t.Fatalf("verify after kill -9: %v %+v", err, rep)
	}
	out, err := exec.Command(bin, "audit", "verify", "--data-dir", dir, "--config", filepath.Join(dir, "config.yaml"), "--public-key",
		filepath.Join(dir, "audit", digest.PublicKeyFile)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK: no log file or digest is missing or altered") {
		t.Errorf("tandem audit verify: %v\n%s", err, out)
	}
}
