package dr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/replication"
	"github.com/tandemdata/tandem/internal/store"
)

// Work is the running work a planned failover drains or cancels (job runs
// today; the compute package adds cluster commands). The jobs service
// implements it.
type Work interface {
	// ActiveWork counts the pieces of work still running.
	ActiveWork(ctx context.Context) (int, error)
	// CancelWork asks every running piece to stop and returns how many it
	// asked.
	CancelWork(ctx context.Context) (int, error)
}

// RouterView reports the global endpoint's view of the active epoch.
type RouterView interface {
	View(ctx context.Context) (*View, error)
}

// Config configures a Region.
type Config struct {
	// Region is this region's name.
	Region string
	// Secondary makes a region that has no state yet start as a follower
	// of its peer (the primary) instead of leading epoch 1.
	Secondary bool
	// Store is the region's raw store; the Region hands every other user
	// its write gate.
	Store store.Store
	// Peer is the link to the peer region; nil for a region without one.
	Peer *replication.Peer
	// Router, if set, is consulted for a higher epoch too.
	Router RouterView
	// Keys and SharedKeys: the platform keys the follower adopts.
	Keys       *keys.Keyring
	SharedKeys []string
	// RPO is the recovery point objective: a replication lag above it
	// raises an event and the alert metric.
	RPO time.Duration
	// DataDir is where the region writes the changes it sets aside.
	DataDir string
	// Loops run only while the region leads (schedulers, sweeps); they are
	// stopped when it is sealed or passive and started again at promotion.
	Loops []func(context.Context)
	// Work is drained or cancelled by a planned failover.
	Work Work
	Log  *slog.Logger
	// PeerPoll is how often the peer's epoch is checked (1 s).
	PeerPoll time.Duration
	// FollowWait is the follower's long-poll wait (5 s).
	FollowWait time.Duration
	Now        func() time.Time
}

// Region is the disaster-recovery side of one region: its role and epoch,
// the write gate and guard that follow from them, the follower while it is
// passive, the loops while it leads, and the watch on its peer's epoch.
type Region struct {
	cfg  Config
	log  *slog.Logger
	gate *Gate

	mu        sync.Mutex
	state     State
	peer      *PeerStatus
	peerErr   error
	peerAt    time.Time
	router    *View
	follower  *replication.Follower
	followErr error
	// followEnded is when the follower last stopped.
	followEnded time.Time
	promoting   bool
	lag         lagTracker
	// followerApplied is the last change the peer said it had applied when
	// it last read this region's log, at followerAt.
	followerApplied int64
	followerAt      time.Time
	// storage connects the storage account (storage.go).
	storage StorageHooks
	// passiveHooks run once per epoch the region follows in (storage.go);
	// guarded by runMu.
	passiveHooks []func(context.Context) error
	passiveDone  bool
	passiveEpoch int64
	// startClusters starts the former leader's clusters (storage.go).
	startClusters func(context.Context) (int, error)

	opMu sync.Mutex // one transition at a time
	wake chan struct{}
	// watchWake makes the peer watch look now (a sealed region).
	watchWake chan struct{}

	runMu        sync.Mutex // the loops and the follower
	loopsCancel  context.CancelFunc
	loopsDone    chan struct{}
	followCancel context.CancelFunc
	followDone   chan struct{}
}

// New prepares a Region; Open loads its state.
func New(cfg Config) *Region {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PeerPoll == 0 {
		cfg.PeerPoll = time.Second
	}
	if cfg.FollowWait == 0 {
		cfg.FollowWait = 5 * time.Second
	}
	if cfg.RPO == 0 {
		cfg.RPO = time.Minute
	}
	r := &Region{cfg: cfg, log: cfg.Log, wake: make(chan struct{}, 1), watchWake: make(chan struct{}, 1)}
	r.gate = NewGate(cfg.Store, r.refusal)
	return r
}

// Gate is the store the region's services use.
func (r *Region) Gate() *Gate { return r.gate }

// State returns a copy of the region's state, which the caller may change
// (its pointers are copied too; set-aside lists are never changed in place).
func (r *Region) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.state
	if st.Rejoin != nil {
		j := *st.Rejoin
		st.Rejoin = &j
	}
	if st.LastFence != nil {
		f := *st.LastFence
		st.LastFence = &f
	}
	return st
}

// Leads reports whether the region currently holds the epoch.
func (r *Region) Leads() bool { return r.State().Role.Leads() }

// SchedulingPaused reports whether schedulers must not start new work: the
// region does not lead, or a planned failover is draining it.
func (r *Region) SchedulingPaused() bool { return r.State().Role != Active }

