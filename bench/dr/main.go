// Command dr is the disaster-recovery benchmark: it starts a real
// deployment (tandem up: the router, a primary and a secondary region, each
// its own process), drives metadata writes through the workspace URL at a
// fixed rate, and measures
//
//   - the replication lag while the primary takes the writes: the time from a
//     write's answer until the secondary serves it (every 10th write is
//     watched), and the lag the secondary reports in its status;
//   - the storage account's geo-replication to the secondary: the time from a
//     DBFS file's upload until the secondary serves its last bytes;
//   - a planned failover and a failback under the same load, with zero
//     data loss checked write by write;
//   - an unplanned failover after kill -9 of the active region: detection,
//     promotion, rerouting and verification, and the time until clients of
//     the workspace URL write again.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/proc"
)

func main() {
	var (
		bin      = flag.String("bin", "bin/tandem", "tandem binary")
		rate     = flag.Int("rate", 200, "metadata writes per second through the workspace URL")
		duration = flag.Duration("duration", 30*time.Second, "length of the lag measurement")
		writers  = flag.Int("writers", 16, "concurrent writers")
		files    = flag.Int("files", 40, "DBFS files uploaded to measure the storage account's geo-replication")
		fileSize = flag.Int("file-size", 1<<20, "size of each DBFS file (at most 1 MiB: one dbfs/put)")
	)
	flag.Parse()
	dir, err := os.MkdirTemp("", "tandem-bench-dr-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	depPath := filepath.Join(dir, "d", "deployment.json")
	upLog, _ := os.Create(filepath.Join(dir, "up.log"))
	up, err := proc.Start(proc.Spec{Path: *bin, Args: []string{"up", "--data-dir", filepath.Join(dir, "d"), "--listen", "127.0.0.1:0", "--rpo", "1s"},
		Stdout: upLog, Stderr: upLog})
	if err != nil {
		log.Fatal(err)
	}
	defer up.Stop(20 * time.Second)
	var d *dr.Deployment
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		if d, err = dr.LoadDeployment(depPath); err == nil && d.Router.PID != 0 {
			break
		}
		if time.Since(start) > 3*time.Minute {
			log.Fatalf("tandem up did not start (see %s): %v", upLog.Name(), err)
		}
	}
	b := &bench{d: d, router: client(d.Router.CAFile), regions: map[string]*http.Client{}}
	for _, r := range d.Regions {
		b.regions[r.Name] = client(r.CAFile)
	}
	call(b.router, d.AdminToken, "POST", d.Router.URL+"/api/2.0/workspace/mkdirs", map[string]string{"path": "/Shared/bench"})

	fmt.Printf("Tandem disaster recovery: a real deployment (router, primary, secondary as processes), %d metadata writes/s through the workspace URL, %d writers\n\n", *rate, *writers)

	// 1. Replication lag under load.
	load := b.startLoad(*rate, *writers, true)
	gauge := b.sampleLag("secondary", *duration)
	load.stop()
	vis, acks := load.visibility(), load.ackLatencies()
	fmt.Printf("Replication lag while the primary takes %.0f writes/s for %s (%d writes, %d errors)\n", load.achievedRate(), *duration, load.acked.Load(), load.errors.Load())
	fmt.Printf("  write answered -> served by the secondary (%d watched): p50 %s  p99 %s  max %s\n", len(vis), pct(vis, 50), pct(vis, 99), pct(vis, 100))
	fmt.Printf("  lag reported by the secondary's status (%d samples every 20 ms): p50 %s  p99 %s  max %s\n", len(gauge), pct(gauge, 50), pct(gauge, 99), pct(gauge, 100))
	fmt.Printf("  write latency through the router: p50 %s  p99 %s\n\n", pct(acks, 50), pct(acks, 99))

	// 1b. Storage contents: DBFS files, through the storage account's
	// geo-replication (blocks) and the change log (metadata).
	fileLag, filePaths, fileData, took := b.files(*files, *fileSize)
	fmt.Printf("Storage contents: %d DBFS files of %d KiB uploaded one after another through the workspace URL in %s (%.1f MB/s)\n",
		len(filePaths), *fileSize>>10, took.Round(time.Millisecond), float64(len(filePaths)*(*fileSize))/took.Seconds()/1e6)
	fmt.Printf("  upload answered -> last bytes served by the secondary: p50 %s  p99 %s  max %s\n\n", pct(fileLag, 50), pct(fileLag, 99), pct(fileLag, 100))

	// 2. Planned failover and failback under load, nothing lost.
	for _, cmd := range [][]string{{"failover", "--planned"}, {"failback"}} {
		load := b.startLoad(*rate, *writers, false)
		time.Sleep(2 * time.Second)
		rep, wall := b.run(*bin, depPath, cmd...)
		time.Sleep(2 * time.Second)
		load.stop()
		missing := b.missing(rep.To, load.paths())
		fmt.Printf("%s %s -> %s under %.0f writes/s: %s in %.3fs (command %.3fs)\n", rep.Kind, rep.From, rep.To, load.achievedRate(), rep.Outcome, rep.Seconds, wall.Seconds())
		fmt.Printf("  writes unavailable (drain until the URL reaches the new leader) %.3fs; %d changes lost; %d of %d acknowledged writes missing in %s; %d client errors\n",
			rep.RTOSeconds, rep.LostChanges, missing, load.acked.Load(), rep.To, load.errors.Load())
		if cmd[0] == "failover" {
			bad := b.filesMissing(rep.To, filePaths, fileData)
			fmt.Printf("  DBFS files not served whole by %s after the failover: %d of %d\n", rep.To, bad, len(filePaths))
		}
		steps(rep)
	}

	// 3. Unplanned failover after kill -9 of the active region.
	leader, err := d.Leader(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	var pid int
	for _, r := range d.Regions {
		if r.Name == leader {
			pid = r.PID
		}
	}
	load = b.startLoad(*rate, *writers, false)
	time.Sleep(2 * time.Second)
	killed := time.Now()
	syscall.Kill(pid, syscall.SIGKILL)
	rep, wall := b.run(*bin, depPath, "failover", "--unplanned")
	verified := time.Since(killed)
	back := load.firstAckAfter(killed, 30*time.Second)
	time.Sleep(time.Second)
	load.stop()
	missing := b.missing(rep.To, load.pathsBefore(killed))
	fmt.Printf("unplanned failover after kill -9 of %s under %.0f writes/s: %s in %.3fs (command %.3fs; kill to verified %.3fs)\n",
		leader, load.achievedRate(), rep.Outcome, rep.Seconds, wall.Seconds(), verified.Seconds())
	fmt.Printf("  clients of the workspace URL write again %.3fs after the kill; %d acknowledged writes before the kill missing in %s (known lost by the report: %d)\n",
		back.Seconds(), missing, rep.To, rep.LostChanges)
	steps(rep)
}

func steps(r dr.Report) {
	for _, s := range r.Steps {
		fmt.Printf("    %-10s %7.3fs  %s\n", s.Name, s.Seconds, s.Detail)
	}
	fmt.Println()
}

type bench struct {
	d       *dr.Deployment
	router  *http.Client
	regions map[string]*http.Client
	seq     atomic.Int64
}

func client(caFile string) *http.Client {
	pool, err := pki.LoadPool(caFile)
	if err != nil {
		log.Fatal(err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64}}
}

func call(c *http.Client, token, method, url string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// load writes new folders through the workspace URL at a fixed rate.
type load struct {
	b       *bench
	quit    chan struct{}
	wg      sync.WaitGroup
	start   time.Time
	end     time.Time
	acked   atomic.Int64
	errors  atomic.Int64
	mu      sync.Mutex
	done    []ack
	vis     []time.Duration
	watchWG sync.WaitGroup
}

type ack struct {
	path    string
	at      time.Time
	latency time.Duration
}

func (b *bench) startLoad(rate, writers int, watch bool) *load {
	l := &load{b: b, quit: make(chan struct{}), start: time.Now()}
	work := make(chan string)
	for w := 0; w < writers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for p := range work {
				t0 := time.Now()
				code, _, err := call(b.router, b.d.AdminToken, "POST", b.d.Router.URL+"/api/2.0/workspace/mkdirs", map[string]string{"path": p})
				now := time.Now()
				if err != nil || code != 200 {
					l.errors.Add(1)
					continue
				}
				n := l.acked.Add(1)
				l.mu.Lock()
				l.done = append(l.done, ack{path: p, at: now, latency: now.Sub(t0)})
				l.mu.Unlock()
				if watch && n%10 == 0 {
					l.watchWG.Add(1)
					go l.watch(p, now)
				}
			}
		}()
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(work)
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		for {
			select {
			case <-l.quit:
				return
			case <-t.C:
				select {
				case work <- fmt.Sprintf("/Shared/bench/w%07d", b.seq.Add(1)):
				case <-l.quit:
					return
				}
			}
		}
	}()
	return l
}

