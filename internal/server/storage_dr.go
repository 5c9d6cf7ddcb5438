package server

import (
	"context"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/audit/destination"
	"github.com/tandemdata/tandem/internal/audit/digest"
	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/replication"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/account"
)

// storagePeering makes the peer region the secondary of the storage
// account's geo-replication: shipments go to the peer's account (below
// both accounts' encryption) only while this region leads, and a passive
// region's new account takes its leader's account key before it first
// opens, so what it receives reads as its own after a promotion.
func (s *Server) storagePeering(o *account.Options) {
	if s.peer == nil {
		return
	}
	remote := replication.NewRemoteBackend(s.peer)
	remote.AccountKey = func() string {
		if s.StorageAccount == nil {
			return ""
		}
		return s.StorageAccount.KeyID()
	}
	passive := func() bool { return !s.DR.Leads() }
	o.Secondary = func(context.Context) (storage.Backend, error) { return remote, nil }
	o.HoldShipping = passive
	o.RegionLocal = regionalDiagnostics
	o.Pairing = &account.Pairing{
		Passive:   passive,
		AdoptKeys: func(ctx context.Context) error { return s.DR.AdoptPeerKeys(ctx, accountKeys) },
		Leader:    replication.NewRemoteBackend(s.peer),
		OnPaired:  func() { s.DR.ShareKeys(accountKeys...) },
	}
}

// regionalDiagnostics names the objects each region keeps for itself: its
// diagnostic logs and their digests. Both regions write them under the same
// names (one workspace, one resource id), each with its own records and its
// own digest chain, so shipping them would overwrite the peer's.
func regionalDiagnostics(name string) bool {
	return strings.HasPrefix(name, destination.ContainerPrefix) || strings.HasPrefix(name, digest.Root)
}

// releaseComputeWhenPassive stops the instances a region ran while it led,
// once it follows its peer.
func (s *Server) releaseComputeWhenPassive() {
	s.DR.WhenPassive(func(ctx context.Context) error {
		_, err := s.Compute.ReleaseInstances(ctx)
		return err
	})
}

// peerFollows learns of each call of the peer region: the disaster-recovery
// side learns its epoch and progress, and the storage account, whose
// shipments to the peer may be backing off after an outage, retries now.
func (s *Server) peerFollows(region string, epoch, applied int64) {
	s.DR.PeerFollower(region, epoch, applied)
	s.StorageAccount.RetryShipping()
}

// connectStorageDR lets the disaster-recovery side see the account's
// shipping (status, the planned failover's catch-up) and reload it at
// promotion.
func (s *Server) connectStorageDR() {
	if s.peer == nil {
		return
	}
	s.releaseComputeWhenPassive()
	s.DR.SetClusterStarter(s.Compute.StartFailedOver)
	acc := s.StorageAccount
	s.DR.SetStorage(dr.StorageHooks{
		Sync: func() dr.StorageSync {
			g := acc.GeoStatus()
			if g == nil {
				return dr.StorageSync{}
			}
			ss := dr.StorageSync{Geo: true, Backlog: g.Backlog, Held: g.Held, LastError: g.LastError}
			if g.HasLastSyncTime {
				ss.LastSyncTime = g.LastSyncTime.UnixMilli()
			}
			return ss
		},
		Promoted: func(ctx context.Context, planned bool) error {
			if planned && s.DR.SharesKeys(accountKeys[0]) {
				// A rotation on the former leader since the last refresh
				// would leave the key records unopenable here.
				kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := s.DR.AdoptPeerKeys(kctx, accountKeys)
				cancel()
				if err != nil {
					s.log.Warn("storage: the former leader's account keys were not fetched again before the reload", "err", err)
				}
			}
			return acc.Reload(ctx)
		},
	})
}
