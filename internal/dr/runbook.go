package dr

import (
	"fmt"
	"maps"
	"strings"
	"time"
)

// The failover and failback runbooks are state machines: Next takes what
// the last action observed and the time, and returns the next action. They
// do no I/O and read no clock, so scripted scenarios replay them exactly
// (testdata/*.txt); the Orchestrator executes their actions.
//
// Planned failover (the article's workflow, with nothing lost):
//
//	preflight  both regions answer; the target follows the source at its epoch
//	lease      take the failover lease in the target (a second run waits for the first)
//	drain      the source refuses user writes and new scheduled runs; running work finishes or is cancelled
//	seal       the source refuses every write; its last sequence number is final
//	catch-up   the target applies every change up to it; asset counts must match
//	promote    the target leads a new epoch; the source, sealed, rejoins as its follower
//	router     the global endpoint sends the workspace URL to the target
//	former     the source reports that it follows the target (a warning if not)
//	verify     health through the router and a smoke job in the new active region
//
// Unplanned failover (the source is down): detect that it does not answer,
// lease, promote at once (what the target had not received is reported as
// lost), router, verify. Failback is a planned failover back to the former
// primary once it has rejoined and caught up.

// Kind is the kind of runbook.
type Kind string

const (
	PlannedFailover   Kind = "planned-failover"
	UnplannedFailover Kind = "unplanned-failover"
	Failback          Kind = "failback"
)

// Plan is what a runbook is asked to do.
type Plan struct {
	Kind Kind
	// From is the region that leads now and To the one that will.
	From, To string
	// Holder identifies this run in the failover lease.
	Holder string
	// CancelRunning cancels running work at once; otherwise it may finish
	// for DrainTimeout and is cancelled then.
	CancelRunning bool
	DrainTimeout  time.Duration
	// CatchUpTimeout bounds each wait (catch-up, router switch, rejoin).
	CatchUpTimeout time.Duration
	// MaxLag is the most changes the target may be behind at preflight
	// (and, for a failback, before it starts).
	MaxLag int64
	// Router: whether a global endpoint is to be switched and checked.
	Router bool
	// Force skips the detection of an unplanned failover (the operator
	// knows the source is gone) and lets it run while the source answers.
	Force bool
	// Smoke runs a smoke job in the new active region.
	Smoke bool
	// StartClusters starts, in the new active region, the clusters that were
	// running in the former one (by default they stay terminated, as
	// Databricks leaves them after a failover).
	StartClusters bool
}

// ActionKind is one kind of I/O the orchestrator performs.
type ActionKind string

const (
	ActStatus  ActionKind = "status"  // Region; Assets to count assets
	ActProbe   ActionKind = "probe"   // Region: does it answer at all
	ActLease   ActionKind = "lease"   // Region; Release
	ActDrain   ActionKind = "drain"   // Region, To, Cancel
	ActSeal    ActionKind = "seal"    // Region
	ActPromote ActionKind = "promote" // Region, Planned, ExpectSeq
	ActResume  ActionKind = "resume"  // Region
	ActRouter  ActionKind = "router"
	ActSmoke   ActionKind = "smoke" // Region
	ActDone    ActionKind = "done"
	ActFail    ActionKind = "fail"
)

// Action is what the machine asks for. After is how long to wait first.
type Action struct {
	Kind      ActionKind
	Region    string
	To        string
	Assets    bool
	Release   bool
	Cancel    bool
	Planned   bool
	ExpectSeq int64
	// StartClusters asks the promoted region to start the clusters that
	// were running in the former leader (ActPromote).
	StartClusters bool
	After         time.Duration
	// Reason says why the runbook ended (ActFail, or ActDone for a
	// failover that was already done).
	Reason string
}

// Observation is the result of the last action.
type Observation struct {
	Err string
	// Status of the region asked about (ActStatus).
	Status *Status
	// Reachable answers ActProbe.
	Reachable bool
	// LeaseHolder is set when the lease is held by someone else.
	LeaseHolder string
	Drain       *DrainResult
	Seal        *SealResult
	Promote     *PromoteResult
	Router      *RouterStatus
	// Smoke is the smoke job's outcome ("" if it could not run).
	Smoke string
}

