package sim

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Trace is a workload: jobs arriving over time, each a chain of stages.
// Its text form (docs/autoscaling.md, "Trace format") is one line per job:
//
//	# comment
//	cluster type=all-purpose min=2 max=32 slots=8
//	job j17 1128.5 77x5.0:40.1 13x12.4
//
// A job line gives the job's id, its submit time in seconds from the start
// of the trace and its stages in order: TASKSxSECONDS, the number of tasks
// and the mean seconds each runs, then optionally :MIB, the shuffle data in
// MiB each task writes for the next stage. The optional cluster line
// suggests the cluster to replay it on; flags override it.
type Trace struct {
	Name    string
	Cluster ClusterHint
	Jobs    []Job
}

// ClusterHint is the cluster a trace was made for; zero fields say nothing.
type ClusterHint struct {
	Type     string // "job" or "all-purpose"
	Min, Max int
	Slots    int
}

// Job is one job of a trace.
type Job struct {
	ID     string
	Submit time.Duration
	Stages []Stage
}

// Stage is a set of like tasks that runs once the stage before it is done.
type Stage struct {
	Tasks       int
	TaskSeconds float64
	// ShuffleMiB is the shuffle data each task writes for the next stage.
	ShuffleMiB float64
}

// Work is the task-seconds the trace asks for.
func (t Trace) Work() float64 {
	var s float64
	for _, j := range t.Jobs {
		for _, st := range j.Stages {
			s += float64(st.Tasks) * st.TaskSeconds
		}
	}
	return s
}

// Tasks is the number of tasks in the trace.
func (t Trace) Tasks() int {
	n := 0
	for _, j := range t.Jobs {
		for _, st := range j.Stages {
			n += st.Tasks
		}
	}
	return n
}

// Span is the time from the first submission to the last.
func (t Trace) Span() time.Duration {
	if len(t.Jobs) == 0 {
		return 0
	}
	first, last := t.Jobs[0].Submit, t.Jobs[0].Submit
	for _, j := range t.Jobs {
		first, last = min(first, j.Submit), max(last, j.Submit)
	}
	return last - first
}

// Limits that keep a malformed trace from exhausting memory.
const (
	maxTasksPerStage = 10_000_000
	maxStagesPerJob  = 1000
	maxSubmitSeconds = 366 * 24 * 3600
	maxTaskSeconds   = 7 * 24 * 3600
)

// ParseTrace reads a trace in its text form; errors name the line.
func ParseTrace(r io.Reader, name string) (Trace, error) {
	t := Trace{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	ids := map[string]bool{}
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		fail := func(format string, args ...any) (Trace, error) {
			return Trace{}, fmt.Errorf("%s:%d: %s", name, n, fmt.Sprintf(format, args...))
		}
		switch fields[0] {
		case "cluster":
			if len(t.Jobs) > 0 || t.Cluster != (ClusterHint{}) {
				return fail("the cluster line must come once, before the jobs")
			}
			for _, kv := range fields[1:] {
				k, v, _ := strings.Cut(kv, "=")
				var err error
				switch k {
				case "type":
					if v != "job" && v != "all-purpose" {
						return fail("cluster type must be job or all-purpose, not %q", v)
					}
					t.Cluster.Type = v
				case "min":
					t.Cluster.Min, err = atoiIn(v, 0, 100000)
				case "max":
					t.Cluster.Max, err = atoiIn(v, 1, 100000)
				case "slots":
					t.Cluster.Slots, err = atoiIn(v, 1, 10000)
				default:
					return fail("unknown cluster field %q (want type, min, max, slots)", k)
				}
				if err != nil {
					return fail("cluster %s: %v", k, err)
				}
			}
		case "job":
			if len(fields) < 4 {
				return fail("a job line is: job ID SUBMIT-SECONDS STAGE...")
			}
			j := Job{ID: fields[1]}
			if ids[j.ID] {
				return fail("job %s appears twice", j.ID)
			}
			ids[j.ID] = true
			sub, err := strconv.ParseFloat(fields[2], 64)
			if err != nil || sub < 0 || sub > maxSubmitSeconds || math.IsNaN(sub) {
				return fail("submit time %q must be seconds between 0 and %d", fields[2], maxSubmitSeconds)
			}
			j.Submit = seconds(sub)
			if len(fields)-3 > maxStagesPerJob {
				return fail("a job has at most %d stages", maxStagesPerJob)
			}
			for _, f := range fields[3:] {
				st, err := parseStage(f)
				if err != nil {
					return fail("stage %q: %v", f, err)
				}
				j.Stages = append(j.Stages, st)
			}
			t.Jobs = append(t.Jobs, j)
		default:
			return fail("expected a job or cluster line, got %q", fields[0])
		}
	}
	if err := sc.Err(); err != nil {
		return Trace{}, fmt.Errorf("read %s: %w", name, err)
	}
	if len(t.Jobs) == 0 {
		return Trace{}, fmt.Errorf("%s: no jobs", name)
	}
	sort.SliceStable(t.Jobs, func(a, b int) bool { return t.Jobs[a].Submit < t.Jobs[b].Submit })
	return t, nil
}

