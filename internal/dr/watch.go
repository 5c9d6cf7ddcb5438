package dr

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tandemdata/tandem/internal/replication"
)

// PeerStatusPath is the peer-only endpoint where a region tells its peer
// its role, epoch, last sequence number and terms.
const PeerStatusPath = "/api/2.0/tandem/replication/status"

// PeerStatus is what a region tells its peer about itself.
type PeerStatus struct {
	Region       string `json:"region"`
	Role         Role   `json:"role"`
	Epoch        int64  `json:"epoch"`
	ActiveRegion string `json:"active_region"`
	LastSeq      int64  `json:"last_seq"`
	LastTime     int64  `json:"last_time"`
	Terms        []Term `json:"terms"`
}

func (p *PeerStatus) view() *View {
	if p == nil {
		return nil
	}
	return &View{Region: p.Region, Role: p.Role, Epoch: p.Epoch, Active: p.ActiveRegion}
}

func (r *Region) fetchPeer(ctx context.Context) (*PeerStatus, error) {
	client, err := r.cfg.Peer.Client()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.Peer.URL+PeerStatusPath, nil)
	if err != nil {
		return nil, err
	}
	st := r.State()
	req.Header.Set(replication.HeaderRegion, st.Region)
	req.Header.Set(replication.HeaderEpoch, fmt.Sprint(st.Epoch))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code    string `json:"error_code"`
			Message string `json:"message"`
		}
		json.Unmarshal(b, &e)
		return nil, &replication.PeerError{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
	}
	var ps PeerStatus
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("decode the peer's status: %w", err)
	}
	return &ps, nil
}

// watch checks the peer's epoch (and the router's view) every PeerPoll
// until ctx ends.
func (r *Region) watch(ctx context.Context) {
	for {
		cctx, cancel := context.WithTimeout(ctx, max(r.cfg.PeerPoll, 2*time.Second))
		r.watchOnce(cctx)
		cancel()
		// A sealed region is waiting for its peer to take over: it looks
		// more often, so that it follows the new leader at once.
		wait := r.cfg.PeerPoll
		if r.State().Role == Sealed {
			wait = min(wait, 100*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-r.watchWake:
		}
	}
}

// watchOnce looks at the peer and the router once and acts on what it saw.
func (r *Region) watchOnce(ctx context.Context) {
	var peer *PeerStatus
	var peerErr error
	if r.cfg.Peer != nil {
		peer, peerErr = r.fetchPeer(ctx)
	}
	var router *View
	if r.cfg.Router != nil {
		router, _ = r.cfg.Router.View(ctx)
	}
	r.mu.Lock()
	if peerErr == nil && peer != nil {
		r.peer, r.peerAt = peer, r.cfg.Now()
	}
	r.peerErr = peerErr
	if router != nil {
		r.router = router
	}
	r.mu.Unlock()
	if ctx.Err() != nil && peer == nil && router == nil {
		return
	}
	r.reconcile(context.WithoutCancel(ctx), peer.view(), router)
}

// learnFromFollower is called for each call of the peer to this region's
// replication endpoints: a peer that knows a higher epoch fences a leader
// that had not heard of it.
func (r *Region) learnFromFollower(region string, epoch int64) {
	st := r.State()
	if epoch <= st.Epoch || region == "" || region == st.Region {
		return
	}
	r.reconcile(context.Background(), &View{Region: region, Role: Passive, Epoch: epoch}, nil)
}

// reconcile applies Reconcile's decision.
func (r *Region) reconcile(ctx context.Context, peer, router *View) {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	st := r.State()
	d := Reconcile(st, peer, router)
	switch {
	case d.Fence:
		r.fence(ctx, st, d)
	case d.Learn:
		st.Epoch, st.ActiveRegion = d.Epoch, d.Leader
		if err := r.saveState(ctx, st); err != nil {
			r.log.Error("disaster recovery: record the new epoch", "epoch", d.Epoch, "err", err)
		}
	}
}

// fence stops a leader that found a higher epoch: the gate closes first
// (nothing more is logged), then the state records that the region must
// rejoin its successor. Called with opMu held.
func (r *Region) fence(ctx context.Context, st State, d Decision) {
	r.gate.Refuse()
	planned := st.Role == Sealed && st.HandingOverTo == d.Leader
	from := st.Epoch
	st.Role, st.Epoch, st.ActiveRegion, st.HandingOverTo = Passive, d.Epoch, d.Leader, ""
	st.Rejoin = &Rejoin{FromEpoch: from, Leader: d.Leader}
	st.LastFence = &Fence{At: r.cfg.Now().UnixMilli(), FromEpoch: from, ToEpoch: d.Epoch, By: d.Leader, Planned: planned}
	if err := r.saveState(ctx, st); err != nil {
		// The gate stays closed and the in-memory state says passive: the
		// region refuses writes even if its state could not be saved.
		r.mu.Lock()
		r.state = st
		r.mu.Unlock()
		r.log.Error("disaster recovery: save the fenced state", "err", err)
	}
	if planned {
		r.event(ctx, "handed_over", "%s took over at epoch %d; this region follows it now", d.Leader, d.Epoch)
	} else {
		r.event(ctx, "fenced", "%s leads epoch %d, above this region's epoch %d: this region refuses writes and scheduling and rejoins as a follower", d.Leader, d.Epoch, from)
	}
	r.kick()
}
