package dr

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/tandemdata/tandem/internal/replication"
)

// The storage account's contents (notebook sources, DBFS blocks) cross to
// the peer through the account's geo-replication, not the change log. The
// region tells the account when to ship (only while it leads), hands the
// follower the account's keys to keep in step once the two accounts share
// one account key, reloads the account at promotion, and reports its
// shipping state, which a planned failover's catch-up waits for.

// StorageSync is the storage account's geo-replication as the runbook sees
// it: a sealed source is caught up when its backlog is empty.
type StorageSync struct {
	// Geo is false when the account does not replicate (LRS, ZRS).
	Geo bool `json:"geo"`
	// Backlog is the number of changes not yet shipped to the peer.
	Backlog int `json:"backlog"`
	// LastSyncTime (epoch ms): every change before it is in the peer.
	LastSyncTime int64  `json:"last_sync_time,omitempty"`
	Held         bool   `json:"held,omitempty"`
	LastError    string `json:"last_error,omitempty"`
}

// StorageHooks connect the region to its storage account.
type StorageHooks struct {
	// Sync reports the account's geo-replication (nil: no account).
	Sync func() StorageSync
	// Promoted runs after a promotion has opened the gate (the account
	// reloads the settings and key records its leader replicated); planned
	// says the former leader still answers (its keys can be fetched once
	// more).
	Promoted func(ctx context.Context, planned bool) error
}

// SetStorage connects the storage account. Call it before Run.
func (r *Region) SetStorage(h StorageHooks) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.storage = h
}

func (r *Region) storageHooks() StorageHooks {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.storage
}

// WhenPassive adds work to do once each time the region has become passive
// (its leader's loops stopped): compute releases the instances it ran
// while it led. Call it before Run.
func (r *Region) WhenPassive(fn func(context.Context) error) {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	r.passiveHooks = append(r.passiveHooks, fn)
}

// runPassiveHooks runs the hooks once per epoch the region follows in.
func (r *Region) runPassiveHooks(ctx context.Context, epoch int64) {
	r.runMu.Lock()
	hooks, done := r.passiveHooks, r.passiveDone && r.passiveEpoch == epoch
	r.runMu.Unlock()
	if len(hooks) == 0 || done {
		return
	}
	for _, fn := range hooks {
		if err := fn(ctx); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("disaster recovery: work on becoming passive not done yet", "err", err)
			}
			return
		}
	}
	r.runMu.Lock()
	r.passiveDone, r.passiveEpoch = true, epoch
	r.runMu.Unlock()
}

// SetClusterStarter sets how a promotion starts the clusters that were
// running in the former leader (Plan.StartClusters). Call it before Run.
func (r *Region) SetClusterStarter(fn func(context.Context) (int, error)) {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	r.startClusters = fn
}

func (r *Region) clusterStarter() func(context.Context) (int, error) {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	return r.startClusters
}

// ShareKeys adds platform keys the follower adopts from its leader and
// keeps in step (the storage account's KEKs, once the accounts are paired).
func (r *Region) ShareKeys(names ...string) {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	for _, n := range names {
		if !slices.Contains(r.cfg.SharedKeys, n) {
			r.cfg.SharedKeys = append(r.cfg.SharedKeys, n)
		}
	}
}

// SharesKeys reports whether the follower keeps the named key in step.
func (r *Region) SharesKeys(name string) bool {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	return slices.Contains(r.cfg.SharedKeys, name)
}

// AdoptPeerKeys fetches the named keys from the peer (sealed end to end)
// and adopts them now.
func (r *Region) AdoptPeerKeys(ctx context.Context, names []string) error {
	if r.cfg.Peer == nil {
		return fmt.Errorf("no peer region")
	}
	src := &replication.PeerSource{Peer: r.cfg.Peer, Region: r.cfg.Region, Epoch: func() int64 { return r.State().Epoch }}
	got, err := src.Keys(ctx, names)
	if err != nil {
		return err
	}
	defer func() {
		for _, vs := range got {
			for _, v := range vs {
				clear(v)
			}
		}
	}()
	suffix := strconv.FormatInt(r.cfg.Now().UnixMilli(), 10)
	for _, n := range names {
		vs, ok := got[n]
		if !ok {
			return fmt.Errorf("the peer did not share key %s", n)
		}
		if _, err := r.cfg.Keys.Adopt(n, vs, suffix); err != nil {
			return err
		}
	}
	r.log.Info("disaster recovery: adopted the peer's keys", "keys", names)
	return nil
}

// storageCaughtUp decides whether a sealed source's storage account has
// shipped everything (pure: the runbook's catch-up uses it).
func storageCaughtUp(s *StorageSync) bool {
	return s == nil || !s.Geo || s.Backlog == 0
}
