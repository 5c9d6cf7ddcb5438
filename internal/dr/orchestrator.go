package dr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
)

// RegionAPI is what the orchestrator does to a region (Client implements
// it over the region's API).
type RegionAPI interface {
	Status(ctx context.Context, assets bool) (Status, error)
	// Probe returns nil if the region answers at all.
	Probe(ctx context.Context) error
	// Lease returns ErrLeaseHeld (wrapped, naming the holder) when someone
	// else holds it.
	Lease(ctx context.Context, req LeaseRequest) error
	Drain(ctx context.Context, req DrainRequest) (DrainResult, error)
	Seal(ctx context.Context) (SealResult, error)
	Resume(ctx context.Context) error
	Promote(ctx context.Context, req PromoteRequest) (PromoteResult, error)
	// Smoke runs a small job to its end and describes how it ended.
	Smoke(ctx context.Context) (string, error)
	StoreReport(ctx context.Context, r Report) error
}

// RouterAPI reads the global endpoint's view.
type RouterAPI interface {
	Status(ctx context.Context) (RouterStatus, error)
}

// Orchestrator executes runbooks.
type Orchestrator struct {
	Regions map[string]RegionAPI
	// Router is nil for a deployment without a global endpoint.
	Router RouterAPI
	// Progress, if set, gets a line per finished step.
	Progress io.Writer
	Now      func() time.Time
	// CallTimeout bounds each call (10 s); probes get a third of it.
	CallTimeout time.Duration
}

// Run executes plan and returns its report, which it also stores in the
// region that leads at the end (both regions get it by replication).
func (o *Orchestrator) Run(ctx context.Context, plan Plan) (Report, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	timeout := o.CallTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	for _, name := range []string{plan.From, plan.To} {
		if o.Regions[name] == nil {
			return Report{}, fmt.Errorf("the deployment has no region %q", name)
		}
	}
	if plan.Holder == "" {
		plan.Holder = "tandem-dr-" + uuid.NewString()[:8]
	}
	plan.Router = o.Router != nil
	m := NewMachine(plan)
	a := m.Start(now())
	printed := 0
	for a.Kind != ActDone && a.Kind != ActFail {
		if a.After > 0 {
			select {
			case <-ctx.Done():
				return m.Report(plan.Holder, now()), ctx.Err()
			case <-time.After(a.After):
			}
		}
		obs := o.do(ctx, a, timeout, plan.Holder)
		a = m.Next(obs, now())
		printed = o.progress(m, printed)
	}
	rep := m.Report(plan.Holder, now())
	o.progress(m, printed)
	// Keep the report where the workspace now lives.
	keeper := plan.To
	if rep.Outcome == "failed" && rep.EpochAfter == 0 {
		keeper = plan.From
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := o.Regions[keeper].StoreReport(cctx, rep); err != nil && o.Progress != nil {
		fmt.Fprintf(o.Progress, "  (the report could not be stored in %s: %v)\n", keeper, err)
	}
	if a.Kind == ActFail {
		return rep, errors.New(a.Reason)
	}
	return rep, nil
}

func (o *Orchestrator) progress(m *Machine, printed int) int {
	if o.Progress == nil {
		return len(m.steps)
	}
	for ; printed < len(m.steps); printed++ {
		s := m.steps[printed]
		if !s.finished {
			break
		}
		line := fmt.Sprintf("  %-10s %7.3fs  %s", s.Name, s.Seconds, s.Detail)
		if s.Warning != "" {
			line += "  (warning: " + s.Warning + ")"
		}
		if s.Error != "" {
			line += "  ERROR: " + s.Error
		}
		fmt.Fprintln(o.Progress, line)
	}
	return printed
}

func (o *Orchestrator) do(ctx context.Context, a Action, timeout time.Duration, holder string) Observation {
	var obs Observation
	errStr := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	if a.Kind == ActRouter {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		rs, err := o.Router.Status(cctx)
		obs.Router, obs.Err = &rs, errStr(err)
		return obs
	}
	r := o.Regions[a.Region]
	if a.Kind == ActProbe {
		timeout /= 3
	}
	if a.Kind == ActSmoke {
		timeout = 3 * timeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch a.Kind {
	case ActStatus:
		st, err := r.Status(cctx, a.Assets)
		obs.Status, obs.Err = &st, errStr(err)
	case ActProbe:
		obs.Reachable = r.Probe(cctx) == nil
	case ActLease:
		err := r.Lease(cctx, LeaseRequest{Holder: holder, Operation: "failover", TTLSeconds: 600, Release: a.Release})
		var held *LeaseHeldError
		if errors.As(err, &held) {
			obs.LeaseHolder = held.Holder
		} else {
			obs.Err = errStr(err)
		}
	case ActDrain:
		d, err := r.Drain(cctx, DrainRequest{ToRegion: a.To, CancelRunning: a.Cancel})
		obs.Drain, obs.Err = &d, errStr(err)
	case ActSeal:
		s, err := r.Seal(cctx)
		obs.Seal, obs.Err = &s, errStr(err)
	case ActResume:
		obs.Err = errStr(r.Resume(cctx))
	case ActPromote:
		p, err := r.Promote(cctx, PromoteRequest{Planned: a.Planned, ExpectSeq: a.ExpectSeq, StartClusters: a.StartClusters})
		obs.Promote, obs.Err = &p, errStr(err)
	case ActSmoke:
		s, err := r.Smoke(cctx)
		obs.Smoke, obs.Err = s, errStr(err)
	default:
		obs.Err = fmt.Sprintf("unknown action %q", a.Kind)
	}
	return obs
}

// LeaseHeldError is the lease someone else holds.
type LeaseHeldError struct {
	Holder string
}

func (e *LeaseHeldError) Error() string { return "the failover lease is held by " + e.Holder }

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// MarshalReport is the report as stored and printed.
func MarshalReport(r Report) ([]byte, error) { return json.MarshalIndent(r, "", "  ") }
