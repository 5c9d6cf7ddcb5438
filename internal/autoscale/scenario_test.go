package autoscale

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestScenarios replays the scripted scenarios in testdata/scenarios: each
// gives a policy's spec, the cluster as observed tick after tick, and the
// decision expected at some ticks. testdata/scenarios/README.md explains the
// format. Every decision taken is also checked to be one a caller can carry
// out.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, f := range files {
		scenarios, err := parseScenarios(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range scenarios {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".txt")+"/"+sc.title, func(t *testing.T) { sc.run(t) })
		}
	}
}

var scenarioEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type scenario struct {
	title string
	spec  Spec
	ticks []scenarioTick
}

type scenarioTick struct {
	line    int
	at      time.Duration
	pending int
	backlog int
	workers []scenarioWorker // nil: same workers as the tick before
	expects []scenarioExpect
}

type scenarioWorker struct {
	id      WorkerID
	state   WorkerState
	tasks   int
	slots   int
	shuffle int64
	idleFor *time.Duration
}

type scenarioExpect struct {
	line   int
	hold   bool
	target int
	remove []WorkerID
}

func (sc scenario) run(t *testing.T) {
	p, err := New(sc.spec)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	var h History
	idleSince := map[WorkerID]time.Time{}
	var workers []scenarioWorker
	for _, tk := range sc.ticks {
		now := scenarioEpoch.Add(tk.at)
		fresh := tk.workers != nil
		if fresh {
			workers = tk.workers
		}
		s := Snapshot{Time: now, PendingTasks: tk.pending, StageBacklog: tk.backlog}
		seen := map[WorkerID]bool{}
		for _, w := range workers {
			seen[w.id] = true
			slots := w.slots
			if slots == 0 {
				slots = sc.spec.slots()
			}
			sw := Worker{ID: w.id, State: w.state, Slots: slots, ActiveTasks: w.tasks, ShuffleBytes: w.shuffle}
			// A worker is idle since the first tick it was seen idle, unless
			// the scenario says for how long it has been idle.
			switch {
			case w.state == Starting || w.tasks > 0:
				delete(idleSince, w.id)
			case w.idleFor != nil && fresh:
				idleSince[w.id] = now.Add(-*w.idleFor)
			case idleSince[w.id].IsZero():
				idleSince[w.id] = now
			}
			sw.IdleSince = idleSince[w.id]
			s.Workers = append(s.Workers, sw)
		}
		for id := range idleSince {
			if !seen[id] {
				delete(idleSince, id)
			}
		}
		d := p.Decide(s, h, now)
		if err := d.Check(s); err != nil {
			t.Fatalf("line %d (at %s): %v (decision %+v)", tk.line, tk.at, err, d)
		}
		for _, e := range tk.expects {
			want := Decision{Target: e.target, Remove: e.remove}
			if e.hold {
				want = Decision{Target: s.Size()}
			}
			got := Decision{Target: d.Target, Remove: d.Remove}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b []WorkerID) bool { return fmt.Sprint(a) == fmt.Sprint(b) })); diff != "" {
				t.Errorf("line %d (at %s): decision differs (-want +got):\n%s\nreason: %q", e.line, tk.at, diff, d.Reason)
			}
			if d.Step(s) != 0 && d.Reason == "" {
				t.Errorf("line %d (at %s): a resize without a reason", e.line, tk.at)
			}
		}
		h = append(h, Record{Snapshot: s, Decision: d})
	}
}

