package dr

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/store"
)

// HeaderRefused marks an answer by which a region refused a call without
// acting on it because it does not lead (its value is the region's role). The
// router sends such a call again to the region that leads now.
const HeaderRefused = "X-Tandem-Refused"

// Guard is the API guard of the region: reads are always served; writes
// only while the region is active. A draining or sealed region answers 503
// (a planned failover is seconds from done: clients retry); a passive one
// answers 400 naming the active region. Disaster-recovery operations pass.
func (r *Region) Guard(ctx context.Context, hr *http.Request, rt *api.Route) error {
	if rt.DR {
		return nil
	}
	switch hr.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if err := r.refusal(); err != nil {
		return err
	}
	return nil
}

// refusal is the error a write gets from this region now, nil when it
// accepts writes.
func (r *Region) refusal() error {
	st := r.State()
	switch st.Role {
	case Active:
		return nil
	case Draining, Sealed:
		return api.Errorf(api.TemporarilyUnavailable,
			"A planned failover from %s to %s is in progress: writes are paused for a few seconds. Retry the call; through the workspace URL it reaches %s once it has taken over.",
			st.Region, st.HandingOverTo, st.HandingOverTo).WithHeader(HeaderRefused, string(st.Role))
	default:
		active := st.ActiveRegion
		where := ""
		if r.cfg.Peer != nil && (active == "" || active != st.Region) {
			where = " (" + r.cfg.Peer.URL + ")"
		}
		if active == "" {
			active = "its primary region"
		}
		return api.Errorf(api.InvalidState,
			"Region %s is a passive disaster-recovery replica: it serves reads and refuses writes. Send writes to the active region, %s%s, or through the workspace URL, which always reaches it.",
			st.Region, active, where).WithHeader(HeaderRefused, string(st.Role))
	}
}

// lagTracker keeps the replication lag as last measured, for status and
// metrics, and whether it is above the objective.
type lagTracker struct {
	mu       sync.Mutex
	measured bool
	changes  int64
	seconds  float64
	exceeded bool
}

func (l *lagTracker) get() (bool, int64, float64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.measured, l.changes, l.seconds, l.exceeded
}

// measureLag works out the recovery point exposure now: on a follower, its
// lag behind the leader; on a leader with a peer, the age of its oldest
// change the peer is not known to have (from the peer's last status, so a
// peer that is down shows a growing lag). A region without a peer has none.
func (r *Region) measureLag(ctx context.Context) (ok bool, changes int64, seconds float64) {
	st := r.State()
	now := r.cfg.Now()
	r.mu.Lock()
	f, peer, applied, appliedAt := r.follower, r.peer, r.followerApplied, r.followerAt
	r.mu.Unlock()
	switch {
	case st.Role == Passive && f != nil:
		l := f.Lag(now)
		return true, l.Changes, l.Seconds
	case st.Role.Leads() && r.cfg.Peer != nil:
		last, err := r.cfg.Store.LastSeq(ctx)
		if err != nil {
			return false, 0, 0
		}
		var peerSeq int64
		if peer != nil {
			peerSeq = peer.LastSeq
		}
		// The follower's own reads of the log say what it has applied more
		// recently than its status does.
		if now.Sub(appliedAt) < 30*time.Second {
			peerSeq = max(peerSeq, applied)
		}
		if peerSeq >= last {
			return true, 0, 0
		}
		cs, err := r.cfg.Store.Changes(ctx, peerSeq, 1)
		if err != nil || len(cs) == 0 {
			return false, 0, 0
		}
		return true, last - peerSeq, max(now.Sub(time.UnixMilli(cs[0].Time)).Seconds(), 0)
	}
	return false, 0, 0
}

