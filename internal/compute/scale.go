package compute

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/store"
)

// ErrNotAutoscaling is returned by SetTargetWorkers for a cluster of fixed
// size.
var ErrNotAutoscaling = errors.New("the cluster does not autoscale")

// SetTargetWorkers is the autoscaler's handle on a cluster: it sets how
// many workers an autoscaling cluster wants now, clamped to its range. An
// upsize acquires instances (RESIZING until they join); a downsize
// releases workers at once, those named in release first (workers the
// autoscaler has drained: no running tasks, no shuffle data). It logs a
// RESIZING event with the cause (AUTOSCALE) and returns the target set.
func (s *Service) SetTargetWorkers(ctx context.Context, clusterID string, n int, release []string, cause string) (int, error) {
	if cause == "" {
		cause = CauseAutoscale
	}
	var target int
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		c, err := getCluster(tx, clusterID)
		if err != nil {
			return err
		}
		if c.Spec.Autoscale == nil {
			return ErrNotAutoscaling
		}
		if c.State != Running && c.State != Resizing {
			return api.Errorf(api.InvalidState, "Cluster %s is %s: only a running cluster is resized.", c.ID, titleState(c.State))
		}
		before := c.TargetWorkers
		target = c.Spec.clampWorkers(n)
		if target == before && len(release) == 0 {
			return nil
		}
		c.TargetWorkers = target
		c.ReleaseFirst = release
		if err := s.putEvent(tx, &c, EvResizing, EventDetails{Cause: cause, CurrentNumWorkers: before, TargetNumWorkers: target}); err != nil {
			return err
		}
		if target > before {
			c.State, c.StateMessage, c.StateSince = Resizing, fmt.Sprintf("Adding nodes: from %d to %s.", before, fmtWorkers(target)), tx.Now().UnixMilli()
		}
		return store.Put(tx, kindCluster, c.ID, c)
	})
	if err == nil {
		s.nudge()
	}
	return target, err
}

// SparkState is a running cluster's Spark as its driver sees it: alive
// workers, cores and cores in use, active applications (the autoscaler's
// signal). It returns nil when the driver has not reported it yet.
func (s *Service) SparkState(ctx context.Context, clusterID string) (*wire.SparkSnapshot, error) {
	var d Instance
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		d, err = driverOf(tx, clusterID)
		return err
	})
	if err != nil || d.ID == "" {
		return nil, err
	}
	ob, ok := s.obs.get(d.ID)
	if !ok || ob.status.Generation != d.Generation || ob.spark == nil {
		return nil, nil
	}
	snap := *ob.spark
	snap.Workers = slices.Clone(snap.Workers)
	snap.ActiveApps = slices.Clone(snap.ActiveApps)
	return &snap, nil
}