// StepReport is one step of a run, as the report shows it.
type StepReport struct {
	Name     string  `json:"name"`
	Started  int64   `json:"started"`
	Seconds  float64 `json:"seconds"`
	Detail   string  `json:"detail,omitempty"`
	Warning  string  `json:"warning,omitempty"`
	Error    string  `json:"error,omitempty"`
	finished bool
}

// Machine runs one runbook.
type Machine struct {
	Plan Plan

	step    string
	last    Action
	started time.Time
	steps   []StepReport
	// waits
	deadline time.Time
	probes   int
	// facts
	from, to      *Status
	epochBefore   int64
	drain         *DrainResult
	drainStart    time.Time
	cancelled     bool
	seal          *SealResult
	storageWait   bool
	promote       *PromoteResult
	router        *RouterStatus
	assetsBefore  map[string]int
	assetsAfter   map[string]int
	smoke         string
	writesStopped time.Time
	// restored is when the new leader served writes through the workspace
	// URL (the router switched, or the promotion without a router).
	restored    time.Time
	verified    time.Time
	outcome     string
	err         string
	rollback    bool
	alreadyDone bool
	leased      bool
	finishing   bool
}

// NewMachine returns a machine for plan.
func NewMachine(plan Plan) *Machine {
	if plan.DrainTimeout == 0 {
		plan.DrainTimeout = 30 * time.Second
	}
	if plan.CatchUpTimeout == 0 {
		plan.CatchUpTimeout = 60 * time.Second
	}
	if plan.MaxLag == 0 {
		plan.MaxLag = 10000
	}
	return &Machine{Plan: plan}
}

// poll is the pause between two looks at something that is expected to
// change soon.
const poll = 100 * time.Millisecond

// Start returns the first action.
func (m *Machine) Start(now time.Time) Action {
	m.started = now
	switch m.Plan.Kind {
	case UnplannedFailover:
		if m.Plan.Force {
			m.begin("detect", now, "skipped (--force)")
			m.end(now, "")
			m.begin("preflight", now, "")
			return m.act(Action{Kind: ActStatus, Region: m.Plan.To})
		}
		m.begin("detect", now, "")
		return m.act(Action{Kind: ActProbe, Region: m.Plan.From})
	case Failback:
		m.begin("preflight", now, "")
		m.deadline = now.Add(m.Plan.CatchUpTimeout)
		return m.act(Action{Kind: ActStatus, Region: m.Plan.From})
	default:
		m.begin("preflight", now, "")
		return m.act(Action{Kind: ActStatus, Region: m.Plan.From})
	}
}

func (m *Machine) act(a Action) Action {
	m.last = a
	return a
}

func (m *Machine) begin(name string, now time.Time, detail string) {
	m.step = name
	m.steps = append(m.steps, StepReport{Name: name, Started: now.UnixMilli(), Detail: detail})
}

func (m *Machine) cur() *StepReport { return &m.steps[len(m.steps)-1] }

func (m *Machine) end(now time.Time, detail string) {
	s := m.cur()
	if s.finished {
		return
	}
	s.finished = true
	s.Seconds = now.Sub(time.UnixMilli(s.Started)).Seconds()
	if detail != "" {
		s.Detail = detail
	}
}

func (m *Machine) warn(msg string) { m.cur().Warning = msg }

// fail ends the run with an error. Before the promotion, a source that was
// drained or sealed resumes leading and the lease is released; after it,
// nothing is undone (the target leads) and the error is reported.
func (m *Machine) fail(now time.Time, format string, args ...any) Action {
	msg := fmt.Sprintf(format, args...)
	if m.err == "" {
		m.err = msg
		m.cur().Error = msg
		m.end(now, "")
	}
	if m.promote == nil && (m.drain != nil || m.seal != nil) && !m.rollback {
		m.rollback = true
		m.begin("rollback", now, "the source leads again")
		return m.act(Action{Kind: ActResume, Region: m.Plan.From})
	}
	return m.finish(now)
}