// watch polls the secondary until it serves path.
func (l *load) watch(path string, acked time.Time) {
	defer l.watchWG.Done()
	b := l.b
	sec := b.d.Regions[1]
	for time.Since(acked) < 10*time.Second {
		code, _, err := call(b.regions[sec.Name], b.d.AdminToken, "GET", sec.URL+"/api/2.0/workspace/get-status?path="+path, nil)
		if err == nil && code == 200 {
			l.mu.Lock()
			l.vis = append(l.vis, time.Since(acked))
			l.mu.Unlock()
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (l *load) stop() {
	close(l.quit)
	l.wg.Wait()
	l.watchWG.Wait()
	l.end = time.Now()
}

func (l *load) achievedRate() float64 {
	return float64(l.acked.Load()+l.errors.Load()) / l.end.Sub(l.start).Seconds()
}

func (l *load) visibility() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.vis...)
}

func (l *load) ackLatencies() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]time.Duration, len(l.done))
	for i, a := range l.done {
		out[i] = a.latency
	}
	return out
}

func (l *load) paths() []string { return l.pathsBefore(time.Now().Add(time.Hour)) }

func (l *load) pathsBefore(t time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, a := range l.done {
		if a.at.Before(t) {
			out = append(out, a.path)
		}
	}
	return out
}

