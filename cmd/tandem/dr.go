package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/dr"
)

func drCmd() *cobra.Command {
	var deployment string
	cmd := &cobra.Command{
		Use:   "dr",
		Short: "Disaster recovery: status, failover, failback and drills of a deployment",
		Long: `Act on a two-region deployment described by a deployment file (tandem up
writes DATA_DIR/deployment.json; docs/dr.md describes the format). Reports are
printed, kept in the active region (GET /api/2.0/tandem/dr/reports) and written
under reports/ next to the deployment file.`,
	}
	cmd.PersistentFlags().StringVar(&deployment, "deployment", "tandem-deployment/deployment.json", "the deployment file")
	load := func() (*dr.Deployment, error) { return dr.LoadDeployment(deployment) }
	cmd.AddCommand(drStatusCmd(load), drFailoverCmd(load), drFailbackCmd(load), drDrillCmd(load))
	return cmd
}

type planFlags struct {
	maxLag     int64
	cancel     bool
	drain      time.Duration
	wait       time.Duration
	noSmoke    bool
	jsonOutput bool
	clusters   bool
}

func (f *planFlags) add(cmd *cobra.Command) {
	cmd.Flags().Int64Var(&f.maxLag, "max-lag", 10000, "most changes the target may be behind when a planned failover starts")
	cmd.Flags().BoolVar(&f.cancel, "cancel-running", false, "cancel running job runs at once instead of letting them finish")
	cmd.Flags().DurationVar(&f.drain, "drain-timeout", 30*time.Second, "how long running work may take to finish before it is cancelled")
	cmd.Flags().DurationVar(&f.wait, "timeout", 60*time.Second, "bound of each wait (catch-up, router switch)")
	cmd.Flags().BoolVar(&f.noSmoke, "no-smoke", false, "skip the smoke job of the verification")
	cmd.Flags().BoolVar(&f.jsonOutput, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&f.clusters, "start-clusters", false, "start, in the new active region, the clusters that were running in the former one (default: they stay terminated, as Databricks leaves them)")
}