// checkLag measures the lag and raises an event when it crosses the
// recovery point objective, either way.
func (r *Region) checkLag(ctx context.Context) {
	ok, changes, seconds := r.measureLag(ctx)
	r.lag.mu.Lock()
	was := r.lag.exceeded
	r.lag.measured, r.lag.changes, r.lag.seconds = ok, changes, seconds
	r.lag.exceeded = ok && seconds > r.cfg.RPO.Seconds()
	now := r.lag.exceeded
	r.lag.mu.Unlock()
	switch {
	case now && !was:
		r.event(ctx, "rpo_exceeded", "replication lag %.1fs (%d changes) is above the recovery point objective of %s", seconds, changes, r.cfg.RPO)
	case was && !now:
		r.event(ctx, "rpo_recovered", "replication lag %.1fs is back within the recovery point objective of %s", seconds, r.cfg.RPO)
	}
}

// ReplicationStatus is the follower's view of its link.
type ReplicationStatus struct {
	Leader         string  `json:"leader"`
	LeaderEpoch    int64   `json:"leader_epoch"`
	LeaderSeq      int64   `json:"leader_seq"`
	LagChanges     int64   `json:"lag_changes"`
	LagSeconds     float64 `json:"lag_seconds"`
	LinkUp         bool    `json:"link_up"`
	LastContact    int64   `json:"last_contact,omitempty"`
	AppliedChanges int64   `json:"applied_changes"`
	FailedCalls    int64   `json:"failed_calls"`
	KeysShared     bool    `json:"keys_shared"`
	LastError      string  `json:"last_error,omitempty"`
	Stopped        string  `json:"stopped,omitempty"`
}

