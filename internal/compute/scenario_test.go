package compute

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// TestScenarios replays the cluster state machine's scripted scenarios in
// testdata/scenarios: each is a story of a cluster, read like a runbook.
//
//	cluster state=PENDING workers=2 [gen=1] [op=create] [autoterminate=10] [since=0]
//	node ID driver|worker [gen=N]     an instance joins the cluster
//	report ID phase=running [master=URL] [registered] [failure=CODE] [message=TEXT] [scripts=global:SUCCEEDED,cluster:FAILED_EXECUTION]
//	lose ID | launchfail ID           heartbeats stop / the provider failed
//	set state=RESTARTING gen=+1 workers=3 release-first=ID,...   what an API call (or the autoscaler) does
//	time +SECONDS | busy | idle
//	step                              one planning step, whose effects are applied
//	expect state=RUNNING events=A,B need-driver=false need-workers=1 release=ID,... lost=ID,... reassign=ID,... result=startResult:ok reason=CODE
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

type scenario struct {
	c     Cluster
	nodes map[string]*NodeView
	order []string
	now   int64
	busy  bool
	last  Step
}

func runScenario(t *testing.T, path string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := &scenario{nodes: map[string]*NodeView{}, now: 1_000_000}
	sc.c = Cluster{ID: "c1", State: Pending, Generation: 1}
	lines := bufio.NewScanner(f)
	n := 0
	for lines.Scan() {
		n++
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := sc.do(line); err != nil {
			t.Fatalf("%s:%d: %s: %v", filepath.Base(path), n, line, err)
		}
	}
}

// args splits "k=v" words (a bare word is k=true); message= takes the rest.
func args(words []string) map[string]string {
	m := map[string]string{}
	for i, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			v = "true"
		}
		if k == "message" {
			v = strings.Join(append([]string{v}, words[i+1:]...), " ")
			m[k] = v
			break
		}
		m[k] = v
	}
	return m
}

func (sc *scenario) do(line string) error {
	words := strings.Fields(line)
	cmd, rest := words[0], words[1:]
	switch cmd {
	case "cluster", "set":
		a := args(rest)
		for k, v := range a {
			switch k {
			case "state":
				sc.c.State = v
				sc.c.StateSince = sc.now
			case "workers":
				sc.c.TargetWorkers, _ = strconv.Atoi(v)
			case "gen":
				if strings.HasPrefix(v, "+") {
					d, _ := strconv.Atoi(v[1:])
					sc.c.Generation += int64(d)
				} else {
					sc.c.Generation, _ = strconv.ParseInt(v, 10, 64)
				}
			case "op":
				sc.c.Op, sc.c.OpRequest, sc.c.OpUser = v, "req-"+v, "ada@example.com"
			case "autoterminate":
				sc.c.Spec.AutoterminationMinutes, _ = strconv.Atoi(v)
			case "reason":
				sc.c.Reason = &TerminationReason{Code: v}
			case "release-first":
				sc.c.ReleaseFirst = strings.Split(v, ",")
			default:
				return fmt.Errorf("unknown cluster field %s", k)
			}
		}
	case "node":
		if len(rest) < 2 {
			return fmt.Errorf("node ID ROLE")
		}
		id, role := rest[0], rest[1]
		v := &NodeView{ID: id, Role: role, ClusterGen: sc.c.Generation, Assigned: sc.now}
		if g, ok := args(rest[2:])["gen"]; ok {
			v.ClusterGen, _ = strconv.ParseInt(g, 10, 64)
		}
		sc.nodes[id] = v
		sc.order = append(sc.order, id)
	case "report":
		v, ok := sc.nodes[rest[0]]
		if !ok {
			return fmt.Errorf("no node %s", rest[0])
		}
		a := args(rest[1:])
		v.Phase = a["phase"]
		v.MasterURL = a["master"]
		v.Registered = a["registered"] == "true"
		v.FailureCode, v.Message = a["failure"], a["message"]
		v.InitScripts = nil
		if s := a["scripts"]; s != "" {
			for _, item := range strings.Split(s, ",") {
				src, status, _ := strings.Cut(item, ":")
				v.InitScripts = append(v.InitScripts, wire.ScriptResult{Source: src, Kind: "workspace", Name: "/init/" + src + ".sh", Status: status, DurationMs: 1500})
			}
		}
	case "lose":
		sc.nodes[rest[0]].Lost = true
	case "launchfail":
		sc.nodes[rest[0]].LaunchFailed = true
		sc.nodes[rest[0]].LaunchError = "no capacity"
	case "time":
		d, err := strconv.Atoi(strings.TrimPrefix(rest[0], "+"))
		if err != nil {
			return err
		}
		sc.now += int64(d) * 1000
	case "busy":
		sc.busy = true
	case "idle":
		sc.busy = false
	case "step":
		sc.step()
	case "expect":
		return sc.expect(args(rest))
	default:
		return fmt.Errorf("unknown command %s", cmd)
	}
	return nil
}

// step plans and applies the plan's effects as the reconciler would.
func (sc *scenario) step() {
	var views []NodeView
	for _, id := range sc.order {
		views = append(views, *sc.nodes[id])
	}
	st := step(sc.c, views, Input{Now: sc.now, Busy: sc.busy, ContextID: 42, MaxLaunchFailures: 3})
	sc.last = st
	sc.c = st.Cluster
	gone := append(append([]string(nil), st.Lost...), st.Release...)
	for _, id := range gone {
		delete(sc.nodes, id)
	}
	sc.order = slices.DeleteFunc(sc.order, func(id string) bool { return slices.Contains(gone, id) })
	for _, id := range st.Reassign {
		if v, ok := sc.nodes[id]; ok {
			v.ClusterGen, v.Phase, v.Registered, v.MasterURL = sc.c.Generation, "", false, ""
		}
	}
}

func (sc *scenario) expect(a map[string]string) error {
	st := sc.last
	var evs []string
	for _, e := range st.Events {
		evs = append(evs, e.Type)
	}
	list := func(s []string) string {
		c := append([]string(nil), s...)
		sort.Strings(c)
		return strings.Join(c, ",")
	}
	sorted := func(v string) string {
		if v == "" || v == "-" {
			return ""
		}
		return list(strings.Split(v, ","))
	}
	for k, want := range a {
		var got string
		switch k {
		case "state":
			got = sc.c.State
		case "events":
			got, want = strings.Join(evs, ","), strings.TrimPrefix(want, "-")
		case "need-driver":
			got = strconv.FormatBool(st.NeedDriver)
		case "need-workers":
			got = strconv.Itoa(st.NeedWorkers)
		case "release":
			got, want = list(st.Release), sorted(want)
		case "lost":
			got, want = list(st.Lost), sorted(want)
		case "reassign":
			got, want = list(st.Reassign), sorted(want)
		case "gen":
			got = strconv.FormatInt(sc.c.Generation, 10)
		case "result":
			if st.Result == nil {
				got = "-"
			} else if st.Result.OK {
				got = st.Result.Action + ":ok"
			} else {
				got = st.Result.Action + ":fail"
			}
		case "reason":
			if sc.c.Reason != nil {
				got = sc.c.Reason.Code
			}
		case "message":
			if !strings.Contains(sc.c.StateMessage, want) {
				return fmt.Errorf("state message %q does not contain %q", sc.c.StateMessage, want)
			}
			continue
		default:
			return fmt.Errorf("unknown expectation %s", k)
		}
		if got != want {
			return fmt.Errorf("%s = %q, want %q (events %v)", k, got, want, evs)
		}
	}
	return nil
}
