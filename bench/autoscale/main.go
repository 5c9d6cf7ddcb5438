// Command autoscale compares the autoscaling policies on every shipped
// trace (bench/traces/*.trace) with the simulator, prints one Markdown table
// per trace and checks the goals of the autoscaling issue:
//
//   - optimized costs at least 30% less than a static cluster at max size,
//     with a makespan at most 10% longer;
//   - optimized costs at least 15% less than standard;
//   - no task fails because of scale-down, and no shuffle data is lost to
//     it (under standard or optimized; the peers' failures are reported,
//     not judged).
//
// Run it from the repository's root:
//
//	go run ./bench/autoscale
//	go run ./bench/autoscale -pool-idle 4 -pool-timeout 10m   # with a warm pool
//
// It exits 1 if a goal is missed, after printing everything.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/autoscale"
	"github.com/tandemdata/tandem/internal/autoscale/sim"
)

func main() {
	env := sim.DefaultEnv()
	glob := flag.String("traces", "bench/traces/*.trace", "traces to compare")
	flag.IntVar(&env.PoolMinIdle, "pool-idle", env.PoolMinIdle, "warm instances the pool keeps idle")
	flag.DurationVar(&env.PoolIdleTimeout, "pool-timeout", env.PoolIdleTimeout, "how long a released instance stays warm in the pool")
	flag.DurationVar(&env.ColdStart, "cold", env.ColdStart, "start-up time of a new instance")
	flag.DurationVar(&env.WarmStart, "warm", env.WarmStart, "start-up time of an instance from the pool")
	flag.Uint64Var(&env.Seed, "seed", env.Seed, "random seed")
	migrate := flag.Float64("migrate-mibs", env.MigrationBytesPerSecond/(1<<20), "MiB/s a decommissioning worker migrates its shuffle data at")
	flag.DurationVar(&env.ForceKillAfter, "force-kill", env.ForceKillAfter, "decommission deadline once a worker runs no task (0: none)")
	flag.Parse()
	env.MigrationBytesPerSecond = *migrate * (1 << 20)

	files, err := filepath.Glob(*glob)
	if err != nil || len(files) == 0 {
		fmt.Fprintf(os.Stderr, "autoscale: no traces match %s (run from the repository's root)\n", *glob)
		os.Exit(2)
	}
	fmt.Printf("Environment: ticks of %s, cold start %s, warm start %s, pool min idle %d (idle timeout %s), decommission exit %s, migration %.0f MiB/s, force kill after %s, task jitter ±%.0f%%, seed %d, node %s.\n\n",
		env.Tick, env.ColdStart, env.WarmStart, env.PoolMinIdle, env.PoolIdleTimeout, env.DecommissionExit, env.MigrationBytesPerSecond/(1<<20), env.ForceKillAfter, 100*env.TaskJitter, env.Seed, env.NodeType)
	var missed []string
	for _, f := range files {
		start := time.Now()
		t, spec, err := load(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "autoscale:", err)
			os.Exit(1)
		}
		c, err := sim.Compare(t, spec, env)
		if err != nil {
			fmt.Fprintln(os.Stderr, "autoscale:", err)
			os.Exit(1)
		}
		fmt.Printf("### %s: %d jobs, %d tasks, %s of submissions; %s cluster of %d-%d workers with %d slots\n\n",
			filepath.Base(f), len(t.Jobs), t.Tasks(), sim.FormatDuration(t.Span()), spec.Kind, spec.MinWorkers, spec.MaxWorkers, spec.WorkerSlots)
		if err := sim.WriteTable(os.Stdout, c); err != nil {
			fmt.Fprintln(os.Stderr, "autoscale:", err)
			os.Exit(1)
		}
		fmt.Println()
		for _, g := range goals(c) {
			mark := "met"
			if !g.ok {
				mark = "MISSED"
				missed = append(missed, filepath.Base(f)+": "+g.text)
			}
			fmt.Printf("- %s: %s\n", mark, g.text)
		}
		fmt.Printf("\n(simulated in %s)\n\n", time.Since(start).Round(100*time.Millisecond))
	}
	if len(missed) > 0 {
		fmt.Printf("Goals missed:\n- %s\n", strings.Join(missed, "\n- "))
		os.Exit(1)
	}
	fmt.Println("Every goal met on every trace.")
}

func load(path string) (sim.Trace, autoscale.Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return sim.Trace{}, autoscale.Spec{}, err
	}
	defer f.Close()
	t, err := sim.ParseTrace(f, filepath.Base(path))
	if err != nil {
		return t, autoscale.Spec{}, err
	}
	h := t.Cluster
	spec := autoscale.Spec{MinWorkers: h.Min, MaxWorkers: h.Max, WorkerSlots: h.Slots}
	if h.Max == 0 {
		return t, spec, fmt.Errorf("%s: the trace names no cluster (a cluster line with min, max and slots)", path)
	}
	if spec.Kind, err = autoscale.ParseKind(h.Type); err != nil && h.Type != "" {
		return t, spec, err
	}
	return t, spec, nil
}

type goal struct {
	text string
	ok   bool
}

func goals(c sim.Comparison) []goal {
	base, _ := c.Result(sim.StaticMax)
	opt, _ := c.Result(autoscale.Optimized)
	std, _ := c.Result(autoscale.Standard)
	saveMax := 1 - opt.Cost/base.Cost
	longer := opt.Makespan.Seconds()/base.Makespan.Seconds() - 1
	saveStd := 1 - opt.Cost/std.Cost
	failed := opt.TasksFailed + std.TasksFailed
	lost := opt.ShuffleLostBytes + std.ShuffleLostBytes
	var peers []string
	for _, r := range c.Results {
		if r.Label != autoscale.Optimized && r.Label != autoscale.Standard && r.TasksFailed > 0 {
			peers = append(peers, fmt.Sprintf("%s %d", r.Label, r.TasksFailed))
		}
	}
	peerNote := ""
	if len(peers) > 0 {
		peerNote = "; peers: " + strings.Join(peers, ", ")
	}
	return []goal{
		{fmt.Sprintf("optimized costs %.1f%% less than static-max (goal: at least 30%%)", 100*saveMax), saveMax >= 0.30},
		{fmt.Sprintf("optimized's makespan is %+.1f%% against static-max (goal: at most +10%%)", 100*longer), longer <= 0.10},
		{fmt.Sprintf("optimized costs %.1f%% less than standard (goal: at least 15%%)", 100*saveStd), saveStd >= 0.15},
		{fmt.Sprintf("%d tasks failed because of scale-down under standard and optimized (goal: 0)%s", failed, peerNote), failed == 0},
		// Shuffle data lost by a forced decommission would be recomputed:
		// a stage retry, which graceful scale-down must not cause either.
		{fmt.Sprintf("%.1f GiB of shuffle data lost by scale-down under standard and optimized (goal: 0)", float64(lost)/(1<<30)), lost == 0},
	}
}
