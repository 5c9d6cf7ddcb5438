package dr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/replication"
	"github.com/tandemdata/tandem/internal/store"
)

// DrainRequest starts a planned failover on the leading region.
type DrainRequest struct {
	// ToRegion is the region that will take over.
	ToRegion string `json:"to_region"`
	// CancelRunning cancels running work instead of letting it finish.
	CancelRunning bool `json:"cancel_running"`
}

// DrainResult tells how much work is still running.
type DrainResult struct {
	Role       Role `json:"role"`
	ActiveWork int  `json:"active_work"`
	Cancelled  int  `json:"cancelled"`
}

// Drain refuses user writes and new scheduled runs from now on and, if
// asked, cancels running work. It is idempotent.
func (r *Region) Drain(ctx context.Context, req DrainRequest) (DrainResult, error) {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	st := r.State()
	switch st.Role {
	case Active:
		if req.ToRegion == "" || req.ToRegion == st.Region {
			return DrainResult{}, api.InvalidParam("to_region must name the peer region that takes over.")
		}
		st.Role, st.HandingOverTo = Draining, req.ToRegion
		if err := r.saveState(ctx, st); err != nil {
			return DrainResult{}, err
		}
		r.event(ctx, "draining", "planned failover to %s: user writes and new scheduled runs are refused", req.ToRegion)
		r.kick()
	case Draining:
	default:
		return DrainResult{}, api.Errorf(api.InvalidState, "Region %s is %s: only the active region can be drained.", st.Region, st.Role)
	}
	res := DrainResult{Role: Draining}
	if r.cfg.Work == nil {
		return res, nil
	}
	if req.CancelRunning {
		n, err := r.cfg.Work.CancelWork(ctx)
		if err != nil {
			return res, fmt.Errorf("cancel running work: %w", err)
		}
		res.Cancelled = n
	}
	n, err := r.cfg.Work.ActiveWork(ctx)
	res.ActiveWork = n
	return res, err
}

// SealResult is the final position of a sealed region's log.
type SealResult struct {
	Role     Role           `json:"role"`
	LastSeq  int64          `json:"last_seq"`
	LastTime int64          `json:"last_time"`
	Assets   map[string]int `json:"assets"`
	// Storage is the storage account's shipping state when sealed: the
	// catch-up waits until its backlog is empty.
	Storage *StorageSync `json:"storage,omitempty"`
}

// Seal closes the write gate (waiting for writes in flight) and stops the
// leader's loops: the log ends where it is, and the peer can catch up with
// it exactly. It is idempotent.
func (r *Region) Seal(ctx context.Context) (SealResult, error) {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	st := r.State()
	switch st.Role {
	case Active, Draining:
		r.gate.Refuse()
		st.Role = Sealed
		if err := r.saveState(ctx, st); err != nil {
			return SealResult{}, err
		}
		r.event(ctx, "sealed", "sealed for a planned failover to %s", st.HandingOverTo)
		r.kick()
		select {
		case r.watchWake <- struct{}{}:
		default:
		}
	case Sealed:
	default:
		return SealResult{}, api.Errorf(api.InvalidState, "Region %s is %s: only the leading region can be sealed.", st.Region, st.Role)
	}
	res := SealResult{Role: Sealed}
	var err error
	if res.LastSeq, res.LastTime, err = lastChange(ctx, r.cfg.Store); err != nil {
		return res, err
	}
	res.Assets, err = CountAssets(ctx, r.cfg.Store)
	if h := r.storageHooks(); h.Sync != nil {
		ss := h.Sync()
		res.Storage = &ss
	}
	return res, err
}

func lastChange(ctx context.Context, st store.Store) (int64, int64, error) {
	last, err := st.LastSeq(ctx)
	if err != nil || last == 0 {
		return last, 0, err
	}
	cs, err := st.Changes(ctx, last-1, 1)
	if err != nil || len(cs) == 0 {
		return last, 0, err
	}
	return last, cs[0].Time, nil
}

// Resume ends a planned failover that will not happen: a draining or sealed
// region leads again. A region that was superseded meanwhile cannot.
func (r *Region) Resume(ctx context.Context) (State, error) {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	st := r.State()
	switch st.Role {
	case Active:
		return st, nil
	case Draining, Sealed:
	default:
		return st, api.Errorf(api.InvalidState, "Region %s is %s at epoch %d: it cannot resume leading; fail back instead.", st.Region, st.Role, st.Epoch)
	}
	st.Role, st.HandingOverTo = Active, ""
	if err := r.saveState(ctx, st); err != nil {
		return st, err
	}
	r.gate.Allow()
	r.event(ctx, "resumed", "the planned failover was called off; this region leads again")
	r.kick()
	return st, nil
}