// finish releases the lease (if taken) and ends.
func (m *Machine) finish(now time.Time) Action {
	if m.leased && !m.finishing {
		m.finishing = true
		return m.act(Action{Kind: ActLease, Region: m.Plan.To, Release: true})
	}
	if m.err != "" {
		m.outcome = "failed"
		return m.act(Action{Kind: ActFail, Reason: m.err})
	}
	if m.alreadyDone {
		m.outcome = "already-done"
		return m.act(Action{Kind: ActDone, Reason: fmt.Sprintf("%s already leads (epoch %d): nothing to do", m.Plan.To, m.to.Epoch)})
	}
	m.outcome = "succeeded"
	return m.act(Action{Kind: ActDone})
}

// Next returns the action that follows the observation of the last one.
func (m *Machine) Next(o Observation, now time.Time) Action {
	a := m.last
	switch a.Kind {
	case ActResume:
		if o.Err != "" {
			m.cur().Error = "resume failed: " + o.Err
		}
		m.end(now, "")
		return m.finish(now)
	case ActLease:
		if a.Release {
			m.leased = false
			return m.finish(now)
		}
	}
	if m.err != "" {
		return m.finish(now)
	}
	switch m.step {
	case "detect":
		return m.detect(o, now)
	case "preflight":
		return m.preflight(o, now)
	case "lease":
		return m.lease(o, now)
	case "drain":
		return m.drainStep(o, now)
	case "seal":
		return m.sealStep(o, now)
	case "catch-up":
		return m.catchUp(o, now)
	case "promote":
		return m.promoteStep(o, now)
	case "router":
		return m.routerStep(o, now)
	case "former":
		return m.former(o, now)
	case "verify":
		return m.verify(o, now)
	}
	return m.fail(now, "runbook in an unknown step %q", m.step)
}

func (m *Machine) detect(o Observation, now time.Time) Action {
	if o.Reachable {
		return m.fail(now, "%s answers: use a planned failover (nothing is lost), or --force if it must not lead any more", m.Plan.From)
	}
	m.probes++
	if m.probes < 3 {
		return m.act(Action{Kind: ActProbe, Region: m.Plan.From, After: time.Second})
	}
	m.end(now, fmt.Sprintf("%s did not answer %d probes", m.Plan.From, m.probes))
	m.begin("preflight", now, "")
	return m.act(Action{Kind: ActStatus, Region: m.Plan.To})
}

func (m *Machine) preflight(o Observation, now time.Time) Action {
	a := m.last
	if o.Err != "" {
		if m.Plan.Kind == Failback && now.Before(m.deadline) {
			return m.act(Action{Kind: ActStatus, Region: a.Region, After: time.Second})
		}
		return m.fail(now, "%s does not answer: %s", a.Region, o.Err)
	}
	switch a.Region {
	case m.Plan.From:
		m.from = o.Status
		return m.act(Action{Kind: ActStatus, Region: m.Plan.To})
	}
	m.to = o.Status
	to, from := m.to, m.from
	m.epochBefore = to.Epoch
	if from != nil {
		m.epochBefore = max(from.Epoch, to.Epoch)
	}
	// Already done: the target leads at an epoch above the source's.
	if to.Role.Leads() && (from == nil || to.Epoch > from.Epoch || !from.Role.Leads()) {
		m.alreadyDone = true
		m.end(now, fmt.Sprintf("%s already leads epoch %d", m.Plan.To, to.Epoch))
		return m.finish(now)
	}
	if to.Role != Passive {
		return m.fail(now, "%s is %s, not a passive follower", m.Plan.To, to.Role)
	}
	if to.Rejoin != nil {
		if m.Plan.Kind == Failback && now.Before(m.deadline) {
			return m.act(Action{Kind: ActStatus, Region: m.Plan.To, After: time.Second})
		}
		return m.fail(now, "%s has not rejoined %s yet", m.Plan.To, to.Rejoin.Leader)
	}
	if m.Plan.Kind == UnplannedFailover {
		m.end(now, fmt.Sprintf("%s applied up to %d at epoch %d", m.Plan.To, to.LastSeq, to.Epoch))
		return m.takeLease(now)
	}
	if !from.Role.Leads() {
		return m.fail(now, "%s is %s: it does not lead, so there is nothing to fail over from", m.Plan.From, from.Role)
	}
	if to.ActiveRegion != m.Plan.From || to.Epoch != from.Epoch {
		return m.fail(now, "%s follows %s at epoch %d, not %s at epoch %d", m.Plan.To, to.ActiveRegion, to.Epoch, m.Plan.From, from.Epoch)
	}
	lag := max(from.LastSeq-to.LastSeq, 0)
	if lag > m.Plan.MaxLag {
		if m.Plan.Kind == Failback && now.Before(m.deadline) {
			m.from = nil
			return m.act(Action{Kind: ActStatus, Region: m.Plan.From, After: time.Second})
		}
		return m.fail(now, "%s is %d changes behind %s (more than %d): let it catch up first", m.Plan.To, lag, m.Plan.From, m.Plan.MaxLag)
	}
	detail := fmt.Sprintf("%s leads epoch %d at change %d; %s is %d changes behind", m.Plan.From, from.Epoch, from.LastSeq, m.Plan.To, lag)
	if to.LagSeconds != nil {
		detail += fmt.Sprintf(" (%.3fs)", *to.LagSeconds)
	}
	m.end(now, detail)
	return m.takeLease(now)
}

