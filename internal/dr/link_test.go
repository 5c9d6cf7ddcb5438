package dr_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// linkProxy stands between the secondary and the primary. Refuse closes
// every connection and refuses new ones (a port closed by a firewall with
// RST); Blackhole keeps connections open but drops the bytes (packets
// dropped silently: the caller hangs); Heal restores the link.
type linkProxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	mode  string // "", "refuse", "blackhole"
	conns map[net.Conn]bool
}

func newLinkProxy(t *testing.T, listen, target string) *linkProxy {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	go p.accept()
	t.Cleanup(func() {
		l.Close()
		p.closeAll()
	})
	return p
}

func (p *linkProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		if mode == "refuse" {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *linkProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for {
			p.mu.Lock()
			mode := p.mode
			p.mu.Unlock()
			if mode != "blackhole" {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

func (p *linkProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *linkProxy) set(mode string) {
	p.mu.Lock()
	p.mode = mode
	p.mu.Unlock()
	if mode == "refuse" {
		p.closeAll()
	}
}

func countEvents(st dr.Status, typ string) int {
	n := 0
	for _, e := range st.Events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func TestCutReplicationLinkHeals(t *testing.T) {
	pair := servertest.NewPair(t)
	pair.SecondaryDials = servertest.FreeAddr(t)
	proxy := newLinkProxy(t, pair.SecondaryDials, pair.PrimaryAddr)
	pair.Start(t, servertest.WithConfig(func(c *config.Config) { c.DR.RPO = "1s" }))
	seed(t, pair.Primary)
	waitCaughtUp(t, pair)

	for round, mode := range []string{"refuse", "blackhole"} {
		t.Run(mode, func(t *testing.T) {
			proxy.set(mode)
			// Writes go on in the primary while the link is cut.
			for i := 0; i < 20; i++ {
				must(t, importNotebook(t, pair.Primary, "/Shared/cut-"+mode+"-"+string(rune('a'+i)), "x=1"), "write during the cut")
			}
			var st dr.Status
			waitFor(t, "the secondary to report the link down and the RPO exceeded", 20*time.Second, func() bool {
				st = status(t, pair.Secondary)
				return st.Replication != nil && !st.Replication.LinkUp && st.RPOExceeded && *st.LagSeconds > 1
			})
			if countEvents(st, "rpo_exceeded") != round+1 {
				t.Errorf("no rpo_exceeded event: %+v", st.Events)
			}
			m := string(pair.Secondary.Do(pair.Secondary.AdminToken, "GET", "/metrics", nil).Body)
			if !strings.Contains(m, "tandem_dr_rpo_exceeded 1") || !strings.Contains(m, "tandem_dr_replication_lag_seconds") {
				t.Errorf("metrics during the cut:\n%s", grepLines(m, "tandem_dr_"))
			}
			// The primary sees it too, from its side.
			if ps := status(t, pair.Primary); ps.LagChanges == nil || *ps.LagChanges == 0 {
				t.Errorf("the primary does not see the lag: %+v", ps.LagChanges)
			}

			proxy.set("")
			waitCaughtUp(t, pair)
			waitFor(t, "the link and the RPO to recover", 20*time.Second, func() bool {
				st = status(t, pair.Secondary)
				return st.Replication.LinkUp && !st.RPOExceeded && countEvents(st, "rpo_recovered") == round+1
			})
			r := pair.Secondary.Do(pair.Secondary.AdminToken, "GET", "/api/2.0/workspace/get-status?path=/Shared/cut-"+mode+"-t", nil)
			if r.Status != 200 {
				t.Errorf("the last write of the cut is missing after it healed: %d", r.Status)
			}
			if st.Replication.FailedCalls == 0 {
				t.Errorf("no failed call recorded during the cut")
			}
		})
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPartitionedPrimaryIsFencedWhileRunning cuts the secondary off the
// primary (the primary stays up and takes writes, among them a new token
// that is used at once), promotes the secondary, and lets the primary see
// the new epoch on its own: it stops taking writes, sets its tail aside and
// forgets the token the new leader never knew.
func TestPartitionedPrimaryIsFencedWhileRunning(t *testing.T) {
	pair := servertest.NewPair(t)
	pair.SecondaryDials = servertest.FreeAddr(t)
	proxy := newLinkProxy(t, pair.SecondaryDials, pair.PrimaryAddr)
	pair.Start(t)
	seed(t, pair.Primary)
	waitCaughtUp(t, pair)

	proxy.set("refuse")
	must(t, importNotebook(t, pair.Primary, "/Shared/tail", "x=1"), "write in the tail")
	tok := must(t, pair.Primary.Do(pair.Primary.AdminToken, "POST", "/api/2.0/token/create", map[string]string{"comment": "tail"}), "token").JSON(t)["token_value"].(string)
	must(t, pair.Primary.Do(tok, "GET", "/api/2.0/preview/scim/v2/Me", nil), "the new token works (and is cached)")

	o := orchestrator(t, pairRegions(pair), nil)
	rep, err := o.Run(ctx, dr.Plan{Kind: dr.UnplannedFailover, From: "primary", To: "secondary", Force: true})
	if err != nil || rep.EpochAfter != 2 {
		t.Fatalf("forced unplanned failover: %v %+v", err, rep)
	}
	var st dr.Status
	waitFor(t, "the partitioned primary to fence itself and rejoin", 20*time.Second, func() bool {
		st = status(t, pair.Primary)
		return st.Role == dr.Passive && st.Rejoin == nil && st.LastFence != nil && st.LastFence.SetAside != nil
	})
	if r := importNotebook(t, pair.Primary, "/Shared/split-brain", "y"); r.Status != 400 {
		t.Errorf("write on the fenced primary: %d %s", r.Status, r.Body)
	}
	if r := pair.Primary.Do(tok, "GET", "/api/2.0/preview/scim/v2/Me", nil); r.Status != 401 {
		t.Errorf("the token made in the set-aside tail still works on the fenced primary: %d", r.Status)
	}
	if r := pair.Primary.Do(pair.Primary.AdminToken, "GET", "/api/2.0/workspace/get-status?path=/Shared/tail", nil); r.Status != 404 {
		t.Errorf("the set-aside notebook is still there: %d", r.Status)
	}
	proxy.set("")
}