func parseScenarios(path string) ([]scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		out  []scenario
		cur  *scenario
		tick *scenarioTick
	)
	fail := func(line int, format string, args ...any) ([]scenario, error) {
		return nil, fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		if i := strings.Index(raw, "#"); i >= 0 {
			raw = raw[:i]
		}
		fields := strings.Fields(raw)
		if len(fields) == 0 {
			continue
		}
		indented := raw[0] == ' ' || raw[0] == '\t'
		switch {
		case fields[0] == "scenario":
			out = append(out, scenario{title: strings.Join(fields[1:], " ")})
			cur, tick = &out[len(out)-1], nil
		case cur == nil:
			return fail(n, "expected a scenario line first")
		case fields[0] == "spec":
			spec, err := parseSpec(fields[1:])
			if err != nil {
				return fail(n, "%v", err)
			}
			cur.spec = spec
		case fields[0] == "at":
			if len(fields) < 2 {
				return fail(n, "at needs a time")
			}
			at, err := time.ParseDuration(fields[1])
			if err != nil {
				return fail(n, "bad time: %v", err)
			}
			tk := scenarioTick{line: n, at: at}
			for _, kv := range fields[2:] {
				k, v, _ := strings.Cut(kv, "=")
				i, err := strconv.Atoi(v)
				if err != nil {
					return fail(n, "bad %s: %v", k, err)
				}
				switch k {
				case "pending":
					tk.pending = i
				case "backlog":
					tk.backlog = i
				default:
					return fail(n, "unknown tick field %q", k)
				}
			}
			cur.ticks = append(cur.ticks, tk)
			tick = &cur.ticks[len(cur.ticks)-1]
		case fields[0] == "expect":
			if tick == nil {
				return fail(n, "expect before any tick")
			}
			e, err := parseExpect(fields[1:])
			if err != nil {
				return fail(n, "%v", err)
			}
			e.line = n
			tick.expects = append(tick.expects, e)
		case indented && tick != nil:
			ws, err := parseWorkers(fields)
			if err != nil {
				return fail(n, "%v", err)
			}
			if tick.workers == nil {
				tick.workers = []scenarioWorker{}
			}
			tick.workers = append(tick.workers, ws...)
		default:
			return fail(n, "cannot read %q", strings.TrimSpace(raw))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseSpec(fields []string) (Spec, error) {
	var s Spec
	for _, kv := range fields {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return s, fmt.Errorf("spec field %q is not key=value", kv)
		}
		var err error
		switch k {
		case "policy":
			s.Policy = v
		case "min":
			s.MinWorkers, err = strconv.Atoi(v)
		case "max":
			s.MaxWorkers, err = strconv.Atoi(v)
		case "slots":
			s.WorkerSlots, err = strconv.Atoi(v)
		case "type":
			s.Kind, err = ParseKind(v)
		case "window":
			s.WindowDown, err = time.ParseDuration(v)
		case "first-step":
			s.FirstStepUp, err = strconv.Atoi(v)
		default:
			return s, fmt.Errorf("unknown spec field %q", k)
		}
		if err != nil {
			return s, fmt.Errorf("spec %s: %v", k, err)
		}
	}
	return s, nil
}

// parseWorkers reads "w1 running tasks=2 shuffle=300MB idle=5m"; the id may
// be a range "w1..w8" giving that many identical workers.
func parseWorkers(fields []string) ([]scenarioWorker, error) {
	w := scenarioWorker{state: Running}
	ids, err := expandIDs(fields[0])
	if err != nil {
		return nil, err
	}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			st, err := ParseWorkerState(f)
			if err != nil {
				return nil, err
			}
			w.state = st
			continue
		}
		switch k {
		case "tasks":
			w.tasks, err = strconv.Atoi(v)
		case "slots":
			w.slots, err = strconv.Atoi(v)
		case "shuffle":
			w.shuffle, err = parseBytes(v)
		case "idle":
			var d time.Duration
			d, err = time.ParseDuration(v)
			w.idleFor = &d
		default:
			return nil, fmt.Errorf("unknown worker field %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("worker %s: %v", k, err)
		}
	}
	out := make([]scenarioWorker, 0, len(ids))
	for _, id := range ids {
		c := w
		c.id = id
		out = append(out, c)
	}
	return out, nil
}

func expandIDs(s string) ([]WorkerID, error) {
	from, to, ok := strings.Cut(s, "..")
	if !ok {
		return []WorkerID{WorkerID(s)}, nil
	}
	prefix := strings.TrimRight(from, "0123456789")
	a, err1 := strconv.Atoi(from[len(prefix):])
	b, err2 := strconv.Atoi(strings.TrimPrefix(to, prefix))
	if err1 != nil || err2 != nil || b < a {
		return nil, fmt.Errorf("bad worker range %q", s)
	}
	var ids []WorkerID
	for i := a; i <= b; i++ {
		ids = append(ids, WorkerID(prefix+strconv.Itoa(i)))
	}
	return ids, nil
}

func parseExpect(fields []string) (scenarioExpect, error) {
	var e scenarioExpect
	if len(fields) == 1 && fields[0] == "hold" {
		e.hold = true
		return e, nil
	}
	sawTarget := false
	for _, kv := range fields {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "target":
			n, err := strconv.Atoi(v)
			if err != nil {
				return e, fmt.Errorf("bad target: %v", err)
			}
			e.target, sawTarget = n, true
		case "remove":
			for _, part := range strings.Split(v, ",") {
				ids, err := expandIDs(part)
				if err != nil {
					return e, err
				}
				e.remove = append(e.remove, ids...)
			}
		default:
			return e, fmt.Errorf("unknown expectation %q (want hold, target=N, remove=ids)", kv)
		}
	}
	if !sawTarget {
		return e, fmt.Errorf("expect needs hold or target=N")
	}
	return e, nil
}

func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, err
			}
			return int64(n * float64(u.mult)), nil
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