func (m *Machine) takeLease(now time.Time) Action {
	m.begin("lease", now, "")
	m.deadline = now.Add(m.Plan.CatchUpTimeout)
	return m.act(Action{Kind: ActLease, Region: m.Plan.To})
}

func (m *Machine) lease(o Observation, now time.Time) Action {
	if o.LeaseHolder != "" {
		// Another run is on it: wait for it to end, then look again.
		if now.After(m.deadline) {
			return m.fail(now, "the failover lease in %s is held by %s", m.Plan.To, o.LeaseHolder)
		}
		m.cur().Detail = "waiting for " + o.LeaseHolder
		return m.act(Action{Kind: ActLease, Region: m.Plan.To, After: 200 * time.Millisecond})
	}
	if o.Err != "" {
		return m.fail(now, "lease in %s: %s", m.Plan.To, o.Err)
	}
	m.leased = true
	if m.cur().Detail != "" {
		// The other run has finished: see what it did before doing anything.
		m.end(now, m.cur().Detail+"; it has finished")
		m.begin("preflight", now, "again, after another run")
		m.from, m.to = nil, nil
		if m.Plan.Kind == UnplannedFailover {
			return m.act(Action{Kind: ActStatus, Region: m.Plan.To})
		}
		return m.act(Action{Kind: ActStatus, Region: m.Plan.From})
	}
	m.end(now, "held by "+m.Plan.Holder)
	if m.Plan.Kind == UnplannedFailover {
		m.begin("promote", now, "")
		return m.act(Action{Kind: ActPromote, Region: m.Plan.To, StartClusters: m.Plan.StartClusters})
	}
	m.begin("drain", now, "")
	m.drainStart = now
	m.writesStopped = now
	m.cancelled = m.Plan.CancelRunning
	return m.act(Action{Kind: ActDrain, Region: m.Plan.From, To: m.Plan.To, Cancel: m.Plan.CancelRunning})
}

func (m *Machine) drainStep(o Observation, now time.Time) Action {
	if o.Err != "" {
		return m.fail(now, "drain %s: %s", m.Plan.From, o.Err)
	}
	if m.drain == nil {
		m.drain = o.Drain
	} else if o.Drain != nil {
		m.drain.ActiveWork = o.Drain.ActiveWork
		m.drain.Cancelled += o.Drain.Cancelled
	}
	if o.Drain != nil && o.Drain.ActiveWork > 0 {
		switch {
		case !m.cancelled && now.Sub(m.drainStart) >= m.Plan.DrainTimeout:
			m.cancelled = true
			m.warn(fmt.Sprintf("%d runs still running after %s: cancelled", o.Drain.ActiveWork, m.Plan.DrainTimeout))
			return m.act(Action{Kind: ActDrain, Region: m.Plan.From, To: m.Plan.To, Cancel: true})
		case m.cancelled && now.Sub(m.drainStart) >= m.Plan.DrainTimeout+m.Plan.CatchUpTimeout:
			m.warn(fmt.Sprintf("%d runs did not stop: they are carried over as they are", o.Drain.ActiveWork))
		default:
			return m.act(Action{Kind: ActDrain, Region: m.Plan.From, To: m.Plan.To, After: 250 * time.Millisecond})
		}
	}
	m.end(now, fmt.Sprintf("user writes and new runs refused; %d runs cancelled", m.drain.Cancelled))
	m.begin("seal", now, "")
	return m.act(Action{Kind: ActSeal, Region: m.Plan.From})
}