// PeerView is what a region last saw of its peer.
type PeerView struct {
	URL       string `json:"url"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	Region    string `json:"region,omitempty"`
	Role      Role   `json:"role,omitempty"`
	Epoch     int64  `json:"epoch,omitempty"`
	LastSeq   int64  `json:"last_seq"`
	CheckedAt int64  `json:"checked_at,omitempty"`
}

// Status is the answer of /api/2.0/tandem/dr/status.
type Status struct {
	Region        string `json:"region"`
	Role          Role   `json:"role"`
	Epoch         int64  `json:"epoch"`
	ActiveRegion  string `json:"active_region"`
	HandingOverTo string `json:"handing_over_to,omitempty"`
	// LastSeq is the last sequence number of this region's log: on a
	// follower, the last change applied from the leader.
	LastSeq  int64 `json:"last_seq"`
	LastTime int64 `json:"last_time,omitempty"`
	// Lag is the recovery point exposure now (see measureLag); absent on
	// a region without a peer.
	LagChanges  *int64             `json:"lag_changes,omitempty"`
	LagSeconds  *float64           `json:"lag_seconds,omitempty"`
	RPOSeconds  float64            `json:"rpo_seconds"`
	RPOExceeded bool               `json:"rpo_exceeded"`
	Replication *ReplicationStatus `json:"replication,omitempty"`
	Peer        *PeerView          `json:"peer,omitempty"`
	Terms       []Term             `json:"terms"`
	Rejoin      *Rejoin            `json:"rejoin,omitempty"`
	LastFence   *Fence             `json:"last_fence,omitempty"`
	Lease       *Lease             `json:"lease,omitempty"`
	ActiveWork  *int               `json:"active_work,omitempty"`
	Assets      map[string]int     `json:"assets,omitempty"`
	Events      []Event            `json:"events"`
	// Storage is the storage account's geo-replication to the peer.
	Storage *StorageSync `json:"storage,omitempty"`
}

// Status reports the region's disaster-recovery status; assets adds the
// count of every replicated asset (a scan of the store).
func (r *Region) Status(ctx context.Context, assets bool) (Status, error) {
	st := r.State()
	s := Status{Region: st.Region, Role: st.Role, Epoch: st.Epoch, ActiveRegion: st.ActiveRegion, HandingOverTo: st.HandingOverTo,
		RPOSeconds: r.cfg.RPO.Seconds(), Rejoin: st.Rejoin, LastFence: st.LastFence}
	var err error
	if s.LastSeq, s.LastTime, err = lastChange(ctx, r.cfg.Store); err != nil {
		return s, err
	}
	if s.Terms, err = Terms(ctx, r.cfg.Store); err != nil {
		return s, err
	}
	if ok, changes, seconds := r.measureLag(ctx); ok {
		s.LagChanges, s.LagSeconds = &changes, &seconds
	}
	_, _, _, s.RPOExceeded = r.lag.get()
	if h := r.storageHooks(); h.Sync != nil {
		ss := h.Sync()
		s.Storage = &ss
	}
	r.mu.Lock()
	f, peer, peerErr, peerAt, followErr := r.follower, r.peer, r.peerErr, r.peerAt, r.followErr
	r.mu.Unlock()
	if st.Role == Passive && f != nil {
		now := r.cfg.Now()
		l, lag, stats := f.Link(), f.Lag(now), f.Stats()
		rs := &ReplicationStatus{Leader: stats.Leader.Region, LeaderEpoch: stats.Leader.Epoch, LeaderSeq: l.LeaderSeq,
			LagChanges: lag.Changes, LagSeconds: lag.Seconds, LinkUp: lag.LinkUp,
			AppliedChanges: stats.Applied, FailedCalls: stats.Failures, KeysShared: stats.KeysShared, LastError: stats.LastError}
		if !l.LastContact.IsZero() {
			rs.LastContact = l.LastContact.UnixMilli()
		}
		if followErr != nil {
			rs.Stopped = followErr.Error()
		}
		s.Replication = rs
	}
	if r.cfg.Peer != nil {
		pv := &PeerView{URL: r.cfg.Peer.URL, Reachable: peerErr == nil && peer != nil}
		if peerErr != nil {
			pv.Error = peerErr.Error()
		}
		if peer != nil {
			pv.Region, pv.Role, pv.Epoch, pv.LastSeq, pv.CheckedAt = peer.Region, peer.Role, peer.Epoch, peer.LastSeq, peerAt.UnixMilli()
		}
		s.Peer = pv
	}
	if s.Lease, err = r.CurrentLease(ctx); err != nil {
		return s, err
	}
	if r.cfg.Work != nil && st.Role.Leads() {
		if n, err := r.cfg.Work.ActiveWork(ctx); err == nil {
			s.ActiveWork = &n
		}
	}
	if assets {
		if s.Assets, err = CountAssets(ctx, r.cfg.Store); err != nil {
			return s, err
		}
	}
	s.Events, err = r.Events(ctx, 20)
	if s.Events == nil {
		s.Events = []Event{}
	}
	return s, err
}

// Assets are the article's replicated assets, by the store kind that holds
// each; domain packages add theirs with RegisterAsset (clusters, pools).
var (
	assetsMu sync.RWMutex
	assets   = []struct {
		name string
		kind store.Kind
	}{
		{"users", "identity.user"},
		{"groups", "identity.group"},
		{"service_principals", "identity.sp"},
		{"tokens", "identity.token"},
		{"permissions", "permissions.acl"},
		{"workspace_objects", "workspace.object"},
		{"dbfs_files", "dbfs.node"},
		{"secret_scopes", "secrets.scope"},
		{"secrets", "secrets.secret"},
		{"secret_acls", "secrets.acl"},
		{"init_scripts", "initscripts.script"},
		{"jobs", "jobs.job"},
		{"job_runs", "jobs.run"},
		{"notification_destinations", "jobs.destination"},
	}
)

// RegisterAsset adds a replicated asset to the counts that status and the
// failover's verification compare.
func RegisterAsset(name string, kind store.Kind) {
	assetsMu.Lock()
	defer assetsMu.Unlock()
	assets = append(assets, struct {
		name string
		kind store.Kind
	}{name, kind})
}

// CountAssets counts each replicated asset in a store.
func CountAssets(ctx context.Context, st store.Store) (map[string]int, error) {
	assetsMu.RLock()
	list := append(assets[:0:0], assets...)
	assetsMu.RUnlock()
	out := map[string]int{}
	err := st.View(ctx, func(tx store.Tx) error {
		for _, a := range list {
			n := 0
			err := tx.Scan(a.kind, "", "", func(string, json.RawMessage) error {
				n++
				return nil
			})
			if err != nil {
				return err
			}
			out[a.name] = n
		}
		return nil
	})
	return out, err
}
