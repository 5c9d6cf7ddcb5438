package compute

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/store"
)

// Retention of what clusters leave behind, as on Databricks: events are
// kept 60 days; a terminated cluster is listed 30 days and can be read 60
// days (a pinned one is kept); finished tasks are kept a week.
const (
	eventRetention      = 60 * 24 * time.Hour
	terminatedRetention = 60 * 24 * time.Hour
	taskRetention       = 7 * 24 * time.Hour
)

// purge removes what is past its retention, a bounded batch at a time.
func (s *Service) purge(ctx context.Context) error {
	now := s.Now()
	var events, tasks, clusters []string
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if err := store.ScanPrefix(tx, kindCluster, "", func(key string, c Cluster) error {
			if c.State == Terminated && !c.Pinned && c.TerminatedTime > 0 && now.Sub(time.UnixMilli(c.TerminatedTime)) > terminatedRetention {
				clusters = append(clusters, key)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := store.ScanPrefix(tx, kindTask, "", func(key string, t taskRecord) error {
			if t.State == TaskFinished && now.Sub(time.UnixMilli(t.Ended)) > taskRetention {
				tasks = append(tasks, key)
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Scan(kindEvent, "", "", func(key string, raw json.RawMessage) error {
			var e Event
			if json.Unmarshal(raw, &e) == nil && now.Sub(time.UnixMilli(e.Timestamp)) > eventRetention {
				events = append(events, key)
			}
			if len(events) >= 1000 {
				return store.ErrStopScan
			}
			return nil
		})
	})
	if err != nil || len(events)+len(tasks)+len(clusters) == 0 {
		return err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		for _, k := range events {
			if err := deleteIfPresent(tx, kindEvent, k); err != nil {
				return err
			}
		}
		for _, k := range tasks {
			if err := deleteIfPresent(tx, kindTask, k); err != nil {
				return err
			}
		}
		for _, id := range clusters {
			var evs []string
			if err := tx.Scan(kindEvent, id+"/", "", func(key string, _ json.RawMessage) error {
				evs = append(evs, key)
				return nil
			}); err != nil {
				return err
			}
			for _, k := range evs {
				if err := deleteIfPresent(tx, kindEvent, k); err != nil {
					return err
				}
			}
			if err := permissions.Delete(tx, "clusters", id); err != nil {
				return err
			}
			if err := deleteIfPresent(tx, kindCluster, id); err != nil {
				return err
			}
			if err := deleteIfPresent(tx, kindLogDelivery, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && s.LogDir != "" {
		for _, id := range clusters {
			os.RemoveAll(filepath.Join(s.LogDir, id))
		}
	}
	return err
}

func deleteIfPresent(tx store.Tx, kind store.Kind, key string) error {
	if err := tx.Delete(kind, key); err != nil && err != store.ErrNotFound {
		return err
	}
	return nil
}