func (m *Machine) sealStep(o Observation, now time.Time) Action {
	if o.Err != "" {
		return m.fail(now, "seal %s: %s", m.Plan.From, o.Err)
	}
	m.seal = o.Seal
	m.end(now, fmt.Sprintf("%s's log ends at change %d", m.Plan.From, m.seal.LastSeq))
	m.begin("catch-up", now, "")
	m.deadline = now.Add(m.Plan.CatchUpTimeout)
	return m.act(Action{Kind: ActStatus, Region: m.Plan.To, Assets: true})
}

func (m *Machine) catchUp(o Observation, now time.Time) Action {
	if m.storageWait {
		return m.storageCatchUp(o, now)
	}
	if o.Err == "" && o.Status.LastSeq >= m.seal.LastSeq {
		m.assetsBefore = m.seal.Assets
		m.assetsAfter = o.Status.Assets
		if !maps.Equal(m.seal.Assets, o.Status.Assets) {
			return m.fail(now, "asset counts differ after catch-up: %s has %v, %s has %v", m.Plan.From, m.seal.Assets, m.Plan.To, o.Status.Assets)
		}
		if !storageCaughtUp(m.seal.Storage) {
			// The metadata is there; the storage account's contents may
			// still be on their way: wait for the sealed source's backlog.
			m.storageWait = true
			return m.act(Action{Kind: ActStatus, Region: m.Plan.From})
		}
		return m.caughtUp(now)
	}
	if now.After(m.deadline) {
		got := "no answer"
		if o.Err == "" {
			got = fmt.Sprintf("change %d", o.Status.LastSeq)
		}
		return m.fail(now, "%s did not catch up with change %d within %s (%s)", m.Plan.To, m.seal.LastSeq, m.Plan.CatchUpTimeout, got)
	}
	return m.act(Action{Kind: ActStatus, Region: m.Plan.To, Assets: true, After: 50 * time.Millisecond})
}

// storageCatchUp waits until the sealed source's storage account has
// shipped every change to the target (its Last Sync Time passes the seal).
func (m *Machine) storageCatchUp(o Observation, now time.Time) Action {
	if o.Err == "" && o.Status != nil && storageCaughtUp(o.Status.Storage) {
		m.seal.Storage = o.Status.Storage
		return m.caughtUp(now)
	}
	if now.After(m.deadline) {
		got := "no answer"
		if o.Err == "" && o.Status != nil && o.Status.Storage != nil {
			got = fmt.Sprintf("%d changes not shipped", o.Status.Storage.Backlog)
		}
		return m.fail(now, "%s's storage account did not ship its contents to %s within %s (%s)", m.Plan.From, m.Plan.To, m.Plan.CatchUpTimeout, got)
	}
	return m.act(Action{Kind: ActStatus, Region: m.Plan.From, After: 50 * time.Millisecond})
}

func (m *Machine) caughtUp(now time.Time) Action {
	detail := fmt.Sprintf("%s applied every change up to %d; asset counts match", m.Plan.To, m.seal.LastSeq)
	if s := m.seal.Storage; s != nil && s.Geo {
		detail += "; storage contents shipped"
	}
	m.end(now, detail)
	m.begin("promote", now, "")
	return m.act(Action{Kind: ActPromote, Region: m.Plan.To, Planned: true, ExpectSeq: m.seal.LastSeq, StartClusters: m.Plan.StartClusters})
}