// PromoteRequest makes a passive region lead.
type PromoteRequest struct {
	// Planned promotions require every change up to ExpectSeq (the sealed
	// leader's last) to have been applied: nothing is lost.
	Planned   bool  `json:"planned"`
	ExpectSeq int64 `json:"expect_seq"`
	// StartClusters starts the clusters that were running in the former
	// leader once the region leads (they come back terminated).
	StartClusters bool `json:"start_clusters,omitempty"`
}

// PromoteResult describes a promotion.
type PromoteResult struct {
	Region        string `json:"region"`
	Epoch         int64  `json:"epoch"`
	AlreadyActive bool   `json:"already_active,omitempty"`
	// AppliedSeq is the last change this region had from the former leader
	// and StartSeq the first of the new epoch.
	AppliedSeq int64 `json:"applied_seq"`
	StartSeq   int64 `json:"start_seq"`
	// LeaderSeq is the newest change the former leader was known to have;
	// LostChanges = LeaderSeq - AppliedSeq were not received (unplanned).
	LeaderSeq   int64 `json:"leader_seq"`
	LostChanges int64 `json:"lost_changes"`
	// LeaderContact is when the former leader last answered (epoch ms).
	LeaderContact int64 `json:"leader_contact,omitempty"`
	Restored      int   `json:"restored_documents"`
	// StartedClusters were started at the promotion (StartClusters);
	// StartClustersError says why not all were.
	StartedClusters    int    `json:"started_clusters,omitempty"`
	StartClustersError string `json:"start_clusters_error,omitempty"`
}

// Promote makes this passive region lead a new epoch: it stops following,
// restores the real documents kept aside by the passive posture, records
// the new term and opens the gate, in that order and in one transaction for
// the store. Promoting a region that already leads returns its epoch with
// AlreadyActive: a failover started twice does the work once.
func (r *Region) Promote(ctx context.Context, req PromoteRequest) (PromoteResult, error) {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	st := r.State()
	if st.Role.Leads() {
		return PromoteResult{Region: st.Region, Epoch: st.Epoch, AlreadyActive: true}, nil
	}
	if st.Rejoin != nil {
		return PromoteResult{}, api.Errorf(api.InvalidState, "Region %s has not rejoined %s yet (it was fenced at epoch %d); promote it after it has caught up.", st.Region, st.Rejoin.Leader, st.Rejoin.FromEpoch)
	}
	r.mu.Lock()
	r.promoting = true
	f, peer, router := r.follower, r.peer, r.router
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.promoting = false
		r.mu.Unlock()
		r.kick()
	}()
	r.stopFollowing()

	applied, err := r.cfg.Store.LastSeq(ctx)
	if err != nil {
		return PromoteResult{}, err
	}
	res := PromoteResult{Region: st.Region, AppliedSeq: applied, StartSeq: applied + 1, LeaderSeq: applied}
	if f != nil {
		l := f.Link()
		res.LeaderSeq = max(l.LeaderSeq, applied)
		if !l.LastContact.IsZero() {
			res.LeaderContact = l.LastContact.UnixMilli()
		}
	}
	if req.Planned && applied < req.ExpectSeq {
		return PromoteResult{}, api.Errorf(api.InvalidState, "Region %s has applied changes up to %d, not %d: it is not caught up with the sealed leader.", st.Region, applied, req.ExpectSeq)
	}
	if req.Planned {
		res.LeaderSeq = max(res.LeaderSeq, req.ExpectSeq)
	}
	res.LostChanges = res.LeaderSeq - applied
	epoch := st.Epoch
	if peer != nil {
		epoch = max(epoch, peer.Epoch)
	}
	if router != nil {
		epoch = max(epoch, router.Epoch)
	}
	res.Epoch = epoch + 1
	now := r.cfg.Now()
	next := st
	next.Role, next.Epoch, next.ActiveRegion, next.HandingOverTo, next.Updated = Active, res.Epoch, st.Region, "", now.UnixMilli()
	term := Term{Epoch: res.Epoch, Region: st.Region, StartSeq: applied + 1, Started: now.UnixMilli(), Planned: req.Planned}
	if !req.Planned {
		term.LeaderSeq = res.LeaderSeq
	}
	seq, err := r.cfg.Store.Update(ctx, func(tx store.Tx) error {
		n, err := replication.RestorePostures(tx)
		if err != nil {
			return err
		}
		res.Restored = n
		if err := store.Put(tx, kindTerm, termKey(res.Epoch), term); err != nil {
			return err
		}
		return store.Put(tx, kindState, "state", next)
	})
	if err != nil {
		return PromoteResult{}, fmt.Errorf("promote: %w", err)
	}
	if seq != applied+1 {
		// Nothing else writes a passive region's log; if something did, the
		// term would point at the wrong change.
		r.log.Error("disaster recovery: the promotion change did not follow the last applied one", "seq", seq, "applied", applied)
	}
	r.mu.Lock()
	r.state = next
	r.mu.Unlock()
	r.gate.Allow()
	if h := r.storageHooks(); h.Promoted != nil {
		if err := h.Promoted(ctx, req.Planned); err != nil {
			r.event(ctx, "storage_not_reloaded", "the storage account did not reload after the promotion: %v", err)
		}
	}
	if req.StartClusters {
		if start := r.clusterStarter(); start != nil {
			n, err := start(ctx)
			res.StartedClusters = n
			if err != nil {
				res.StartClustersError = err.Error()
			}
		}
	}
	if req.Planned {
		r.event(ctx, "promoted", "promoted to lead epoch %d (planned): every change up to %d was applied", res.Epoch, applied)
	} else {
		r.event(ctx, "promoted", "promoted to lead epoch %d (unplanned): applied up to %d; the former leader was known to have %d, so %d changes were not received",
			res.Epoch, applied, res.LeaderSeq, res.LostChanges)
	}
	return res, nil
}