func (f *planFlags) plan() dr.Plan {
	return dr.Plan{MaxLag: f.maxLag, CancelRunning: f.cancel, DrainTimeout: f.drain, CatchUpTimeout: f.wait, Smoke: !f.noSmoke,
		StartClusters: f.clusters}
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func drStatusCmd(load func() (*dr.Deployment, error)) *cobra.Command {
	var jsonOutput bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each region's role, epoch, last change and replication lag, and the router's view",
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := load()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			clients, err := d.Clients()
			if err != nil {
				return err
			}
			out := map[string]any{}
			var names []string
			for n := range clients {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				st, err := clients[n].Status(ctx, false)
				if err != nil {
					out[n] = map[string]string{"error": err.Error()}
					if !jsonOutput {
						fmt.Printf("%-10s unreachable: %v\n", n, err)
					}
					continue
				}
				out[n] = st
				if !jsonOutput {
					printStatus(st)
				}
			}
			if d.Router != nil {
				r, err := dr.NewHTTPRouter(d.Router.URL, d.Router.CAFile)
				if err != nil {
					return err
				}
				rs, err := r.Status(ctx)
				if err != nil {
					out["router"] = map[string]string{"error": err.Error()}
					if !jsonOutput {
						fmt.Printf("%-10s unreachable: %v\n", "router", err)
					}
				} else {
					out["router"] = rs
					if !jsonOutput {
						fmt.Printf("%-10s %s -> %s (epoch %d, %d switches)\n", "router", d.Router.URL, rs.ActiveRegion, rs.Epoch, rs.Switches)
					}
				}
			}
			if jsonOutput {
				return printJSON(out)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOutput, "json", false, "print the regions' status as JSON")
	return cmd
}

func printStatus(st dr.Status) {
	line := fmt.Sprintf("%-10s %-8s epoch %d  last change %d", st.Region, st.Role, st.Epoch, st.LastSeq)
	if st.Role == dr.Passive {
		line += "  follows " + st.ActiveRegion
	}
	if st.LagSeconds != nil {
		line += fmt.Sprintf("  lag %.3fs / %d changes", *st.LagSeconds, *st.LagChanges)
	}
	if st.RPOExceeded {
		line += fmt.Sprintf("  ABOVE THE RPO (%.0fs)", st.RPOSeconds)
	}
	if st.Replication != nil && !st.Replication.LinkUp {
		line += "  link down"
		if st.Replication.LastError != "" {
			line += ": " + st.Replication.LastError
		}
	}
	if st.Rejoin != nil {
		line += "  rejoining " + st.Rejoin.Leader
	}
	if g := st.Storage; g != nil && g.Geo {
		line += storageLine(*g)
	}
	fmt.Println(line)
	if f := st.LastFence; f != nil && f.SetAside != nil {
		fmt.Printf("%-10s set aside %d changes (%d..%d) on its return at epoch %d: %s\n", "", f.SetAside.Changes, f.SetAside.FromSeq, f.SetAside.ToSeq, f.ToEpoch, f.SetAside.File)
	}
}

// storageLine is the storage account's geo-replication in a status line.
func storageLine(g dr.StorageSync) string {
	switch {
	case g.Held:
		return fmt.Sprintf("  storage: holds %d (passive)", g.Backlog)
	case g.LastError != "" && g.Backlog > 0:
		return fmt.Sprintf("  storage: %d to ship, failing: %s", g.Backlog, g.LastError)
	case g.Backlog > 0:
		return fmt.Sprintf("  storage: %d to ship", g.Backlog)
	}
	return "  storage: shipped"
}

func printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

// runPlan runs a failover or failback and prints and keeps its report.
func runPlan(d *dr.Deployment, plan dr.Plan, jsonOutput bool) error {
	o, err := d.Orchestrator()
	if err != nil {
		return err
	}
	if !jsonOutput {
		o.Progress = os.Stdout
		fmt.Printf("%s: %s -> %s\n", plan.Kind, plan.From, plan.To)
	}
	ctx, cancel := signalContext()
	defer cancel()
	rep, runErr := o.Run(ctx, plan)
	file, err := keepReport(d, string(rep.Kind), rep.Started, rep)
	if jsonOutput {
		printJSON(rep)
	} else {
		printReport(rep, file)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tandem dr: the report was not written: %v\n", err)
	}
	return runErr
}

func printReport(r dr.Report, file string) {
	fmt.Printf("%s %s in %.3fs", r.Kind, r.Outcome, r.Seconds)
	if r.EpochAfter > 0 {
		fmt.Printf(": %s leads epoch %d", r.To, r.EpochAfter)
	}
	fmt.Println()
	if r.Outcome == "succeeded" {
		fmt.Printf("  recovery point: %d changes lost", r.LostChanges)
		if r.RPOSeconds > 0 {
			fmt.Printf(" (%.3fs of changes)", r.RPOSeconds)
		}
		fmt.Printf("; replication lag at the start %.3fs\n", r.LagSecondsAtStart)
		fmt.Printf("  recovery time: writes unavailable for %.3fs\n", r.RTOSeconds)
	}
	if r.Note != "" {
		fmt.Println("  " + r.Note)
	}
	if file != "" {
		fmt.Println("  report: " + file)
	}
}

func keepReport(d *dr.Deployment, kind string, started int64, v any) (string, error) {
	dir := filepath.Join(d.Dir(), "reports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	file := filepath.Join(dir, fmt.Sprintf("%s-%s.json", kind, time.UnixMilli(started).UTC().Format("20060102T150405.000Z")))
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	return file, atomicfile.Write(file, append(b, '\n'), 0o600)
}

func drFailoverCmd(load func() (*dr.Deployment, error)) *cobra.Command {
	var (
		planned, unplanned, force bool
		to                        string
		f                         planFlags
	)
	cmd := &cobra.Command{
		Use:   "failover (--planned | --unplanned)",
		Short: "Move service to the other region",
		Long: `--planned: the active region stops its job scheduling and user writes, drains
or cancels running work, and is sealed; the other region catches up with its
last change (nothing is lost), is promoted, the router switches, and the new
active region is verified (health, asset counts, a smoke job).

--unplanned: the active region does not answer (it is checked three times);
the other region is promoted at once and the report says exactly which
changes it had not received. If the lost region comes back it sees the
higher epoch, refuses writes, sets its unreplicated changes aside and
follows.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if planned == unplanned {
				return fmt.Errorf("choose --planned or --unplanned")
			}
			d, err := load()
			if err != nil {
				return err
			}
			plan := f.plan()
			plan.Force = force
			plan.Kind = dr.PlannedFailover
			if unplanned {
				plan.Kind = dr.UnplannedFailover
			}
			if to == "" {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				from, err := d.Leader(ctx)
				cancel()
				if err != nil {
					if !unplanned {
						return err
					}
					// The leader does not answer: fail over away from the home
					// region, or to it if the home region is the one not answering.
					from = d.Home()
				}
				plan.From, plan.To = from, d.Other(from)
			} else {
				plan.From, plan.To = d.Other(to), to
			}
			return runPlan(d, plan, f.jsonOutput)
		},
	}
	cmd.Flags().BoolVar(&planned, "planned", false, "a planned failover: nothing is lost")
	cmd.Flags().BoolVar(&unplanned, "unplanned", false, "the active region is down: promote the other at once")
	cmd.Flags().BoolVar(&force, "force", false, "with --unplanned: skip the check that the active region does not answer")
	cmd.Flags().StringVar(&to, "to", "", "the region to move service to (default: the one that does not lead)")
	f.add(cmd)
	return cmd
}

func drFailbackCmd(load func() (*dr.Deployment, error)) *cobra.Command {
	var (
		to string
		f  planFlags
	)
	cmd := &cobra.Command{
		Use:   "failback",
		Short: "Move service back to the home region once it has caught up",
		Long: `Wait until the former primary has rejoined (its unreplicated changes, if any,
set aside) and caught up with everything written during the outage, then move
service back with a planned failover, and report it.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := load()
			if err != nil {
				return err
			}
			if to == "" {
				to = d.Home()
			}
			plan := f.plan()
			plan.Kind, plan.From, plan.To = dr.Failback, d.Other(to), to
			return runPlan(d, plan, f.jsonOutput)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the region to move service back to (default: the deployment's home region)")
	f.add(cmd)
	return cmd
}

func drDrillCmd(load func() (*dr.Deployment, error)) *cobra.Command {
	var f planFlags
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Run a planned failover and a failback on the live deployment and report the measured RPO and RTO",
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := load()
			if err != nil {
				return err
			}
			o, err := d.Orchestrator()
			if err != nil {
				return err
			}
			if !f.jsonOutput {
				o.Progress = os.Stdout
			}
			ctx, cancel := signalContext()
			defer cancel()
			rep, runErr := dr.Drill(ctx, d, o, f.plan())
			file, err := keepReport(d, "drill", rep.Started, rep)
			if f.jsonOutput {
				printJSON(rep)
			} else {
				fmt.Printf("drill %s in %.3fs\n", rep.Outcome, float64(rep.Finished-rep.Started)/1000)
				fmt.Printf("  RPO: %d changes lost; exposure before each move (replication lag) at most %.3fs\n", rep.LostChanges, rep.RPOExposedSeconds)
				fmt.Printf("  RTO: writes unavailable %.3fs in the failover, %.3fs in the failback\n", rep.FailoverRTOSeconds, rep.FailbackRTOSeconds)
				if file != "" {
					fmt.Println("  report: " + file)
				}
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "tandem dr: the report was not written: %v\n", err)
			}
			return runErr
		},
	}
	f.add(cmd)
	return cmd
}
