// Command synth writes Tandem's synthetic autoscaling traces,
// deterministically from a seed:
//
//	go run ./bench/traces/synth -shape bursty -seed 1 -o bench/traces/bursty.trace
//	go run ./bench/traces/synth -shape etl -seed 1 -o bench/traces/etl-job.trace
//
// "bursty" is a shared all-purpose cluster over six hours: busy spells of
// 3 to 30 minutes (jobs every 45 s on average) separated by quiet spells of
// 5 to 60 minutes (a job every 10 minutes), with a mix of small interactive
// queries, three-stage ETL jobs (wide, narrow, wide) and a few heavy scans.
// "etl" is one job cluster running a nightly pipeline of about half an hour on 32 workers:
// stages of very different widths, the case where a cluster sized for the
// widest stage idles through the narrow ones. bench/traces/README.md gives
// the parameters' reasons.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/tandemdata/tandem/internal/autoscale/sim"
)

func main() {
	shape := flag.String("shape", "bursty", "bursty or etl")
	seed := flag.Uint64("seed", 1, "random seed")
	out := flag.String("o", "", "output file (default standard output)")
	flag.Parse()
	var w io.Writer = os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "synth:", err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	if err := generate(w, *shape, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "synth:", err)
		os.Exit(1)
	}
}

// generate writes the trace of shape drawn from seed.
func generate(w io.Writer, shape string, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	var t sim.Trace
	switch shape {
	case "bursty":
		t = bursty(rng)
	case "etl":
		t = etl(rng)
	default:
		return fmt.Errorf("-shape must be bursty or etl, not %q", shape)
	}
	header := fmt.Sprintf("Tandem synthetic trace %q, seed %d: go run ./bench/traces/synth -shape %s -seed %d\n%d jobs, %d tasks, %.0f task-seconds over %s",
		shape, seed, shape, seed, len(t.Jobs), t.Tasks(), t.Work(), t.Span().Round(time.Second))
	return sim.WriteTrace(w, t, header)
}

// bursty alternates busy and quiet spells over six hours.
func bursty(rng *rand.Rand) sim.Trace {
	const horizon = 6 * 3600.0
	t := sim.Trace{Cluster: sim.ClusterHint{Type: "all-purpose", Min: 2, Max: 32, Slots: 8}}
	now, busy, n := 0.0, false, 0
	for now < horizon {
		var spell, gap float64
		if busy {
			spell, gap = clamp(rng.ExpFloat64()*12*60, 3*60, 30*60), 45
		} else {
			spell, gap = clamp(rng.ExpFloat64()*20*60, 5*60, 60*60), 600
		}
		end := math.Min(now+spell, horizon)
		for at := now + rng.ExpFloat64()*gap; at < end; at += rng.ExpFloat64() * gap {
			n++
			t.Jobs = append(t.Jobs, sim.Job{ID: fmt.Sprintf("b%d", n), Submit: secs(at), Stages: burstyJob(rng)})
		}
		now, busy = end, !busy
	}
	return t
}

// burstyJob draws a job: 60% interactive queries, 30% ETL, 10% heavy scans.
func burstyJob(rng *rand.Rand) []sim.Stage {
	switch r := rng.Float64(); {
	case r < 0.6: // a query: one or two stages, up to 64 tasks of seconds
		st := []sim.Stage{{Tasks: logUniformInt(rng, 1, 64), TaskSeconds: logNormal(rng, 2, 0.6), ShuffleMiB: logNormal(rng, 4, 1)}}
		if rng.Float64() < 0.5 {
			st = append(st, sim.Stage{Tasks: logUniformInt(rng, 1, 16), TaskSeconds: logNormal(rng, 1.5, 0.5)})
		} else {
			st[0].ShuffleMiB = 0
		}
		return st
	case r < 0.9: // ETL: wide, narrow, wide
		return []sim.Stage{
			{Tasks: logUniformInt(rng, 100, 800), TaskSeconds: logNormal(rng, 12, 0.5), ShuffleMiB: logNormal(rng, 24, 0.5)},
			{Tasks: logUniformInt(rng, 8, 40), TaskSeconds: logNormal(rng, 45, 0.4), ShuffleMiB: logNormal(rng, 64, 0.5)},
			{Tasks: logUniformInt(rng, 100, 400), TaskSeconds: logNormal(rng, 10, 0.5)},
		}
	default: // a heavy scan and aggregation
		return []sim.Stage{
			{Tasks: logUniformInt(rng, 1000, 2000), TaskSeconds: logNormal(rng, 10, 0.4), ShuffleMiB: logNormal(rng, 8, 0.5)},
			{Tasks: logUniformInt(rng, 50, 200), TaskSeconds: logNormal(rng, 8, 0.5)},
		}
	}
}

// etl is one pipeline run on a job cluster: ingest (wide), deduplicate by
// key (narrow: few keys' partitions, long tasks), join and enrich (wide),
// aggregate per customer (medium), a skewed final merge (narrow), write
// (wide).
func etl(rng *rand.Rand) sim.Trace {
	t := sim.Trace{Cluster: sim.ClusterHint{Type: "job", Min: 2, Max: 32, Slots: 8}}
	jitter := func(x float64) float64 { return x * (0.8 + 0.4*rng.Float64()) }
	t.Jobs = []sim.Job{{ID: "nightly-etl", Submit: 0, Stages: []sim.Stage{
		{Tasks: 4000, TaskSeconds: jitter(20), ShuffleMiB: jitter(32)},
		{Tasks: 24, TaskSeconds: jitter(420), ShuffleMiB: jitter(512)},
		{Tasks: 3000, TaskSeconds: jitter(25), ShuffleMiB: jitter(24)},
		{Tasks: 200, TaskSeconds: jitter(60), ShuffleMiB: jitter(64)},
		{Tasks: 8, TaskSeconds: jitter(600), ShuffleMiB: jitter(256)},
		{Tasks: 2000, TaskSeconds: jitter(15)},
	}}}
	return t
}

func secs(s float64) time.Duration { return time.Duration(math.Round(s*1000)) * time.Millisecond }

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

// logNormal has the given median and shape sigma, rounded to milliseconds.
func logNormal(rng *rand.Rand, median, sigma float64) float64 {
	return math.Max(0.05, math.Round(median*math.Exp(sigma*rng.NormFloat64())*1000)/1000)
}

func logUniformInt(rng *rand.Rand, lo, hi int) int {
	return int(math.Round(math.Exp(math.Log(float64(lo)) + rng.Float64()*(math.Log(float64(hi))-math.Log(float64(lo))))))
}