func (r *Region) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Open loads the region's state, creating it on first start, and checks the
// peer and the router for a higher epoch before the region accepts a write:
// a former primary that comes back after a failover finds out here and
// starts fenced. When neither answers (the peer is down too), the region
// goes on as its state says; the peer watch keeps checking.
func (r *Region) Open(ctx context.Context) error {
	var st State
	_, err := r.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var ok bool
		var err error
		st, ok, err = loadState(tx)
		if err != nil || ok {
			return err
		}
		terms, err := loadTerms(tx)
		if err != nil {
			return err
		}
		now := tx.Now().UnixMilli()
		switch {
		case len(terms) > 0:
			// The store was copied from another region: follow whoever led last.
			last := terms[len(terms)-1]
			st = State{Region: r.cfg.Region, Role: Passive, Epoch: last.Epoch, ActiveRegion: last.Region}
		case r.cfg.Secondary:
			st = State{Region: r.cfg.Region, Role: Passive}
		default:
			st = State{Region: r.cfg.Region, Role: Active, Epoch: 1, ActiveRegion: r.cfg.Region}
			if err := store.Put(tx, kindTerm, termKey(1), Term{Epoch: 1, Region: r.cfg.Region, StartSeq: 1, Started: now, Planned: true}); err != nil {
				return err
			}
		}
		st.Updated = now
		return store.Put(tx, kindState, "state", st)
	})
	if err != nil {
		return fmt.Errorf("load disaster-recovery state: %w", err)
	}
	if st.Region != r.cfg.Region {
		return fmt.Errorf("this data directory holds region %q, not %q: start it with --region %s", st.Region, r.cfg.Region, st.Region)
	}
	r.mu.Lock()
	r.state = st
	r.mu.Unlock()
	if st.Role.Leads() && (r.cfg.Peer != nil || r.cfg.Router != nil) {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		r.watchOnce(cctx)
		cancel()
	}
	st = r.State()
	if st.Role == Active || st.Role == Draining {
		r.gate.Allow()
	}
	r.log.Info("disaster recovery", "role", st.Role, "epoch", st.Epoch, "active_region", st.ActiveRegion)
	return nil
}

// saveState writes the state (a local kind: allowed in every role) and
// makes it current.
func (r *Region) saveState(ctx context.Context, st State) error {
	st.Updated = r.cfg.Now().UnixMilli()
	if _, err := r.cfg.Store.Update(ctx, func(tx store.Tx) error { return store.Put(tx, kindState, "state", st) }); err != nil {
		return fmt.Errorf("save disaster-recovery state: %w", err)
	}
	r.mu.Lock()
	r.state = st
	r.mu.Unlock()
	return nil
}

// event records something an operator should know, in the log and in the
// region's event list.
func (r *Region) event(ctx context.Context, typ, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	now := r.cfg.Now()
	r.log.Warn("disaster recovery: "+msg, "event", typ)
	key := fmt.Sprintf("%020d-%s", now.UnixNano(), typ)
	_, err := r.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := store.Put(tx, kindEvent, key, Event{Time: now.UnixMilli(), Type: typ, Message: msg}); err != nil {
			return err
		}
		var keys []string
		err := tx.Scan(kindEvent, "", "", func(k string, _ json.RawMessage) error {
			keys = append(keys, k)
			return nil
		})
		for i := 0; err == nil && i < len(keys)-maxEvents; i++ {
			err = tx.Delete(kindEvent, keys[i])
		}
		return err
	})
	if err != nil {
		r.log.Error("disaster recovery: event not recorded", "event", typ, "err", err)
	}
}

// Events returns the region's newest events, newest first.
func (r *Region) Events(ctx context.Context, n int) ([]Event, error) {
	var out []Event
	err := r.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = store.List[Event](tx, kindEvent, "")
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Time > out[j].Time })
	if len(out) > n {
		out = out[:n]
	}
	return out, err
}

// Run supervises the region until ctx ends: it runs the leader's loops or
// the follower as the role says, rejoins after a fence, watches the peer's
// epoch and the replication lag.
func (r *Region) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if r.cfg.Peer != nil || r.cfg.Router != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.watch(ctx)
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.converge(ctx)
		select {
		case <-ctx.Done():
			r.stopLoops()
			r.stopFollowing()
			wg.Wait()
			return
		case <-r.wake:
		case <-tick.C:
			r.checkLag(ctx)
		}
	}
}

