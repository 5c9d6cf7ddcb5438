package compute

import (
	"context"
	"errors"

	"github.com/tandemdata/tandem/internal/agent/wire"
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
