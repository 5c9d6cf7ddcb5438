package dr

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunbookScenarios replays the scripts in testdata/runbook: each says
// what the runbook must ask for (expect), what it observes (give) and what
// its report must say (report). See testdata/runbook/README.
func TestRunbookScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/runbook/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

func runScenario(t *testing.T, path string) {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	now := t0
	var m *Machine
	var act Action
	started := false
	sc := bufio.NewScanner(fh)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d: %s", filepath.Base(path), line, text)
		verb, rest, _ := strings.Cut(text, " ")
		args := fields(rest)
		switch verb {
		case "plan":
			m = NewMachine(parsePlan(t, where, args))
		case "at":
			secs, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			now = t0.Add(time.Duration(secs * float64(time.Second)))
		case "expect":
			if !started {
				act, started = m.Start(now), true
			}
			checkAction(t, where, act, args)
		case "give":
			act = m.Next(parseObservation(t, where, rest), now)
		case "report":
			checkReport(t, where, m.Report("id", now), args)
		default:
			t.Fatalf("%s: unknown verb %q", where, verb)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// fields splits "a b=c d" into positional words and key=value pairs, kept
// in order as "a", "b=c", "d". A value may be quoted with ~ to the end of
// the line: reason~some words.
func fields(s string) []string {
	if i := strings.Index(s, "~"); i >= 0 {
		head := strings.Fields(s[:i])
		last := ""
		if len(head) > 0 {
			last = head[len(head)-1]
			head = head[:len(head)-1]
		}
		return append(head, last+"~"+s[i+1:])
	}
	return strings.Fields(s)
}

func kv(args []string) (pos []string, m map[string]string) {
	m = map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "~"); ok && !strings.Contains(k, "=") {
			m[k+"~"] = v
			continue
		}
		if k, v, ok := strings.Cut(a, "="); ok {
			m[k] = v
			continue
		}
		pos = append(pos, a)
	}
	return pos, m
}

func dur(t *testing.T, where, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return d
}

func i64(t *testing.T, where, s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return n
}

func parsePlan(t *testing.T, where string, args []string) Plan {
	pos, m := kv(args)
	p := Plan{Kind: Kind(m["kind"]), From: m["from"], To: m["to"], Holder: m["holder"]}
	for _, f := range pos {
		switch f {
		case "router":
			p.Router = true
		case "smoke":
			p.Smoke = true
		case "cancel":
			p.CancelRunning = true
		case "start-clusters":
			p.StartClusters = true
		case "force":
			p.Force = true
		default:
			t.Fatalf("%s: unknown plan flag %q", where, f)
		}
	}
	if v, ok := m["drain-timeout"]; ok {
		p.DrainTimeout = dur(t, where, v)
	}
	if v, ok := m["catch-up-timeout"]; ok {
		p.CatchUpTimeout = dur(t, where, v)
	}
	if v, ok := m["max-lag"]; ok {
		p.MaxLag = i64(t, where, v)
	}
	return p
}

func checkAction(t *testing.T, where string, a Action, args []string) {
	t.Helper()
	pos, m := kv(args)
	if len(pos) == 0 {
		t.Fatalf("%s: expect what?", where)
	}
	kind := ActionKind(pos[0])
	if a.Kind != kind {
		t.Fatalf("%s: the runbook asks for %s %s (%+v)", where, a.Kind, a.Region, a)
	}
	want := Action{Kind: kind}
	for _, f := range pos[1:] {
		switch f {
		case "assets":
			want.Assets = true
		case "release":
			want.Release = true
		case "cancel":
			want.Cancel = true
		case "planned":
			want.Planned = true
		case "start-clusters":
			want.StartClusters = true
		default:
			want.Region = f
		}
	}
	want.To = m["to"]
	if v, ok := m["expect"]; ok {
		want.ExpectSeq = i64(t, where, v)
	}
	got := a
	got.After, got.Reason = 0, ""
	if kind == ActDone || kind == ActFail {
		got, want = Action{Kind: kind}, Action{Kind: kind}
	}
	if got != want {
		t.Fatalf("%s: the runbook asks for %+v", where, a)
	}
	if v, ok := m["after"]; ok && a.After != dur(t, where, v) {
		t.Fatalf("%s: after %s, want %s", where, a.After, v)
	}
	if v, ok := m["reason~"]; ok && !strings.Contains(a.Reason, v) {
		t.Fatalf("%s: reason %q does not contain %q", where, a.Reason, v)
	}
}

