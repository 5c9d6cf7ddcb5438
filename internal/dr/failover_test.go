package dr_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/store"
)

func orchestrator(t *testing.T, regions map[string]*servertest.Server, progress *syncBuffer) *dr.Orchestrator {
	t.Helper()
	o := &dr.Orchestrator{Regions: map[string]dr.RegionAPI{}, CallTimeout: 10 * time.Second}
	if progress != nil {
		o.Progress = progress
	}
	for name, srv := range regions {
		c, err := dr.NewClient(srv.URL, srv.CAFile, srv.AdminToken)
		if err != nil {
			t.Fatal(err)
		}
		o.Regions[name] = c
	}
	return o
}

func pairRegions(p *servertest.Pair) map[string]*servertest.Server {
	return map[string]*servertest.Server{"primary": p.Primary, "secondary": p.Secondary}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func jobSettings(t *testing.T, srv *servertest.Server, id string) map[string]any {
	t.Helper()
	return must(t, srv.Do(srv.AdminToken, "GET", "/api/2.2/jobs/get?job_id="+id, nil), "job").JSON(t)["settings"].(map[string]any)
}

func pauseStatus(s map[string]any) any { return s["schedule"].(map[string]any)["pause_status"] }

func importNotebook(t *testing.T, srv *servertest.Server, path, src string) servertest.Response {
	return srv.Do(srv.AdminToken, "POST", "/api/2.0/workspace/import", map[string]any{"path": path, "language": "PYTHON",
		"content": base64.StdEncoding.EncodeToString([]byte(src))})
}

func TestPlannedFailoverAndFailbackLoseNothing(t *testing.T) {
	p := servertest.StartPair(t)
	s := seed(t, p.Primary)
	waitCaughtUp(t, p)

	var progress syncBuffer
	o := orchestrator(t, pairRegions(p), &progress)
	rep, err := o.Run(ctx, dr.Plan{Kind: dr.PlannedFailover, From: "primary", To: "secondary", Smoke: true})
	if err != nil {
		t.Fatalf("planned failover: %v\n%s", err, progress.String())
	}
	if rep.Outcome != "succeeded" || rep.LostChanges != 0 || rep.EpochBefore != 1 || rep.EpochAfter != 2 || rep.RTOSeconds <= 0 {
		t.Errorf("report: %+v", rep)
	}
	if !strings.Contains(rep.Smoke, "run ") {
		t.Errorf("smoke: %q", rep.Smoke)
	}
	t.Logf("planned failover:\n%s", progress.String())

	// The secondary leads with the primary's real job settings; the former
	// primary follows it, in the passive posture, and refuses writes.
	if js := jobSettings(t, p.Secondary, s.jobID); js["max_concurrent_runs"] != 3.0 || pauseStatus(js) != "UNPAUSED" {
		t.Errorf("job in the promoted secondary: %v", js)
	}
	ss, ps := status(t, p.Secondary), status(t, p.Primary)
	if ss.Role != dr.Active || ss.Epoch != 2 || ps.Role != dr.Passive || ps.ActiveRegion != "secondary" || ps.Epoch != 2 {
		t.Fatalf("after failover: secondary %s@%d, primary %s@%d following %s", ss.Role, ss.Epoch, ps.Role, ps.Epoch, ps.ActiveRegion)
	}
	if ps.LastFence == nil || !ps.LastFence.Planned || ps.LastFence.SetAside != nil {
		t.Errorf("the former primary's fence: %+v", ps.LastFence)
	}
	r := importNotebook(t, p.Primary, "/Shared/after", "x=1")
	if r.Status != 400 || !strings.Contains(string(r.Body), "secondary") {
		t.Errorf("write on the former primary: %d %s", r.Status, r.Body)
	}
	// Work done during the "outage" reaches the former primary.
	must(t, importNotebook(t, p.Secondary, "/Shared/during-outage", "print('written in the secondary')"), "import in the secondary")
	must(t, p.Secondary.Do(p.Secondary.AdminToken, "POST", "/api/2.0/secrets/put", map[string]string{"scope": "warehouse", "key": "rotated", "string_value": "v2"}), "secret")
	waitFor(t, "the former primary to catch up", 20*time.Second, func() bool {
		a, _ := p.Secondary.RawStore.LastSeq(ctx)
		b, _ := p.Primary.RawStore.LastSeq(ctx)
		return a == b
	})
	if js := jobSettings(t, p.Primary, s.jobID); js["max_concurrent_runs"] != 0.0 || pauseStatus(js) != "PAUSED" {
		t.Errorf("job in the former primary, now passive: %v", js)
	}

	// Failback: service moves back with nothing lost.
	progress = syncBuffer{}
	rep, err = o.Run(ctx, dr.Plan{Kind: dr.Failback, From: "secondary", To: "primary"})
	if err != nil {
		t.Fatalf("failback: %v\n%s", err, progress.String())
	}
	t.Logf("failback:\n%s", progress.String())
	if rep.Outcome != "succeeded" || rep.LostChanges != 0 || rep.EpochAfter != 3 {
		t.Errorf("failback report: %+v", rep)
	}
	ps, ss = status(t, p.Primary), status(t, p.Secondary)
	if ps.Role != dr.Active || ps.Epoch != 3 {
		t.Fatalf("after failback the primary is %s@%d", ps.Role, ps.Epoch)
	}
	waitFor(t, "the secondary to follow again", 10*time.Second, func() bool {
		st := status(t, p.Secondary)
		return st.Role == dr.Passive && st.ActiveRegion == "primary" && st.Rejoin == nil
	})
	must(t, p.Primary.Do(p.Primary.AdminToken, "GET", "/api/2.0/workspace/get-status?path=/Shared/during-outage", nil), "notebook written during the outage")
	got := must(t, p.Primary.Do(p.Primary.AdminToken, "GET", "/api/2.0/secrets/get?scope=warehouse&key=password", nil), "secret").JSON(t)
	if v, _ := base64.StdEncoding.DecodeString(fmt.Sprint(got["value"])); string(v) != secretValue {
		t.Errorf("secret after failback = %q", v)
	}
	if js := jobSettings(t, p.Primary, s.jobID); js["max_concurrent_runs"] != 3.0 || pauseStatus(js) != "UNPAUSED" {
		t.Errorf("job in the primary after failback: %v", js)
	}
	terms := status(t, p.Primary).Terms
	if len(terms) != 3 || terms[1].Region != "secondary" || terms[2].Region != "primary" || !terms[1].Planned {
		t.Errorf("terms: %+v", terms)
	}
	// Both reports are kept, in both regions.
	c, _ := dr.NewClient(p.Secondary.URL, p.Secondary.CAFile, p.Secondary.AdminToken)
	waitFor(t, "reports replicated", 10*time.Second, func() bool {
		rs, err := c.Reports(ctx)
		return err == nil && len(rs) == 2
	})
}

func TestUnplannedFailoverFencesTheReturningPrimary(t *testing.T) {
	p := servertest.StartPair(t)
	s := seed(t, p.Primary)
	waitCaughtUp(t, p)
	common, _ := p.Secondary.RawStore.LastSeq(ctx)

	// The secondary goes away; the primary takes writes it never sends.
	p.Secondary.Close()
	for i := 0; i < 5; i++ {
		must(t, importNotebook(t, p.Primary, fmt.Sprintf("/Shared/lost-%d", i), "x=1"), "write to lose")
	}
	tail, _ := p.Primary.RawStore.LastSeq(ctx)
	p.Primary.Close()

	// The secondary comes back alone and is promoted at once.
	sec := servertest.Start(t, p.SecondaryOpts...)
	o := orchestrator(t, map[string]*servertest.Server{"primary": p.Primary, "secondary": sec}, nil)
	rep, err := o.Run(ctx, dr.Plan{Kind: dr.UnplannedFailover, From: "primary", To: "secondary", Smoke: true})
	if err != nil {
		t.Fatalf("unplanned failover: %v", err)
	}
	if rep.Outcome != "succeeded" || rep.EpochAfter != 2 || rep.LastAppliedSeq != common {
		t.Errorf("report: %+v", rep)
	}
	// Nothing after the last applied change was invented in the secondary.
	for i := 0; i < 5; i++ {
		if r := sec.Do(sec.AdminToken, "GET", fmt.Sprintf("/api/2.0/workspace/get-status?path=/Shared/lost-%d", i), nil); r.Status != 404 {
			t.Errorf("lost-%d exists in the secondary: %d", i, r.Status)
		}
	}
	must(t, importNotebook(t, sec, "/Shared/new-era", "y=2"), "write in the new primary")

	// The former primary comes back: it sees epoch 2 before taking any
	// write, sets its tail aside and follows.
	prim := servertest.Start(t, p.PrimaryOpts...)
	r := importNotebook(t, prim, "/Shared/split-brain", "z=3")
	if r.Status < 400 {
		t.Fatalf("the returning primary accepted a write: %d %s", r.Status, r.Body)
	}
	var ps dr.Status
	waitFor(t, "the former primary to rejoin", 20*time.Second, func() bool {
		ps = status(t, prim)
		return ps.Role == dr.Passive && ps.Rejoin == nil && ps.LastFence != nil
	})
	f := ps.LastFence
	if f.Planned || f.FromEpoch != 1 || f.ToEpoch != 2 || f.By != "secondary" || f.CommonSeq != common || f.SetAside == nil {
		t.Fatalf("fence: %+v", f)
	}
	if a := f.SetAside; a.FromSeq != common+1 || a.ToSeq != tail || a.Changes != int(tail-common) || a.Kinds["workspace.object"] < 5 {
		t.Errorf("set aside: %+v (common %d, tail %d)", a, common, tail)
	}
	// The set-aside file holds the lost changes whole.
	b, err := os.ReadFile(f.SetAside.File)
	if err != nil {
		t.Fatal(err)
	}
	var aside struct {
		Changes []store.Change `json:"changes"`
	}
	json.Unmarshal(b, &aside)
	if len(aside.Changes) != int(tail-common) || !bytes.Contains(b, []byte("/Shared/lost-4")) {
		t.Errorf("set-aside file has %d changes", len(aside.Changes))
	}
	// The tail is gone from the former primary, the new era has arrived,
	// and it stays fenced: writes refused, its job paused.
	waitFor(t, "the new era to reach the former primary", 20*time.Second, func() bool {
		return prim.Do(prim.AdminToken, "GET", "/api/2.0/workspace/get-status?path=/Shared/new-era", nil).Status == 200
	})
	if r := prim.Do(prim.AdminToken, "GET", "/api/2.0/workspace/get-status?path=/Shared/lost-0", nil); r.Status != 404 {
		t.Errorf("the set-aside notebook is still in the former primary: %d", r.Status)
	}
	if r := importNotebook(t, prim, "/Shared/split-brain", "z=3"); r.Status != 400 {
		t.Errorf("write on the fenced primary: %d %s", r.Status, r.Body)
	}
	if js := jobSettings(t, prim, s.jobID); pauseStatus(js) != "PAUSED" {
		t.Errorf("the fenced primary's job is not paused: %v", js)
	}
	st := status(t, prim)
	found := false
	for _, e := range st.Events {
		found = found || e.Type == "changes_set_aside"
	}
	if !found {
		t.Errorf("no changes_set_aside event: %+v", st.Events)
	}
}

func TestFailoverStartedTwiceDoesTheWorkOnce(t *testing.T) {
	p := servertest.StartPair(t)
	seed(t, p.Primary)
	waitCaughtUp(t, p)
	var wg sync.WaitGroup
	reports := make([]dr.Report, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := orchestrator(t, pairRegions(p), nil)
			reports[i], errs[i] = o.Run(ctx, dr.Plan{Kind: dr.PlannedFailover, From: "primary", To: "secondary", Holder: fmt.Sprintf("run-%d", i)})
		}()
	}
	wg.Wait()
	outcomes := map[string]int{}
	for i := range 2 {
		if errs[i] != nil {
			t.Errorf("run %d: %v", i, errs[i])
		}
		outcomes[reports[i].Outcome]++
	}
	if outcomes["succeeded"] != 1 || outcomes["already-done"] != 1 {
		t.Errorf("outcomes: %v", outcomes)
	}
	terms := status(t, p.Secondary).Terms
	if len(terms) != 2 || terms[1].Epoch != 2 {
		t.Errorf("terms after two runs: %+v", terms)
	}
}