func (m *Machine) promoteStep(o Observation, now time.Time) Action {
	if o.Err != "" {
		return m.fail(now, "promote %s: %s", m.Plan.To, o.Err)
	}
	if m.promote == nil {
		m.promote = o.Promote
		if m.Plan.Kind == UnplannedFailover {
			m.writesStopped = now
			if m.promote.LeaderContact > 0 {
				m.writesStopped = time.UnixMilli(m.promote.LeaderContact)
			}
			// Asset counts of the new leader, for the record.
			return m.act(Action{Kind: ActStatus, Region: m.Plan.To, Assets: true})
		}
	} else if o.Status != nil {
		m.assetsAfter = o.Status.Assets
	}
	p := m.promote
	detail := fmt.Sprintf("%s leads epoch %d from change %d", m.Plan.To, p.Epoch, p.StartSeq)
	if p.AlreadyActive {
		detail = fmt.Sprintf("%s already led epoch %d", m.Plan.To, p.Epoch)
	}
	if p.LostChanges > 0 {
		detail += fmt.Sprintf("; %d changes (%d..%d) the former leader had were not received", p.LostChanges, p.AppliedSeq+1, p.LeaderSeq)
	}
	if p.StartedClusters > 0 {
		detail += fmt.Sprintf("; %d clusters that ran in %s started", p.StartedClusters, m.Plan.From)
	}
	if p.StartClustersError != "" {
		m.warn("clusters not started: " + p.StartClustersError)
	}
	m.end(now, detail)
	if !m.Plan.Router {
		m.restored = now
	}
	if m.Plan.Router {
		m.begin("router", now, "")
		m.deadline = now.Add(m.Plan.CatchUpTimeout)
		return m.act(Action{Kind: ActRouter})
	}
	return m.afterRouter(now)
}

func (m *Machine) routerStep(o Observation, now time.Time) Action {
	if o.Err == "" && o.Router.ActiveRegion == m.Plan.To && o.Router.Epoch >= m.promote.Epoch {
		m.router = o.Router
		m.restored = now
		m.end(now, fmt.Sprintf("the workspace URL reaches %s (epoch %d)", m.Plan.To, o.Router.Epoch))
		return m.afterRouter(now)
	}
	if now.After(m.deadline) {
		return m.fail(now, "the router did not switch to %s within %s", m.Plan.To, m.Plan.CatchUpTimeout)
	}
	return m.act(Action{Kind: ActRouter, After: poll})
}

func (m *Machine) afterRouter(now time.Time) Action {
	if m.Plan.Kind == UnplannedFailover {
		return m.startVerify(now)
	}
	m.begin("former", now, "")
	m.deadline = now.Add(10 * time.Second)
	return m.act(Action{Kind: ActStatus, Region: m.Plan.From})
}

func (m *Machine) former(o Observation, now time.Time) Action {
	if o.Err == "" && o.Status.Role == Passive && o.Status.ActiveRegion == m.Plan.To && o.Status.Rejoin == nil {
		m.end(now, fmt.Sprintf("%s follows %s", m.Plan.From, m.Plan.To))
		return m.startVerify(now)
	}
	if now.After(m.deadline) {
		if o.Err != "" {
			m.warn(fmt.Sprintf("%s did not answer (%s): it rejoins as a follower when it sees epoch %d", m.Plan.From, o.Err, m.promote.Epoch))
		} else {
			m.warn(fmt.Sprintf("%s is %s and does not follow %s yet", m.Plan.From, o.Status.Role, m.Plan.To))
		}
		m.end(now, "")
		return m.startVerify(now)
	}
	return m.act(Action{Kind: ActStatus, Region: m.Plan.From, After: poll})
}

func (m *Machine) startVerify(now time.Time) Action {
	m.begin("verify", now, "")
	if m.Plan.Smoke {
		return m.act(Action{Kind: ActSmoke, Region: m.Plan.To})
	}
	return m.act(Action{Kind: ActStatus, Region: m.Plan.To})
}

func (m *Machine) verify(o Observation, now time.Time) Action {
	if m.last.Kind == ActSmoke {
		// The region leads and the router sends clients to it by now: a
		// smoke job that fails or does not end in time (a cluster and a
		// Spark application start on a busy machine) is reported, and the
		// failover stands.
		m.smoke = o.Smoke
		if o.Err != "" {
			m.smoke = "did not end: " + o.Err
		}
		if !strings.Contains(m.smoke, " SUCCESS") && !strings.Contains(m.smoke, SmokeNotWaited) {
			m.warn(fmt.Sprintf("the smoke job in %s: %s", m.Plan.To, m.smoke))
		}
		return m.act(Action{Kind: ActStatus, Region: m.Plan.To})
	}
	if o.Err != "" {
		return m.fail(now, "verify %s: %s", m.Plan.To, o.Err)
	}
	if o.Status.Role != Active {
		return m.fail(now, "%s is %s after the failover", m.Plan.To, o.Status.Role)
	}
	m.verified = now
	detail := fmt.Sprintf("%s is active at epoch %d", m.Plan.To, o.Status.Epoch)
	if m.smoke != "" {
		detail += "; smoke job: " + m.smoke
	}
	m.end(now, detail)
	return m.finish(now)
}