// converge starts and stops what the role calls for.
func (r *Region) converge(ctx context.Context) {
	st := r.State()
	switch st.Role {
	case Active, Draining:
		r.stopFollowing()
		r.startLoops(ctx)
	case Sealed:
		r.stopLoops()
		r.stopFollowing()
	case Passive:
		r.stopLoops()
		if st.Rejoin != nil {
			if err := r.rejoin(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("disaster recovery: rejoin not done yet", "err", err)
			}
			return
		}
		r.startFollowing(ctx)
		r.runPassiveHooks(ctx, st.Epoch)
	}
}

func (r *Region) startLoops(ctx context.Context) {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.loopsCancel != nil || len(r.cfg.Loops) == 0 {
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	r.loopsCancel, r.loopsDone = cancel, done
	var wg sync.WaitGroup
	for _, loop := range r.cfg.Loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(lctx)
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
}

func (r *Region) stopLoops() {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.loopsCancel == nil {
		return
	}
	r.loopsCancel()
	<-r.loopsDone
	r.loopsCancel, r.loopsDone = nil, nil
}

func (r *Region) startFollowing(ctx context.Context) {
	if r.cfg.Peer == nil {
		return
	}
	r.runMu.Lock()
	defer r.runMu.Unlock()
	// Checked under runMu: Promote sets promoting before it stops the
	// follower, so no follower starts behind its back.
	r.mu.Lock()
	promoting := r.promoting
	r.mu.Unlock()
	if promoting {
		return
	}
	if r.followCancel != nil {
		select {
		case <-r.followDone:
			// It stopped on its own (refused leader, divergence): start again
			// after a pause, once the peer watch had a chance to look.
			r.mu.Lock()
			ended := r.followEnded
			r.mu.Unlock()
			if r.cfg.Now().Sub(ended) < 2*time.Second {
				return
			}
			r.followCancel = nil
		default:
			return
		}
	}
	f := r.newFollower()
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	r.followCancel, r.followDone = cancel, done
	r.mu.Lock()
	r.follower = f
	r.mu.Unlock()
	go func() {
		defer close(done)
		err := f.Run(fctx)
		r.mu.Lock()
		r.followErr, r.followEnded = err, r.cfg.Now()
		r.mu.Unlock()
		if err != nil {
			r.event(context.WithoutCancel(ctx), "replication_stopped", "replication from %s stopped: %v", r.cfg.Peer.URL, err)
			r.kick()
		}
	}()
}

func (r *Region) stopFollowing() {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.followCancel == nil {
		return
	}
	r.followCancel()
	<-r.followDone
	r.followCancel, r.followDone = nil, nil
}

func (r *Region) newFollower() *replication.Follower {
	return &replication.Follower{
		Store:      r.cfg.Store,
		Source:     &replication.PeerSource{Peer: r.cfg.Peer, Region: r.cfg.Region, Epoch: func() int64 { return r.State().Epoch }},
		Keys:       r.cfg.Keys,
		SharedKeys: r.cfg.SharedKeys,
		Accept:     r.acceptLeader,
		Log:        r.log.With("component", "replication"),
		Wait:       r.cfg.FollowWait,
		Now:        r.cfg.Now,
	}
}

var errNotLeading = errors.New("the peer region does not lead")

// acceptLeader lets the follower apply a batch only from a region that
// leads at an epoch no lower than this region knows of; a newer epoch is
// learned on the way.
func (r *Region) acceptLeader(l replication.LeaderInfo) error {
	st := r.State()
	if !Role(l.Role).Leads() {
		return fmt.Errorf("%w: %s is %s", errNotLeading, l.Region, l.Role)
	}
	if l.Epoch < st.Epoch {
		return fmt.Errorf("%w: %s leads epoch %d, this region knows epoch %d", errNotLeading, l.Region, l.Epoch, st.Epoch)
	}
	if l.Epoch > st.Epoch || st.ActiveRegion != l.Region {
		st.Epoch, st.ActiveRegion = l.Epoch, l.Region
		if err := r.saveState(context.Background(), st); err != nil {
			return err
		}
	}
	return nil
}

// Bootstrap fills an empty passive region from its peer before the
// region's services start: until then it has no workspace to serve. It
// returns once the region has every change its peer had at first contact.
func (r *Region) Bootstrap(ctx context.Context) error {
	last, err := r.cfg.Store.LastSeq(ctx)
	if err != nil || last > 0 || r.State().Role != Passive || r.cfg.Peer == nil {
		return err
	}
	f := r.newFollower()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- f.Run(fctx) }()
	r.log.Info("disaster recovery: copying the workspace from the primary", "primary", r.cfg.Peer.URL)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	started, target := r.cfg.Now(), int64(-1)
	warned := started
	for {
		select {
		case err := <-errc:
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("copy the workspace from %s: %w", r.cfg.Peer.URL, err)
		case <-t.C:
		}
		l := f.Link()
		if target < 0 && !l.LastContact.IsZero() {
			target = l.LeaderSeq
		}
		if target >= 0 && l.Applied >= target {
			cancel()
			<-errc
			r.log.Info("disaster recovery: workspace copied", "seq", l.Applied, "took", r.cfg.Now().Sub(started).Round(time.Millisecond))
			return nil
		}
		if r.cfg.Now().Sub(warned) > 10*time.Second {
			warned = r.cfg.Now()
			r.log.Warn("disaster recovery: still waiting for the primary", "primary", r.cfg.Peer.URL, "applied", l.Applied, "last_error", f.Stats().LastError)
		}
	}
}

