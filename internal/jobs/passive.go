package jobs

import (
	"context"

	"github.com/tandemdata/tandem/internal/replication"
	"github.com/tandemdata/tandem/internal/store"
)

// PassivePosture is a job as a passive disaster-recovery region keeps it:
// its schedule and triggers paused and no concurrent runs allowed, as the
// article's replication table asks. The primary's real settings are kept
// aside by replication and restored when the region is promoted.
var PassivePosture = replication.SetFields(
	replication.Field{Path: "settings.max_concurrent_runs", Value: 0, Create: true},
	replication.Field{Path: "settings.schedule.pause_status", Value: "PAUSED"},
	replication.Field{Path: "settings.continuous.pause_status", Value: "PAUSED"},
	replication.Field{Path: "settings.trigger.pause_status", Value: "PAUSED"},
)

func init() { replication.RegisterPosture(kindJob, PassivePosture) }

// ActiveWork counts the runs that are not finished: the work a planned
// failover drains or cancels.
func (s *Service) ActiveWork(ctx context.Context) (int, error) {
	n := 0
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindActive, "", func(_ string, e activeEntry) error {
			rec, err := store.Get[record](tx, kindRun, runKey(e.RunID))
			if err != nil {
				return err
			}
			if !Terminal(rec.Run.State.LifeCycleState) {
				n++
			}
			return nil
		})
	})
	return n, err
}

// CancelWork asks every unfinished run to stop, as runs/cancel does, on
// behalf of a planned failover.
func (s *Service) CancelWork(ctx context.Context) (int, error) {
	n := 0
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		n = 0
		return store.ScanPrefix(tx, kindActive, "", func(_ string, e activeEntry) error {
			rec, err := store.Get[record](tx, kindRun, runKey(e.RunID))
			if err != nil {
				return err
			}
			if Terminal(rec.Run.State.LifeCycleState) {
				return nil
			}
			n++
			return requestCancel(tx, &rec)
		})
	})
	if err == nil && n > 0 {
		s.nudge()
	}
	return n, err
}
