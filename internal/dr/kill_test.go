package dr_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/proc"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
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

// httpsClient trusts caFile.
func httpsClient(t *testing.T, caFile string) *http.Client {
	pool, err := pki.LoadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 16}}
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

// TestKillNineOfThePrimaryThenUnplannedFailover runs a real deployment
// (tandem up), writes through the workspace URL, pauses the secondary so the
// primary commits changes it never ships, kills the primary with SIGKILL in
// the middle of the writes and fails over with tandem dr failover
// --unplanned. Every change the primary had committed up to the secondary's
// last applied change is in the secondary, nothing after it is invented, and
// the primary, restarted, stays fenced and sets its tail aside.
func TestKillNineOfThePrimaryThenUnplannedFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin := tandemBin(t)
	dir := t.TempDir()
	upLog, _ := os.Create(filepath.Join(dir, "up.log"))
	defer upLog.Close()
	up, err := proc.Start(proc.Spec{Path: bin, Args: []string{"up", "--data-dir", filepath.Join(dir, "d"), "--listen", "127.0.0.1:0", "--rpo", "2s"},
		Stdout: upLog, Stderr: upLog})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Stop(20 * time.Second)
	depPath := filepath.Join(dir, "d", "deployment.json")
	var d *dr.Deployment
	waitFor(t, "tandem up", 3*time.Minute, func() bool {
		d, err = dr.LoadDeployment(depPath)
		return err == nil && d.Router.PID != 0
	})
	prim, sec := d.Regions[0], d.Regions[1]
	router := httpsClient(t, d.Router.CAFile)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{prim.LogFile, sec.LogFile} {
				b, _ := os.ReadFile(f)
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("%s:\n%s", f, b)
			}
		}
	})

	// Writers through the workspace URL, each path written once.
	var (
		mu    sync.Mutex
		acked []string
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters() // a failure before the writers are stopped does not leave them running
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("/Shared/kill/w%d-%05d", g, i)
				code, _, err := call(router, d.AdminToken, "POST", d.Router.URL+"/api/2.0/workspace/mkdirs", map[string]string{"path": p})
				if err == nil && code == 200 {
					mu.Lock()
					acked = append(acked, p)
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(time.Second)
	// The link is cut (the secondary paused), then the primary dies mid-stream.
	if err := syscall.Kill(sec.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(sec.PID, syscall.SIGCONT) // a stopped region would never stop
	time.Sleep(1500 * time.Millisecond)
	if err := syscall.Kill(prim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	stopWriters()
	syscall.Kill(sec.PID, syscall.SIGCONT)

	start := time.Now()
	var out, errOut bytes.Buffer
	err = proc.Run(ctx, proc.Spec{Path: bin, Args: []string{"dr", "failover", "--unplanned", "--deployment", depPath, "--json"}, Stdout: &out, Stderr: &errOut})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("tandem dr failover --unplanned: %v\n%s%s", err, out.Bytes(), errOut.Bytes())
	}
	var rep dr.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out.Bytes())
	}
	t.Logf("unplanned failover took %s (report %.3fs): %d changes known lost", took, rep.Seconds, rep.LostChanges)
	if rep.Outcome != "succeeded" || took > 30*time.Second {
		t.Fatalf("unplanned failover: %s in %s", rep.Outcome, took)
	}
	L := rep.LastAppliedSeq

	// The primary's own log (its store, as SIGKILL left it) says what it had
	// committed and when.
	pst, err := sqlstore.Open(ctx, filepath.Join(prim.DataDir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	seqOf := map[string]int64{}
	last, _ := pst.LastSeq(ctx)
	for after := int64(0); after < last; {
		cs, err := pst.Changes(ctx, after, 1000)
		if err != nil || len(cs) == 0 {
			t.Fatalf("read the primary's log: %v", err)
		}
		for _, c := range cs {
			for _, op := range c.Ops {
				var o struct {
					Path string `json:"path"`
				}
				if op.Kind == "workspace.object" && !op.Deleted() && json.Unmarshal(op.Value, &o) == nil && strings.HasPrefix(o.Path, "/Shared/kill/") {
					seqOf[o.Path] = c.Seq
				}
			}
		}
		after = cs[len(cs)-1].Seq
	}
	pst.Close()
	if last <= L {
		t.Fatalf("the primary had no tail (last %d, secondary applied %d): the pause did not work", last, L)
	}
	// Every acknowledged write was durable in the primary.
	for _, p := range acked {
		if _, ok := seqOf[p]; !ok {
			t.Errorf("acknowledged %s is not in the primary's log", p)
		}
	}
	// The secondary has exactly the primary's writes up to L.
	want := []string{}
	for p, seq := range seqOf {
		if seq <= L {
			want = append(want, p)
		}
	}
	sort.Strings(want)
	sc := httpsClient(t, sec.CAFile)
	code, body, err := call(sc, d.AdminToken, "GET", sec.URL+"/api/2.0/workspace/list?path=/Shared/kill", nil)
	if err != nil || code != 200 {
		t.Fatalf("list in the secondary: %d %s %v", code, body, err)
	}
	var list struct {
		Objects []struct {
			Path string `json:"path"`
		} `json:"objects"`
	}
	json.Unmarshal(body, &list)
	got := []string{}
	for _, o := range list.Objects {
		got = append(got, o.Path)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the secondary has %d of /Shared/kill, the primary had %d up to change %d", len(got), len(want), L)
	}
	lostAcked := 0
	for _, p := range acked {
		if seqOf[p] > L {
			lostAcked++
		}
	}
	t.Logf("%d writes acknowledged; the primary committed %d changes after the secondary's last (%d), %d of them acknowledged writes", len(acked), last-L, L, lostAcked)

	// The workspace URL serves writes again, from the secondary.
	waitFor(t, "a write through the workspace URL", 20*time.Second, func() bool {
		code, _, err := call(router, d.AdminToken, "POST", d.Router.URL+"/api/2.0/workspace/mkdirs", map[string]string{"path": "/Shared/after"})
		return err == nil && code == 200
	})

	// The primary comes back: fenced before its first write, tail set aside.
	plog, _ := os.OpenFile(prim.LogFile, os.O_APPEND|os.O_WRONLY, 0o600)
	defer plog.Close()
	back, err := proc.Start(proc.Spec{Path: bin, Args: []string{"server", "--config", prim.ConfigFile}, Stdout: plog, Stderr: plog})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Stop(15 * time.Second)
	pc := httpsClient(t, prim.CAFile)
	var st dr.Status
	var lastAnswer string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last status answer of the former primary: %s", lastAnswer)
		}
	})
	waitFor(t, "the former primary to rejoin", time.Minute, func() bool {
		code, body, err := call(pc, d.AdminToken, "GET", prim.URL+dr.StatusPath, nil)
		lastAnswer = fmt.Sprintf("%d %s %v", code, body, err)
		if err != nil || code != 200 {
			return false
		}
		st = dr.Status{}
		json.Unmarshal(body, &st)
		return st.Role == dr.Passive && st.Rejoin == nil && st.LastFence != nil
	})
	a := st.LastFence.SetAside
	if a == nil || a.FromSeq != L+1 || a.ToSeq != last || a.Changes != int(last-L) {
		t.Fatalf("set aside: %+v (L %d, last %d)", a, L, last)
	}
	if _, err := os.Stat(a.File); err != nil {
		t.Errorf("set-aside file: %v", err)
	}
	code, body, _ = call(pc, d.AdminToken, "POST", prim.URL+"/api/2.0/workspace/mkdirs", map[string]string{"path": "/Shared/split"})
	if code != 400 || !strings.Contains(string(body), "secondary") {
		t.Errorf("write on the returned primary: %d %s", code, body)
	}
}
