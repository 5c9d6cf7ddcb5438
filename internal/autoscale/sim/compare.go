package sim

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tandemdata/tandem/internal/autoscale"
)

// The rows of a comparison: three static baselines, then the policies.
const (
	StaticMax  = "static-max"
	StaticMin  = "static-min"
	BestStatic = "best-static"
)

// The best static size in hindsight is the cheapest fixed size that is
// nearly as good as the largest: a makespan at most 10% longer and a p95
// job slowdown of at most 1.2 (the comparison protocol of
// docs/autoscaling.md). Slowdown is bounded: jobs shorter than
// slowdownFloor count as that long, so that a 1-second job waiting 2
// seconds is not a 3x disaster.
const (
	bestStaticMakespan = 1.10
	bestStaticSlowdown = 1.20
	slowdownFloor      = 10 * time.Second
)

// ComparedPolicies are the policies a comparison runs after the baselines.
var ComparedPolicies = []string{autoscale.Standard, autoscale.Optimized, autoscale.SparkDynamicAllocation, autoscale.ClusterAutoscaler}

// Comparison is every policy's result on one trace and cluster.
type Comparison struct {
	Trace   string
	Spec    autoscale.Spec
	Env     Env
	Results []Result
	// BestStaticSize is the size the best-static row found.
	BestStaticSize int
}

// Result returns the row with label.
func (c Comparison) Result(label string) (Result, bool) {
	for _, r := range c.Results {
		if r.Label == label {
			return r, true
		}
	}
	return Result{}, false
}

// Compare replays the trace through the static baselines (at max, at min,
// and the best size in hindsight) and every compared policy, on the same
// cluster bounds and environment. A static size is at least 1.
func Compare(t Trace, spec autoscale.Spec, env Env) (Comparison, error) {
	c := Comparison{Trace: t.Name, Spec: spec, Env: env}
	static := func(n int, label string) (Result, error) {
		r, err := Run(t, Config{Spec: spec, Policy: autoscale.NewStatic(n), Label: label, InitialWorkers: n, Env: env})
		r.Workers = strconv.Itoa(n)
		return r, err
	}
	maxR, err := static(spec.MaxWorkers, StaticMax)
	if err != nil {
		return c, err
	}
	lo := max(1, spec.MinWorkers)
	minR, err := static(lo, StaticMin)
	if err != nil {
		return c, err
	}
	minR.P95Slowdown = slowdown(minR.JobTimes, maxR.JobTimes)
	maxR.P95Slowdown = 1
	best, bestN := maxR, spec.MaxWorkers
	for n := lo; n < spec.MaxWorkers; n++ {
		r := minR
		if n != lo {
			if r, err = static(n, BestStatic); err != nil {
				return c, err
			}
			r.P95Slowdown = slowdown(r.JobTimes, maxR.JobTimes)
		}
		if float64(r.Makespan) <= bestStaticMakespan*float64(maxR.Makespan) && r.P95Slowdown <= bestStaticSlowdown && r.Cost < best.Cost {
			best, bestN = r, n
		}
	}
	best.Label, best.Workers = BestStatic, strconv.Itoa(bestN)
	c.BestStaticSize = bestN
	c.Results = append(c.Results, maxR, minR, best)
	for _, name := range ComparedPolicies {
		s := spec
		s.Policy = name
		r, err := Run(t, Config{Spec: s, Env: env})
		if err != nil {
			return c, err
		}
		r.P95Slowdown = slowdown(r.JobTimes, maxR.JobTimes)
		c.Results = append(c.Results, r)
	}
	return c, nil
}

// slowdown is the 95th percentile over jobs of the job's time divided by
// its time on the baseline, both at least slowdownFloor.
func slowdown(times, base []time.Duration) float64 {
	if len(times) != len(base) || len(times) == 0 {
		return 0
	}
	ratios := make([]float64, len(times))
	for i := range times {
		ratios[i] = float64(max(times[i], slowdownFloor)) / float64(max(base[i], slowdownFloor))
	}
	slices.Sort(ratios)
	return ratios[rank(len(ratios), 0.95)]
}

// WriteTable prints the comparison as a Markdown table, costs relative to
// the static cluster at max size.
func WriteTable(w io.Writer, c Comparison) error {
	base, _ := c.Result(StaticMax)
	rows := [][]string{{"policy", "workers", "node-hours", "cost (" + base.Currency + ")", "vs static-max", "makespan", "p95 task wait", "p95 job time", "p95 slowdown", "failed tasks", "scale-ups/downs"}}
	for _, r := range c.Results {
		rows = append(rows, []string{
			r.Label, r.Workers,
			fmt.Sprintf("%.1f", r.NodeSeconds/3600),
			fmt.Sprintf("%.2f", r.Cost),
			relative(r.Cost, base.Cost),
			FormatDuration(r.Makespan) + " (" + relative(r.Makespan.Seconds(), base.Makespan.Seconds()) + ")",
			FormatDuration(r.TaskWaitP95),
			FormatDuration(r.JobTimeP95),
			fmt.Sprintf("%.2f", r.P95Slowdown),
			strconv.Itoa(r.TasksFailed),
			fmt.Sprintf("%d/%d", r.ScaleUps, r.ScaleDowns),
		})
	}
	return writeMarkdown(w, rows)
}

// writeMarkdown writes rows as a Markdown table with aligned columns, the
// first row as its header.
func writeMarkdown(w io.Writer, rows [][]string) error {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, cell := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell), 3)
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		for i, cell := range cells {
			b.WriteString("| ")
			b.WriteString(cell)
			b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)+1))
		}
		b.WriteString("|\n")
	}
	line(rows[0])
	sep := make([]string, len(widths))
	for i, n := range widths {
		sep[i] = strings.Repeat("-", n)
	}
	line(sep)
	for _, r := range rows[1:] {
		line(r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func relative(v, base float64) string {
	if base == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", 100*(v/base-1))
}

// FormatDuration prints a duration rounded for reading: 1.2s, 4m05s, 24h01m.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
