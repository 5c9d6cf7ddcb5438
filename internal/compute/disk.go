package compute

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/store"
)

// Local storage autoscaling events (Databricks' event types).
const (
	EvExpandedDisk       = wire.DiskExpanded
	EvFailedToExpandDisk = wire.DiskFailedExpand
	EvDidNotExpandDisk   = wire.DiskDidNotExpand
)

// kindDiskSeq keeps, per instance, the last disk event sequence number
// recorded, so that an event the agent sends again is recorded once.
const kindDiskSeq = "compute.diskseq" // instance id -> int64

// elasticDiskFor is the elastic disk configuration a node of a cluster
// gets: nil unless the cluster, or the pool the instance comes from, asks
// for enable_elastic_disk (a pool's setting covers its instances, as on
// Databricks).
func (s *Service) elasticDiskFor(ctx context.Context, c Cluster, poolID string) *wire.ElasticDisk {
	pooled := false
	if !c.Spec.EnableElasticDisk && poolID != "" {
		s.Store.View(ctx, func(tx store.Tx) error {
			p, err := store.Get[Pool](tx, kindPool, poolID)
			pooled = err == nil && p.EnableElasticDisk
			return nil
		})
	}
	if !wantsElasticDisk(c.Spec.EnableElasticDisk, pooled) {
		return nil
	}
	d := s.ElasticDisk
	return &d
}

func wantsElasticDisk(cluster, pool bool) bool { return cluster || pool }

// diskEventsToRecord picks the events newer than the last recorded one
// that belong to the cluster the instance serves or served (a late report
// after the instance left its cluster still counts), and the new last
// sequence number.
func diskEventsToRecord(evs []wire.DiskEvent, last int64, clusters ...string) ([]wire.DiskEvent, int64) {
	var out []wire.DiskEvent
	for _, ev := range evs {
		if ev.Seq <= last {
			continue
		}
		last = ev.Seq
		for _, c := range clusters {
			if c != "" && ev.ClusterID == c {
				out = append(out, ev)
				break
			}
		}
	}
	return out, last
}

// diskEventDetails are an event's details as the event log shows them.
func diskEventDetails(instanceID string, ev wire.DiskEvent) EventDetails {
	d := EventDetails{InstanceID: instanceID, DiskSize: ev.DiskSize, PreviousDiskSize: ev.PreviousDiskSize, FreeSpace: ev.FreeSpace}
	if ev.Type != wire.DiskExpanded {
		d.DidNotExpandReason = ev.Reason
	}
	return d
}

// recordDiskEvents writes an agent's disk events to its cluster's event
// log, once each, and returns the sequence number to acknowledge.
func (s *Service) recordDiskEvents(ctx context.Context, in Instance, evs []wire.DiskEvent) (int64, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	var acked int64
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		last, err := store.Get[int64](tx, kindDiskSeq, in.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		todo, newLast := diskEventsToRecord(evs, last, in.ClusterID, in.LastCluster)
		acked = newLast
		if newLast == last {
			return nil
		}
		clusters := map[string]*Cluster{}
		for _, ev := range todo {
			c := clusters[ev.ClusterID]
			if c == nil {
				cl, err := getCluster(tx, ev.ClusterID)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				c = &cl
				clusters[c.ID] = c
			}
			if err := s.putEvent(tx, c, ev.Type, diskEventDetails(in.ID, ev)); err != nil {
				return err
			}
		}
		for id, c := range clusters {
			if err := store.Put(tx, kindCluster, id, *c); err != nil {
				return err
			}
		}
		return store.Put(tx, kindDiskSeq, in.ID, newLast)
	})
	if err != nil {
		return 0, err
	}
	return acked, nil
}

// scratchGrants remembers, per instance, the scratch size its provider
// has granted, so an agent's request repeated in every report until its
// filesystem grows costs the provider one call.
type scratchGrants struct {
	mu sync.Mutex
	m  map[string]int64
}

// growTimeout bounds one call to the provider from a report.
const growTimeout = 10 * time.Second

// growScratch answers an agent's request for a bigger scratch volume
// (wire.DiskStatus.WantBytes): the size granted, or why not.
func (s *Service) growScratch(ctx context.Context, instanceID string, want int64) (int64, string) {
	g, ok := s.Provider.(provider.ScratchGrower)
	if !ok {
		return 0, "this region's instance provider cannot grow a node's scratch volume"
	}
	s.grants.mu.Lock()
	granted := s.grants.m[instanceID]
	s.grants.mu.Unlock()
	if want <= granted {
		return granted, ""
	}
	ctx, cancel := context.WithTimeout(ctx, growTimeout)
	defer cancel()
	if err := g.GrowScratch(ctx, instanceID, want); err != nil {
		s.Log.Warn("grow scratch volume", "instance_id", instanceID, "want_bytes", want, "err", err)
		return granted, err.Error()
	}
	s.grants.mu.Lock()
	if s.grants.m == nil {
		s.grants.m = map[string]int64{}
	}
	s.grants.m[instanceID] = max(s.grants.m[instanceID], want)
	s.grants.mu.Unlock()
	return want, ""
}

// forgetGrant drops what grants keeps of a deleted instance.
func (s *Service) forgetGrant(instanceID string) {
	s.grants.mu.Lock()
	delete(s.grants.m, instanceID)
	s.grants.mu.Unlock()
}