// Lease guards a failover against a second one started at the same time:
// the orchestrator takes it in the region it promotes before its first step
// and releases it after its last.
type Lease struct {
	Holder    string `json:"holder"`
	Operation string `json:"operation"`
	Acquired  int64  `json:"acquired"`
	Expires   int64  `json:"expires"`
}

// LeaseRequest takes, renews or releases the lease.
type LeaseRequest struct {
	Holder     string `json:"holder"`
	Operation  string `json:"operation"`
	TTLSeconds int64  `json:"ttl_seconds"`
	Release    bool   `json:"release"`
}

// ErrLeaseHeld is returned when another holder has the lease.
var ErrLeaseHeld = errors.New("another failover holds the lease")

// TakeLease takes or renews the failover lease for req.Holder, or releases
// it. It fails with the current lease when someone else holds it.
func (r *Region) TakeLease(ctx context.Context, req LeaseRequest) (*Lease, error) {
	if req.Holder == "" {
		return nil, api.MissingField("holder")
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	var out *Lease
	var held *Lease
	_, err := r.cfg.Store.Update(ctx, func(tx store.Tx) error {
		now := tx.Now().UnixMilli()
		cur, err := store.Get[Lease](tx, kindLease, "failover")
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		free := errors.Is(err, store.ErrNotFound) || cur.Expires <= now || cur.Holder == req.Holder
		if !free {
			held = &cur
			return nil
		}
		if req.Release {
			if err == nil {
				return tx.Delete(kindLease, "failover")
			}
			return nil
		}
		l := Lease{Holder: req.Holder, Operation: req.Operation, Acquired: now, Expires: now + ttl.Milliseconds()}
		if err == nil && cur.Holder == req.Holder {
			l.Acquired = cur.Acquired
		}
		out = &l
		return store.Put(tx, kindLease, "failover", l)
	})
	if err != nil {
		return nil, err
	}
	if held != nil {
		return held, fmt.Errorf("%w: %s (%s) since %s", ErrLeaseHeld, held.Holder, held.Operation, time.UnixMilli(held.Acquired).UTC().Format(time.RFC3339))
	}
	return out, nil
}

// CurrentLease returns the lease if one is held.
func (r *Region) CurrentLease(ctx context.Context) (*Lease, error) {
	var out *Lease
	err := r.cfg.Store.View(ctx, func(tx store.Tx) error {
		l, err := store.Get[Lease](tx, kindLease, "failover")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err == nil && l.Expires > r.cfg.Now().UnixMilli() {
			out = &l
		}
		return err
	})
	return out, err
}