func parseAssets(t *testing.T, where, s string) map[string]int {
	out := map[string]int{}
	for _, p := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(p, ":")
		if !ok {
			t.Fatalf("%s: assets are name:count,...", where)
		}
		out[k] = int(i64(t, where, v))
	}
	return out
}

func parseObservation(t *testing.T, where, rest string) Observation {
	what, args, _ := strings.Cut(rest, " ")
	var o Observation
	switch what {
	case "ok":
	case "err":
		o.Err = args
	case "probe":
		o.Reachable = args == "up"
	case "held":
		o.LeaseHolder = args
	case "smoke":
		o.Smoke = args
	default:
		pos, m := kv(strings.Fields(args))
		if len(pos) > 0 {
			t.Fatalf("%s: unexpected %v", where, pos)
		}
		num := func(k string) int64 {
			if v, ok := m[k]; ok {
				return i64(t, where, v)
			}
			return 0
		}
		switch what {
		case "status":
			s := &Status{Role: Role(m["role"]), Epoch: num("epoch"), ActiveRegion: m["active"], LastSeq: num("seq"), LastTime: num("time")}
			if v, ok := m["lag"]; ok {
				f, _ := strconv.ParseFloat(v, 64)
				s.LagSeconds = &f
			}
			if v, ok := m["rejoin"]; ok {
				s.Rejoin = &Rejoin{Leader: v}
			}
			if v, ok := m["assets"]; ok {
				s.Assets = parseAssets(t, where, v)
			}
			if _, ok := m["following"]; ok {
				s.Replication = &ReplicationStatus{Leader: m["following"]}
			}
			if _, ok := m["storage"]; ok {
				s.Storage = &StorageSync{Geo: true, Backlog: int(num("storage"))}
			}
			o.Status = s
		case "drain":
			o.Drain = &DrainResult{Role: Draining, ActiveWork: int(num("work")), Cancelled: int(num("cancelled"))}
		case "seal":
			o.Seal = &SealResult{Role: Sealed, LastSeq: num("seq")}
			if v, ok := m["assets"]; ok {
				o.Seal.Assets = parseAssets(t, where, v)
			}
			if _, ok := m["storage"]; ok {
				o.Seal.Storage = &StorageSync{Geo: true, Backlog: int(num("storage"))}
			}
		case "promote":
			o.Promote = &PromoteResult{Epoch: num("epoch"), AppliedSeq: num("applied"), StartSeq: num("applied") + 1,
				LeaderSeq: max(num("leader"), num("applied")), LeaderContact: num("contact"), AlreadyActive: m["already"] == "true"}
			o.Promote.LostChanges = o.Promote.LeaderSeq - o.Promote.AppliedSeq
			o.Promote.StartedClusters = int(num("started"))
			o.Promote.StartClustersError = m["clusters-error"]
		case "router":
			o.Router = &RouterStatus{ActiveRegion: m["active"], Epoch: num("epoch")}
		default:
			t.Fatalf("%s: unknown observation %q", where, what)
		}
	}
	return o
}

func checkReport(t *testing.T, where string, r Report, args []string) {
	t.Helper()
	_, m := kv(args)
	for k, v := range m {
		var got string
		switch k {
		case "outcome":
			got = r.Outcome
		case "lost":
			got = fmt.Sprint(r.LostChanges)
		case "epoch_after":
			got = fmt.Sprint(r.EpochAfter)
		case "rto":
			got = fmt.Sprintf("%.1f", r.RTOSeconds)
		case "rpo":
			got = fmt.Sprintf("%.1f", r.RPOSeconds)
		case "steps":
			var names []string
			for _, s := range r.Steps {
				names = append(names, s.Name)
			}
			got = strings.Join(names, ",")
		case "error~":
			if !strings.Contains(r.Error, v) {
				t.Errorf("%s: error %q does not contain %q", where, r.Error, v)
			}
			continue
		case "detail~":
			found := false
			for _, s := range r.Steps {
				found = found || strings.Contains(s.Detail, v)
			}
			if !found {
				t.Errorf("%s: no step details %q: %+v", where, v, r.Steps)
			}
			continue
		case "warning~":
			found := false
			for _, s := range r.Steps {
				found = found || strings.Contains(s.Warning, v)
			}
			if !found {
				t.Errorf("%s: no step warns %q: %+v", where, v, r.Steps)
			}
			continue
		default:
			t.Fatalf("%s: unknown report field %q", where, k)
		}
		if got != v {
			t.Errorf("%s: %s = %s, want %s", where, k, got, v)
		}
	}
}
