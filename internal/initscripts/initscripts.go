package initscripts

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"

	"github.com/tandemdata/tandem/internal/store"
)

// kindScript holds the scripts by id.
const kindScript store.Kind = "initscripts.script"

// Limits, as Databricks has them.
const (
	MaxScript  = 64 << 10 // decoded bytes
	MaxNameLen = 100
)

// Script is a global init script as the API shows it.
type Script struct {
	ID        string `json:"script_id"`
	Name      string `json:"name"`
	Script    string `json:"script,omitempty"` // base64; lists leave it out
	Enabled   bool   `json:"enabled"`
	Position  int    `json:"position"`
	CreatedAt int64  `json:"created_at"`
	CreatedBy string `json:"created_by"`
	UpdatedAt int64  `json:"updated_at"`
	UpdatedBy string `json:"updated_by"`
	// Content is the decoded script. Enabled fills it for compute; it is
	// neither stored nor sent.
	Content []byte `json:"-"`
}

// Service manages a workspace's global init scripts.
type Service struct {
	Store store.Store
}

// all returns every script in run order.
func all(tx store.Tx) ([]Script, error) {
	scripts, err := store.List[Script](tx, kindScript, "")
	sort.SliceStable(scripts, func(i, j int) bool { return scripts[i].Position < scripts[j].Position })
	return scripts, err
}

// renumber stores each script of order at its index, writing only the ones
// whose position moved and the one whose content changed (changed), so the
// change log carries no needless writes.
func renumber(tx store.Tx, byID map[string]Script, order []string, changed string) error {
	for i, id := range order {
		sc := byID[id]
		if sc.Position == i && id != changed {
			continue
		}
		sc.Position = i
		if err := store.Put(tx, kindScript, id, sc); err != nil {
			return err
		}
	}
	return nil
}

// Enabled returns the enabled scripts in run order, their bodies decoded,
// for every node of a cluster to run before Spark starts.
func (s *Service) Enabled(ctx context.Context) ([]Script, error) {
	var out []Script
	err := s.Store.View(ctx, func(tx store.Tx) error {
		scripts, err := all(tx)
		if err != nil {
			return err
		}
		for _, sc := range scripts {
			if !sc.Enabled {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(sc.Script)
			if err != nil {
				return fmt.Errorf("decode global init script %s: %w", sc.ID, err)
			}
			sc.Content = b
			out = append(out, sc)
		}
		return nil
	})
	return out, err
}