func parseStage(s string) (Stage, error) {
	body, shuffle, hasShuffle := strings.Cut(s, ":")
	tasks, secs, ok := strings.Cut(body, "x")
	if !ok {
		return Stage{}, fmt.Errorf("want TASKSxSECONDS[:MIB]")
	}
	n, err := atoiIn(tasks, 1, maxTasksPerStage)
	if err != nil {
		return Stage{}, fmt.Errorf("tasks: %v", err)
	}
	sec, err := strconv.ParseFloat(secs, 64)
	if err != nil || !(sec > 0) || sec > maxTaskSeconds {
		return Stage{}, fmt.Errorf("seconds per task must be above 0 and at most %d", maxTaskSeconds)
	}
	st := Stage{Tasks: n, TaskSeconds: sec}
	if hasShuffle {
		mib, err := strconv.ParseFloat(shuffle, 64)
		if err != nil || !(mib >= 0) || mib > 1<<30 {
			return Stage{}, fmt.Errorf("shuffle MiB per task must be a number, at least 0")
		}
		st.ShuffleMiB = mib
	}
	return st, nil
}

func atoiIn(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is not between %d and %d", n, lo, hi)
	}
	return n, nil
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

// WriteTrace writes t in its text form, after the header comment lines.
func WriteTrace(w io.Writer, t Trace, header ...string) error {
	bw := bufio.NewWriter(w)
	for _, h := range header {
		for _, l := range strings.Split(h, "\n") {
			fmt.Fprintf(bw, "# %s\n", l)
		}
	}
	if c := t.Cluster; c != (ClusterHint{}) {
		bw.WriteString("cluster")
		if c.Type != "" {
			fmt.Fprintf(bw, " type=%s", c.Type)
		}
		if c.Min != 0 || c.Max != 0 {
			fmt.Fprintf(bw, " min=%d max=%d", c.Min, c.Max)
		}
		if c.Slots != 0 {
			fmt.Fprintf(bw, " slots=%d", c.Slots)
		}
		bw.WriteString("\n")
	}
	for _, j := range t.Jobs {
		fmt.Fprintf(bw, "job %s %s", j.ID, formatFloat(j.Submit.Seconds()))
		for _, st := range j.Stages {
			fmt.Fprintf(bw, " %dx%s", st.Tasks, formatFloat(max(0.001, st.TaskSeconds)))
			if st.ShuffleMiB > 0 {
				fmt.Fprintf(bw, ":%s", formatFloat(st.ShuffleMiB))
			}
		}
		bw.WriteString("\n")
	}
	return bw.Flush()
}

// formatFloat writes at most three decimals, without trailing zeros.
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', 3, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
