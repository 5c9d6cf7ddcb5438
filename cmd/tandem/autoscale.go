package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdata/tandem/internal/autoscale"
	"github.com/tandemdata/tandem/internal/autoscale/sim"
	"github.com/tandemdata/tandem/internal/usage"
)

func autoscaleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "autoscale",
		Short: "Autoscaling tools",
	}
	cmd.AddCommand(simulateCmd())
	return cmd
}

func simulateCmd() *cobra.Command {
	env := sim.DefaultEnv()
	var (
		traceFile, policy, kind, computeType string
		minW, maxW, slots, window, firstStep int
		migrateMiB                           float64
		events                               bool
	)
	cmd := &cobra.Command{
		Use:   "simulate --trace FILE --policy NAME",
		Short: "Replay a workload trace through an autoscaling policy",
		Long: `Replay a workload trace through an autoscaling policy with the simulator, which
calls the same policy code as a live cluster, and print what it cost (node-seconds,
DBUs, price) and what it did to the work (makespan, task waits, job times, tasks
failed by scale-down).

Policies: optimized, standard, spark-dynamic-allocation, cluster-autoscaler,
static-max (a fixed cluster of --max workers), static-min (of --min, at least 1),
or all: every one of them plus the best static size in hindsight, as a table.

The trace's cluster line gives the defaults for --type, --min, --max and --slots.
Traces ship in bench/traces; docs/autoscaling.md describes the format and the model.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if traceFile == "" {
				return fmt.Errorf("--trace is required")
			}
			f, err := os.Open(traceFile)
			if err != nil {
				return err
			}
			t, err := sim.ParseTrace(f, traceFile)
			f.Close()
			if err != nil {
				return err
			}
			fs := cmd.Flags()
			h := t.Cluster
			spec := autoscale.Spec{MinWorkers: h.Min, MaxWorkers: h.Max, WorkerSlots: h.Slots, FirstStepUp: firstStep}
			if h.Type != "" && !fs.Changed("type") {
				kind = h.Type
			}
			if spec.Kind, err = autoscale.ParseKind(kind); err != nil {
				return err
			}
			if fs.Changed("min") || h.Max == 0 {
				spec.MinWorkers = minW
			}
			if fs.Changed("max") || h.Max == 0 {
				spec.MaxWorkers = maxW
			}
			if fs.Changed("slots") || h.Slots == 0 {
				spec.WorkerSlots = slots
			}
			if fs.Changed("window") {
				if window < 1 {
					return fmt.Errorf("--window must be between 1 and %d seconds", int(autoscale.MaxWindowDown/time.Second))
				}
				spec.WindowDown = time.Duration(window) * time.Second
			}
			if err := spec.Validate(); err != nil {
				return err
			}
			if computeType != "" {
				if env.ComputeType, err = usage.ParseComputeType(computeType); err != nil {
					return err
				}
			}
			env.MigrationBytesPerSecond = migrateMiB * (1 << 20)
			out := cmd.OutOrStdout()
			if policy == "all" {
				c, err := sim.Compare(t, spec, env)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s: %d jobs, %d tasks over %s; %s cluster of %d-%d workers with %d slots; best static size in hindsight: %d\n\n",
					t.Name, len(t.Jobs), t.Tasks(), sim.FormatDuration(t.Span()), spec.Kind, spec.MinWorkers, spec.MaxWorkers, spec.WorkerSlots, c.BestStaticSize)
				return sim.WriteTable(out, c)
			}
			cfg := sim.Config{Spec: spec, Env: env}
			switch policy {
			case sim.StaticMax, autoscale.Static:
				cfg.Policy, cfg.InitialWorkers, cfg.Label = autoscale.NewStatic(spec.MaxWorkers), spec.MaxWorkers, sim.StaticMax
			case sim.StaticMin:
				n := max(1, spec.MinWorkers)
				cfg.Policy, cfg.InitialWorkers, cfg.Label = autoscale.NewStatic(n), n, sim.StaticMin
			default:
				cfg.Spec.Policy = policy
				if _, err := autoscale.New(cfg.Spec); err != nil {
					return fmt.Errorf("unknown policy %q: the policies are %s, static-max, static-min and all", policy, strings.Join(autoscale.Names, ", "))
				}
			}
			if events {
				cfg.Observe = func(s autoscale.Snapshot, d autoscale.Decision) {
					if d.Step(s) != 0 {
						fmt.Fprintf(out, "%9s  %d -> %d workers  %s\n", sim.FormatDuration(s.Time.Sub(sim.Epoch)), s.Size(), d.Target, d.Reason)
					}
				}
			}
			r, err := sim.Run(t, cfg)
			if err != nil {
				return err
			}
			if events {
				fmt.Fprintln(out)
			}
			printResult(out, t, spec, env, r)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&traceFile, "trace", "", "trace file (see bench/traces)")
	fl.StringVar(&policy, "policy", autoscale.Optimized, "policy to replay, or all")
	fl.StringVar(&kind, "type", "job", "cluster type, job or all-purpose; overrides the trace's cluster line")
	fl.IntVar(&minW, "min", 2, "minimum workers; overrides the trace's cluster line")
	fl.IntVar(&maxW, "max", 8, "maximum workers; overrides the trace's cluster line")
	fl.IntVar(&slots, "slots", 8, "task slots per worker; overrides the trace's cluster line")
	fl.IntVar(&window, "window", 0, "optimized scale-down window in seconds, as spark.databricks.aggressiveWindowDownS (default: 40 on job clusters, 150 on all-purpose)")
	fl.IntVar(&firstStep, "first-step", 0, "standard's first scale-up step, as spark.databricks.autoscaling.standardFirstStepUp (default 8)")
	fl.DurationVar(&env.ColdStart, "cold", env.ColdStart, "start-up time of a new instance")
	fl.DurationVar(&env.WarmStart, "warm", env.WarmStart, "start-up time of an instance from the pool")
	fl.IntVar(&env.PoolMinIdle, "pool-idle", env.PoolMinIdle, "idle instances the pool keeps warm (min_idle_instances)")
	fl.DurationVar(&env.PoolIdleTimeout, "pool-timeout", env.PoolIdleTimeout, "how long a released instance stays warm in the pool")
	fl.Float64Var(&migrateMiB, "migrate-mibs", env.MigrationBytesPerSecond/(1<<20), "MiB/s at which a decommissioning worker migrates its shuffle data")
	fl.DurationVar(&env.ForceKillAfter, "force-kill", env.ForceKillAfter, "decommission deadline once a worker runs no task, after which it is killed and its unmigrated shuffle data lost (0: none)")
	fl.DurationVar(&env.IdleTail, "tail", env.IdleTail, "how long an all-purpose cluster stays up after its last job")
	fl.Float64Var(&env.TaskJitter, "jitter", env.TaskJitter, "task times vary uniformly by this fraction")
	fl.Uint64Var(&env.Seed, "seed", env.Seed, "random seed")
	fl.StringVar(&env.NodeType, "node-type", env.NodeType, "node type, for its DBU rate")
	fl.StringVar(&computeType, "compute-type", "", "ALL_PURPOSE, JOBS, JOBS_LIGHT or SQL (default: by cluster type)")
	fl.BoolVar(&events, "events", false, "print every resize as it happens")
	return cmd
}

func printResult(w io.Writer, t sim.Trace, spec autoscale.Spec, env sim.Env, r sim.Result) {
	line := func(k, format string, args ...any) { fmt.Fprintf(w, "%-15s %s\n", k, fmt.Sprintf(format, args...)) }
	line("trace", "%s: %d jobs, %d tasks, %s of submissions", t.Name, len(t.Jobs), r.Tasks, sim.FormatDuration(t.Span()))
	line("cluster", "%s, %s workers of %d slots, node type %s", spec.Kind, r.Workers, spec.WorkerSlots, env.NodeType)
	line("policy", "%s", r.Label)
	line("node-seconds", "%.0f (%.1f node-hours; workers %.0f, driver %.0f)", r.NodeSeconds, r.NodeSeconds/3600, r.WorkerSeconds, r.NodeSeconds-r.WorkerSeconds)
	line("cost", "%.2f %s (%.1f DBU)", r.Cost, r.Currency, r.DBUs)
	line("makespan", "%s (cluster up for %s)", sim.FormatDuration(r.Makespan), sim.FormatDuration(r.End))
	line("p95 task wait", "%s (p50 %s)", sim.FormatDuration(r.TaskWaitP95), sim.FormatDuration(r.TaskWaitP50))
	line("p95 job time", "%s (p50 %s)", sim.FormatDuration(r.JobTimeP95), sim.FormatDuration(r.JobTimeP50))
	line("failed tasks", "%d (shuffle migrated %s, lost %s)", r.TasksFailed, bytesString(r.ShuffleMigratedBytes), bytesString(r.ShuffleLostBytes))
	line("resizes", "%d up, %d down; peak %d workers, %.1f on average", r.ScaleUps, r.ScaleDowns, r.PeakWorkers, r.AvgWorkers)
}

func bytesString(b int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(b), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", b)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