// Report is what a run did: each step and its duration, what was lost and
// how long writes were unavailable.
type Report struct {
	ID       string       `json:"id"`
	Kind     Kind         `json:"kind"`
	From     string       `json:"from"`
	To       string       `json:"to"`
	Started  int64        `json:"started"`
	Finished int64        `json:"finished"`
	Seconds  float64      `json:"seconds"`
	Outcome  string       `json:"outcome"`
	Error    string       `json:"error,omitempty"`
	Steps    []StepReport `json:"steps"`
	// EpochBefore and EpochAfter: the epoch the source led and the one the
	// target leads.
	EpochBefore int64 `json:"epoch_before"`
	EpochAfter  int64 `json:"epoch_after,omitempty"`
	// Recovery point: the changes not carried over and the span of time
	// they cover (0 for a planned failover).
	LostChanges    int64   `json:"lost_changes"`
	RPOSeconds     float64 `json:"rpo_seconds"`
	LastAppliedSeq int64   `json:"last_applied_seq,omitempty"`
	LeaderSeq      int64   `json:"leader_seq,omitempty"`
	// Recovery time: from when writes stopped (drain; for an unplanned
	// failover, the last contact with the lost region) to when the workspace
	// URL reached the new leader (set only once the run verified it).
	RTOSeconds float64 `json:"rto_seconds"`
	// LagSecondsAtStart is the target's replication lag when the run
	// started: what an unplanned failover at that moment would have lost.
	LagSecondsAtStart float64 `json:"lag_seconds_at_start"`
	// Note says what the figures cannot know.
	Note         string         `json:"note,omitempty"`
	AssetsBefore map[string]int `json:"assets_before,omitempty"`
	AssetsAfter  map[string]int `json:"assets_after,omitempty"`
	Smoke        string         `json:"smoke,omitempty"`
}

// Report returns the run's report; finished is the time of the last action.
func (m *Machine) Report(id string, finished time.Time) Report {
	r := Report{ID: id, Kind: m.Plan.Kind, From: m.Plan.From, To: m.Plan.To, Started: m.started.UnixMilli(), Finished: finished.UnixMilli(),
		Seconds: finished.Sub(m.started).Seconds(), Outcome: m.outcome, Error: m.err, Steps: append([]StepReport(nil), m.steps...),
		EpochBefore: m.epochBefore, AssetsBefore: m.assetsBefore, AssetsAfter: m.assetsAfter, Smoke: m.smoke}
	if r.Outcome == "" {
		r.Outcome = "running"
	}
	if p := m.promote; p != nil {
		r.EpochAfter = p.Epoch
		r.LostChanges, r.LastAppliedSeq, r.LeaderSeq = p.LostChanges, p.AppliedSeq, p.LeaderSeq
	}
	if m.to != nil && m.to.LagSeconds != nil {
		r.LagSecondsAtStart = *m.to.LagSeconds
	}
	if m.Plan.Kind == UnplannedFailover && m.promote != nil && !m.promote.AlreadyActive {
		// The changes known lost span from the newest one received to the
		// last contact with the lost region.
		if r.LostChanges > 0 && m.to != nil && m.to.LastTime > 0 && m.promote.LeaderContact > m.to.LastTime {
			r.RPOSeconds = float64(m.promote.LeaderContact-m.to.LastTime) / 1000
		}
		r.Note = fmt.Sprintf("%s may have committed changes after its last contact with %s; if it comes back they are set aside there (never merged) and listed in its status (last_fence.set_aside).", m.Plan.From, m.Plan.To)
	}
	if !m.verified.IsZero() && !m.restored.IsZero() && !m.writesStopped.IsZero() {
		r.RTOSeconds = m.restored.Sub(m.writesStopped).Seconds()
	}
	return r
}

// Outcome is "succeeded", "already-done", "failed" or "" while running.
func (m *Machine) Outcome() string { return m.outcome }
