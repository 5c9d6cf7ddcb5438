package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/quartz"
	"github.com/tandemdata/tandem/internal/store"
)

// scheduleState is a scheduled job's progress. LastTick is the newest tick
// that was handled (fired, or reported as missed); a tick is handled in the
// same transaction as the run it creates, which is what makes it fire
// exactly once, however often the scheduler restarts.
type scheduleState struct {
	LastTick  int64   `json:"last_tick"`  // ms
	LastFired int64   `json:"last_fired"` // ms, the tick of the newest scheduled run
	Missed    []int64 `json:"missed,omitempty"`
}

// maxMissedKept bounds the missed ticks remembered per job.
const maxMissedKept = 100

// resetSchedule starts a job's schedule from now when it is new, or when its
// expression, time zone or pause status changed: ticks before the change are
// not owed.
func resetSchedule(tx store.Tx, id int64, old, next *CronSchedule) error {
	if next == nil {
		if err := tx.Delete(kindSchedule, jobKey(id)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	}
	if old != nil && *old == *next {
		return nil
	}
	st, err := store.Get[scheduleState](tx, kindSchedule, jobKey(id))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	st.LastTick = tx.Now().UnixMilli()
	return store.Put(tx, kindSchedule, jobKey(id), st)
}

// graceMissed is how late a tick may be handled and still fire: a tick
// older than this when the scheduler gets to it (the region was down) is
// reported as missed instead, except the newest one.
const graceMissed = 60 * time.Second

// dueTicks decides, for a schedule whose last handled tick is last, what to
// do at now: the tick to fire (zero if none) and the ticks to report as
// missed. When several ticks passed (the scheduler was down), the newest
// fires and the older ones are reported, so a restart never starts a burst
// of stale runs and never skips silently.
func dueTicks(q *quartz.Schedule, loc *time.Location, last, now time.Time) (fire time.Time, missed []time.Time) {
	ticks := q.Between(last, now, loc, 10000)
	if len(ticks) == 0 {
		return time.Time{}, nil
	}
	newest := ticks[len(ticks)-1]
	for _, t := range ticks[:len(ticks)-1] {
		if now.Sub(t) > graceMissed {
			missed = append(missed, t)
		} else {
			// Two ticks within the grace (a schedule every few seconds and a
			// short pause): keep them in order, fire the older one first.
			return t, missed
		}
	}
	return newest, missed
}

// schedule fires every job whose tick is due. It runs every Tick.
func (s *Service) schedule(ctx context.Context) error {
	type job struct {
		id   int64
		spec Spec
		st   scheduleState
	}
	var due []job
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindSchedule, "", func(key string, st scheduleState) error {
			j, err := store.Get[Job](tx, kindJob, key)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			sp, err := specOf(j.Settings)
			if err != nil || sp.Schedule == nil || sp.Schedule.PauseStatus == "PAUSED" {
				return nil
			}
			due = append(due, job{id: j.JobID, spec: sp, st: st})
			return nil
		})
	})
	if err != nil {
		return err
	}
	now := s.Now()
	for _, j := range due {
		q, loc, err := parseSchedule(*j.spec.Schedule)
		if err != nil {
			continue
		}
		fire, missed := dueTicks(q, loc, time.UnixMilli(j.st.LastTick), now)
		if fire.IsZero() {
			continue
		}
		if err := s.fire(ctx, j.id, j.st.LastTick, fire, missed); err != nil && ctx.Err() == nil {
			s.Log.Error("scheduled run", "job_id", j.id, "err", err)
		}
	}
	return nil
}

// fire creates the scheduled run of a tick, in the transaction that marks
// the tick handled; if another scheduler (or a restart) handled it first,
// it does nothing.
func (s *Service) fire(ctx context.Context, id, expectLast int64, tick time.Time, missed []time.Time) error {
	var runID int64
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		st, err := store.Get[scheduleState](tx, kindSchedule, jobKey(id))
		if err != nil {
			return err
		}
		if st.LastTick != expectLast {
			return nil // handled meanwhile
		}
		j, err := store.Get[Job](tx, kindJob, jobKey(id))
		if err != nil {
			return err
		}
		sp, err := specOf(j.Settings)
		if err != nil {
			return err
		}
		for _, m := range missed {
			st.Missed = append(st.Missed, m.UnixMilli())
		}
		if n := len(st.Missed); n > maxMissedKept {
			st.Missed = st.Missed[n-maxMissedKept:]
		}
		st.LastTick = tick.UnixMilli()
		if err := validate(sp, true); err == nil {
			owner := principal.Principal{Name: j.RunAsUserName, Kind: principal.User}
			rec, err := s.newRun(tx, &j, sp, owner, "PERIODIC", runParams{}, nil)
			if err != nil {
				return err
			}
			runID = rec.Run.RunID
			st.LastFired = tick.UnixMilli()
		}
		return store.Put(tx, kindSchedule, jobKey(id), st)
	})
	if err != nil {
		return err
	}
	for _, m := range missed {
		s.Log.Warn("schedule tick missed while the scheduler was not running", "job_id", id, "tick", m.UTC().Format(time.RFC3339))
		s.auditSystem(ctx, "runMissed", map[string]string{"jobId": jobID(id), "scheduledTime": m.UTC().Format(time.RFC3339)}, 0)
	}
	if runID != 0 {
		s.auditSystem(ctx, "runTriggered", map[string]string{"jobId": jobID(id), "runId": jobID(runID), "trigger": "PERIODIC",
			"scheduledTime": tick.UTC().Format(time.RFC3339)}, runID)
		s.nudge()
	}
	return nil
}

// auditSystem records an automated jobs action, done by System-User.
func (s *Service) auditSystem(ctx context.Context, action string, params map[string]string, _ int64) {
	if s.Audit == nil {
		return
	}
	rec := audit.New(s.ResourceID, "jobs", action, s.Now())
	rec.Identity.Email = principal.SystemName
	rec.Properties.RequestParams = params
	rec.Properties.Response.StatusCode = 200
	if err := s.Audit.Append(ctx, rec); err != nil {
		s.Log.Error("audit record not written", "action", action, "err", err)
	}
}
