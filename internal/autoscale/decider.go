package autoscale

import (
	"fmt"
	"time"
)

// Decider runs one cluster's policy tick after tick: it keeps the history
// the policy reads (trimmed to its Lookback), asks for a decision, checks
// that it can be carried out and records it. The live control loop holds
// one per autoscaling cluster and the simulator one per run, so both drive
// a policy the same way. It does no I/O and reads no clock; it is not safe
// for concurrent use.
type Decider struct {
	policy Policy
	hist   History
}

// NewDecider returns a Decider for p with an empty history.
func NewDecider(p Policy) *Decider { return &Decider{policy: p} }

// Policy is the policy the Decider runs.
func (d *Decider) Policy() Policy { return d.policy }

// SetPolicy switches to p (the cluster's spec was edited), keeping the
// history: the signals seen stay true whatever the policy.
func (d *Decider) SetPolicy(p Policy) { d.policy = p }

// Tick decides at now on the signals s. An error means the policy made a
// decision that cannot be carried out (ErrBadDecision); nothing is
// recorded then and the caller should do nothing this tick.
func (d *Decider) Tick(s Snapshot, now time.Time) (Decision, error) {
	if n := len(d.hist); n > 0 && now.Before(d.hist[n-1].Snapshot.Time) {
		return Decision{}, fmt.Errorf("%w: tick at %s is before the previous one at %s", ErrBadDecision, now, d.hist[n-1].Snapshot.Time)
	}
	d.hist = d.hist.Since(now.Add(-d.policy.Lookback()))
	dec := d.policy.Decide(s, d.hist, now)
	if err := dec.Check(s); err != nil {
		return Decision{}, fmt.Errorf("%s policy: %w", d.policy.Name(), err)
	}
	d.hist = append(d.hist, Record{Snapshot: s, Decision: dec})
	return dec, nil
}

// History is what the Decider keeps, oldest first. The caller must not
// change it.
func (d *Decider) History() History { return d.hist }