// firstAckAfter waits for the first write answered after t.
func (l *load) firstAckAfter(t time.Time, limit time.Duration) time.Duration {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, a := range l.done {
			if a.at.After(t) {
				l.mu.Unlock()
				return a.at.Sub(t)
			}
		}
		l.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	return limit
}

// files uploads n DBFS files through the workspace URL, one after another,
// and measures, for each, the time from the upload's answer until the
// secondary serves its last bytes (polled every 5 ms).
func (b *bench) files(n, size int) ([]time.Duration, []string, map[string][]byte, time.Duration) {
	sec := b.d.Regions[1]
	var mu sync.Mutex
	var lags []time.Duration
	var wg sync.WaitGroup
	var paths []string
	data := map[string][]byte{}
	start := time.Now()
	for i := 0; i < n; i++ {
		buf := make([]byte, size)
		rand.Read(buf)
		p := fmt.Sprintf("/bench/file-%04d.bin", i)
		code, body, err := call(b.router, b.d.AdminToken, "POST", b.d.Router.URL+"/api/2.0/dbfs/put",
			map[string]any{"path": p, "overwrite": true, "contents": base64.StdEncoding.EncodeToString(buf)})
		if err != nil || code != 200 {
			log.Fatalf("dbfs put %s: %d %v %s", p, code, err, body)
		}
		acked := time.Now()
		paths, data[p] = append(paths, p), buf
		tail := buf[len(buf)-16:]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(acked) < 30*time.Second {
				if bytes.Equal(b.readTail(sec, p, size), tail) {
					mu.Lock()
					lags = append(lags, time.Since(acked))
					mu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	took := time.Since(start)
	wg.Wait()
	return lags, paths, data, took
}

// readTail reads a DBFS file's last 16 bytes from a region.
func (b *bench) readTail(r dr.DeploymentRegion, path string, size int) []byte {
	code, body, err := call(b.regions[r.Name], b.d.AdminToken, "GET", fmt.Sprintf("%s/api/2.0/dbfs/read?path=%s&offset=%d&length=16", r.URL, path, size-16), nil)
	if err != nil || code != 200 {
		return nil
	}
	var out struct {
		Data string `json:"data"`
	}
	json.Unmarshal(body, &out)
	got, _ := base64.StdEncoding.DecodeString(out.Data)
	return got
}

// filesMissing counts the files a region does not serve whole.
func (b *bench) filesMissing(region string, paths []string, data map[string][]byte) int {
	var r dr.DeploymentRegion
	for _, x := range b.d.Regions {
		if x.Name == region {
			r = x
		}
	}
	n := 0
	for _, p := range paths {
		code, body, err := call(b.regions[region], b.d.AdminToken, "GET", fmt.Sprintf("%s/api/2.0/dbfs/read?path=%s&length=%d", r.URL, p, len(data[p])), nil)
		var out struct {
			Data string `json:"data"`
		}
		json.Unmarshal(body, &out)
		got, _ := base64.StdEncoding.DecodeString(out.Data)
		if err != nil || code != 200 || !bytes.Equal(got, data[p]) {
			n++
		}
	}
	return n
}

// sampleLag reads a region's reported lag every 20 ms for d.
func (b *bench) sampleLag(region string, d time.Duration) []time.Duration {
	var out []time.Duration
	var r dr.DeploymentRegion
	for _, x := range b.d.Regions {
		if x.Name == region {
			r = x
		}
	}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		code, body, err := call(b.regions[region], b.d.AdminToken, "GET", r.URL+dr.StatusPath, nil)
		if err != nil || code != 200 {
			continue
		}
		var st dr.Status
		if json.Unmarshal(body, &st) == nil && st.LagSeconds != nil {
			out = append(out, time.Duration(*st.LagSeconds*float64(time.Second)))
		}
	}
	return out
}

// run runs a tandem dr command and returns its report and wall time.
func (b *bench) run(bin, depPath string, args ...string) (dr.Report, time.Duration) {
	start := time.Now()
	var out, stderr bytes.Buffer
	err := proc.Run(context.Background(), proc.Spec{Path: bin, Args: append(append([]string{"dr"}, args...), "--deployment", depPath, "--json"),
		Stdout: &out, Stderr: &stderr})
	wall := time.Since(start)
	var rep dr.Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		log.Fatalf("tandem dr %v: %v %v\n%s%s", args, err, jerr, out.Bytes(), stderr.Bytes())
	}
	return rep, wall
}

// missing counts the paths a region does not serve.
func (b *bench) missing(region string, paths []string) int {
	var r dr.DeploymentRegion
	for _, x := range b.d.Regions {
		if x.Name == region {
			r = x
		}
	}
	code, body, err := call(b.regions[region], b.d.AdminToken, "GET", r.URL+"/api/2.0/workspace/list?path=/Shared/bench", nil)
	if err != nil || code != 200 {
		log.Fatalf("list in %s: %d %v", region, code, err)
	}
	var list struct {
		Objects []struct {
			Path string `json:"path"`
		} `json:"objects"`
	}
	json.Unmarshal(body, &list)
	have := map[string]bool{}
	for _, o := range list.Objects {
		have[o.Path] = true
	}
	n := 0
	for _, p := range paths {
		if !have[p] {
			n++
		}
	}
	return n
}

func pct(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i].Round(100 * time.Microsecond).String()
}