// rejoin drops the changes this former leader made that its successor never
// received, keeping them whole in a file and in the state, then lets the
// region follow. It needs the successor's terms (from the peer watch).
func (r *Region) rejoin(ctx context.Context) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	st := r.State()
	if st.Rejoin == nil {
		return nil
	}
	r.mu.Lock()
	peer := r.peer
	r.mu.Unlock()
	if peer == nil {
		return errors.New("waiting for the new leader's terms")
	}
	common, ok := CommonSeq(peer.Terms, st.Rejoin.FromEpoch)
	if !ok {
		return fmt.Errorf("the peer has no term after epoch %d yet", st.Rejoin.FromEpoch)
	}
	last, err := r.cfg.Store.LastSeq(ctx)
	if err != nil {
		return err
	}
	if st.LastFence == nil {
		st.LastFence = &Fence{At: r.cfg.Now().UnixMilli(), FromEpoch: st.Rejoin.FromEpoch, ToEpoch: st.Epoch, By: st.Rejoin.Leader}
	}
	st.LastFence.CommonSeq = common
	if last > common {
		aside, err := r.setAside(ctx, st, common, last)
		if err != nil {
			return err
		}
		st.LastFence.SetAside = aside
		// Record what is set aside before the log forgets it.
		if err := r.saveState(ctx, st); err != nil {
			return err
		}
		if _, err := r.cfg.Store.Rewind(ctx, common); err != nil {
			return fmt.Errorf("rewind to %d: %w", common, err)
		}
		r.event(ctx, "changes_set_aside", "%d changes (%d..%d) that %s never received were set aside in %s; the region now follows %s from change %d",
			aside.Changes, aside.FromSeq, aside.ToSeq, st.Rejoin.Leader, aside.File, st.Rejoin.Leader, common)
	}
	st.Rejoin = nil
	if err := r.saveState(ctx, st); err != nil {
		return err
	}
	r.kick()
	return nil
}

func (r *Region) setAside(ctx context.Context, st State, common, last int64) (*SetAside, error) {
	var tail []store.Change
	for after := common; after < last; {
		cs, err := r.cfg.Store.Changes(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(cs) == 0 {
			break
		}
		tail = append(tail, cs...)
		after = cs[len(cs)-1].Seq
	}
	aside := &SetAside{FromSeq: common + 1, ToSeq: last, Changes: len(tail), Kinds: map[string]int{}}
	seen := map[string]bool{}
	for _, c := range tail {
		for _, op := range c.Ops {
			aside.Kinds[string(op.Kind)]++
			k := string(op.Kind) + "/" + op.Key
			if !seen[k] && len(aside.Keys) < 100 {
				seen[k] = true
				aside.Keys = append(aside.Keys, k)
			}
		}
	}
	dir := filepath.Join(r.cfg.DataDir, "dr", "set-aside")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	aside.File = filepath.Join(dir, fmt.Sprintf("epoch-%d-changes-%d-%d.json", st.Rejoin.FromEpoch, common+1, last))
	b, err := json.MarshalIndent(map[string]any{
		"region": st.Region, "from_epoch": st.Rejoin.FromEpoch, "superseded_by": st.Rejoin.Leader, "epoch": st.Epoch,
		"common_seq": common, "changes": tail,
	}, "", " ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(aside.File, b, 0o600); err != nil {
		return nil, fmt.Errorf("write the set-aside changes: %w", err)
	}
	return aside, nil
}

// RunWhileLeading sets the loops that run only while the region leads. Call
// it before Run.
func (r *Region) RunWhileLeading(loops ...func(context.Context)) {
	r.cfg.Loops = append(r.cfg.Loops, loops...)
}

// SetWork sets the work a planned failover drains. Call it before Run.
func (r *Region) SetWork(w Work) { r.cfg.Work = w }
