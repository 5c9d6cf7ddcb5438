package dr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/replication"
	"github.com/tandemdata/tandem/internal/store"
)

// Paths of the disaster-recovery API.
const (
	StatusPath  = "/api/2.0/tandem/dr/status"
	RolePath    = "/api/2.0/tandem/dr/role"
	LeasePath   = "/api/2.0/tandem/dr/lease"
	DrainPath   = "/api/2.0/tandem/dr/drain"
	SealPath    = "/api/2.0/tandem/dr/seal"
	ResumePath  = "/api/2.0/tandem/dr/resume"
	PromotePath = "/api/2.0/tandem/dr/promote"
	ReportsPath = "/api/2.0/tandem/dr/reports"
)

// Routes mounts the disaster-recovery API: the operations are for workspace
// admins and served in every role; the role summary is public (the router
// polls it); the peer status is for the peer region's certificate only.
func (r *Region) Routes() []api.Route {
	admin := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "disasterRecovery", Action: action, DR: true, Handler: func(ctx context.Context, req *api.Request) (any, error) {
			if !principal.MustFrom(ctx).Admin {
				return nil, api.Denied("Only workspace admins can see and operate disaster recovery.")
			}
			return h(ctx, req)
		}}
	}
	return []api.Route{
		admin("GET "+StatusPath, "getStatus", r.handleStatus),
		admin("POST "+LeasePath, "failoverLease", r.handleLease),
		admin("POST "+DrainPath, "failoverDrain", r.handleDrain),
		admin("POST "+SealPath, "failoverSeal", r.handleSeal),
		admin("POST "+ResumePath, "failoverResume", r.handleResume),
		admin("POST "+PromotePath, "failoverPromote", r.handlePromote),
		admin("POST "+ReportsPath, "storeReport", r.handleStoreReport),
		admin("GET "+ReportsPath, "listReports", r.handleListReports),
		{Pattern: "GET " + RolePath, Public: true, NoAudit: true, DR: true, Handler: r.handleRole},
		{Pattern: "GET " + PeerStatusPath, Public: true, NoAudit: true, DR: true, Handler: r.handlePeerStatus},
	}
}

func (r *Region) handleStatus(ctx context.Context, req *api.Request) (any, error) {
	var q struct {
		Assets bool `json:"assets"`
	}
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	return r.Status(ctx, q.Assets)
}

// RoleSummary is the public answer of RolePath.
type RoleSummary struct {
	Region       string `json:"region"`
	Role         Role   `json:"role"`
	Epoch        int64  `json:"epoch"`
	ActiveRegion string `json:"active_region"`
}

func (r *Region) handleRole(ctx context.Context, req *api.Request) (any, error) {
	st := r.State()
	return RoleSummary{Region: st.Region, Role: st.Role, Epoch: st.Epoch, ActiveRegion: st.ActiveRegion}, nil
}

func (r *Region) handlePeerStatus(ctx context.Context, req *api.Request) (any, error) {
	if r.cfg.Peer == nil {
		return nil, api.Errorf(api.FeatureDisabled, "This region has no peer region.")
	}
	if err := r.cfg.Peer.Authenticate(req.HTTP); err != nil {
		return nil, err
	}
	if e, err := strconv.ParseInt(req.HTTP.Header.Get(replication.HeaderEpoch), 10, 64); err == nil {
		r.learnFromFollower(req.HTTP.Header.Get(replication.HeaderRegion), e)
	}
	st := r.State()
	ps := PeerStatus{Region: st.Region, Role: st.Role, Epoch: st.Epoch, ActiveRegion: st.ActiveRegion}
	var err error
	if ps.LastSeq, ps.LastTime, err = lastChange(ctx, r.cfg.Store); err != nil {
		return nil, err
	}
	if ps.Terms, err = Terms(ctx, r.cfg.Store); err != nil {
		return nil, err
	}
	return ps, nil
}

// PeerFollower is the hook the replication endpoints call with the epoch a
// following peer knows of and the last change it applied (-1 if unknown).
func (r *Region) PeerFollower(region string, epoch, applied int64) {
	if applied >= 0 {
		r.mu.Lock()
		r.followerApplied, r.followerAt = applied, r.cfg.Now()
		r.mu.Unlock()
	}
	r.learnFromFollower(region, epoch)
}

// LeaderInfo describes this region to a follower.
func (r *Region) LeaderInfo() replication.LeaderInfo {
	st := r.State()
	return replication.LeaderInfo{Region: st.Region, Epoch: st.Epoch, Role: string(st.Role)}
}

func (r *Region) handleLease(ctx context.Context, req *api.Request) (any, error) {
	var lr LeaseRequest
	if err := req.Decode(&lr); err != nil {
		return nil, err
	}
	l, err := r.TakeLease(ctx, lr)
	if errors.Is(err, ErrLeaseHeld) {
		return nil, api.Errorf(api.ResourceConflict, "%s", err.Error())
	}
	if err != nil {
		return nil, err
	}
	if l == nil {
		return map[string]any{}, nil
	}
	return l, nil
}

func (r *Region) handleDrain(ctx context.Context, req *api.Request) (any, error) {
	var dr DrainRequest
	if err := req.Decode(&dr); err != nil {
		return nil, err
	}
	return r.Drain(ctx, dr)
}

func (r *Region) handleSeal(ctx context.Context, req *api.Request) (any, error) { return r.Seal(ctx) }

func (r *Region) handleResume(ctx context.Context, req *api.Request) (any, error) {
	st, err := r.Resume(ctx)
	if err != nil {
		return nil, err
	}
	return RoleSummary{Region: st.Region, Role: st.Role, Epoch: st.Epoch, ActiveRegion: st.ActiveRegion}, nil
}

func (r *Region) handlePromote(ctx context.Context, req *api.Request) (any, error) {
	var pr PromoteRequest
	if err := req.Decode(&pr); err != nil {
		return nil, err
	}
	return r.Promote(ctx, pr)
}

// StoredReport is a failover, failback or drill report kept in the store.
// Reports are replicated: both regions keep the history.
type StoredReport struct {
	ID      string          `json:"id"`
	Kind    string          `json:"kind"`
	Started int64           `json:"started"`
	Report  json.RawMessage `json:"report"`
}

func (r *Region) handleStoreReport(ctx context.Context, req *api.Request) (any, error) {
	var sr StoredReport
	if err := req.Decode(&sr); err != nil {
		return nil, err
	}
	if len(sr.Report) == 0 || !json.Valid(sr.Report) {
		return nil, api.MissingField("report")
	}
	if sr.ID == "" {
		sr.ID = uuid.NewString()
	}
	key := fmt.Sprintf("%020d-%s", sr.Started, sr.ID)
	if _, err := r.gate.Update(ctx, func(tx store.Tx) error { return store.Put(tx, kindReport, key, sr) }); err != nil {
		return nil, err
	}
	return map[string]string{"id": sr.ID}, nil
}

func (r *Region) handleListReports(ctx context.Context, req *api.Request) (any, error) {
	var out []StoredReport
	err := r.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = store.List[StoredReport](tx, kindReport, "")
		return err
	})
	if out == nil {
		out = []StoredReport{}
	}
	// Newest first.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return map[string]any{"reports": out}, err
}
