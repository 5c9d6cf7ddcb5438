// Package initscripts is the Global init scripts API: workspace-wide shell
// scripts that every cluster node runs, in order, before Spark starts. Only
// admins manage them (they run on every cluster as root of the node).
package initscripts

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"sort"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

const kindScript = "initscripts.script"

// MaxScript bounds a script's decoded size.
const MaxScript = 64 << 10

// Script is a global init script.
type Script struct {
	ID        string `json:"script_id"`
	Name      string `json:"name"`
	Script    string `json:"script,omitempty"` // base64
	Enabled   bool   `json:"enabled"`
	Position  int    `json:"position"`
	CreatedAt int64  `json:"created_at"`
	CreatedBy string `json:"created_by"`
	UpdatedAt int64  `json:"updated_at"`
	UpdatedBy string `json:"updated_by"`
}

// Body is the decoded script.
func (s Script) Body() []byte {
	b, _ := base64.StdEncoding.DecodeString(s.Script)
	return b
}

// Service manages global init scripts.
type Service struct {
	Store store.Store
}

// Routes returns the Global init scripts API.
func (s *Service) Routes() []api.Route {
	r := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "globalInitScripts", Action: action, Handler: h, Drop: []string{"script"}}
	}
	return []api.Route{
		r("POST /api/2.0/global-init-scripts", "create", s.create),
		r("GET /api/2.0/global-init-scripts", "list", s.list),
		r("GET /api/2.0/global-init-scripts/{script_id}", "get", s.get),
		r("PATCH /api/2.0/global-init-scripts/{script_id}", "update", s.update),
		r("DELETE /api/2.0/global-init-scripts/{script_id}", "delete", s.delete),
	}
}

// place moves id to position pos in an ordered list of ids (inserting it
// if new): a position past the end, or negative, means last; the others
// shift to keep positions contiguous. It is pure.
func place(order []string, id string, pos int) []string {
	out := make([]string, 0, len(order)+1)
	for _, x := range order {
		if x != id {
			out = append(out, x)
		}
	}
	if pos < 0 || pos > len(out) {
		pos = len(out)
	}
	out = append(out, "")
	copy(out[pos+1:], out[pos:])
	out[pos] = id
	return out
}

func requireAdmin(ctx context.Context) error {
	if p := principal.MustFrom(ctx); !p.Admin {
		return api.Denied("Only workspace admins can manage global init scripts; %s is not an admin.", p.Name)
	}
	return nil
}

func all(tx store.Tx) ([]Script, error) {
	scripts, err := store.List[Script](tx, kindScript, "")
	sort.Slice(scripts, func(i, j int) bool { return scripts[i].Position < scripts[j].Position })
	return scripts, err
}

// renumber stores the scripts in the given order with positions 0..n-1.
func renumber(tx store.Tx, byID map[string]Script, order []string) error {
	for i, id := range order {
		sc := byID[id]
		sc.Position = i
		if err := store.Put(tx, kindScript, id, sc); err != nil {
			return err
		}
	}
	return nil
}

type scriptRequest struct {
	Name     string `json:"name"`
	Script   string `json:"script"`
	Enabled  *bool  `json:"enabled"`
	Position *int   `json:"position"`
}

func validate(r scriptRequest) error {
	if strings.TrimSpace(r.Name) == "" {
		return api.MissingField("name")
	}
	if len(r.Name) > 128 {
		return api.InvalidParam("name is longer than 128 characters.")
	}
	if r.Script == "" {
		return api.MissingField("script")
	}
	b, err := base64.StdEncoding.DecodeString(r.Script)
	if err != nil {
		return api.Errorf(api.MalformedRequest, "script must be base64: %v", err)
	}
	if len(b) > MaxScript {
		return api.InvalidParam("The script is %d bytes; the limit is %d.", len(b), MaxScript)
	}
	if r.Position != nil && *r.Position < 0 {
		return api.InvalidParam("position must not be negative.")
	}
	return nil
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

func (s *Service) create(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var r scriptRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validate(r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	id := newID()
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		scripts, err := all(tx)
		if err != nil {
			return err
		}
		byID := map[string]Script{}
		var order []string
		for _, sc := range scripts {
			byID[sc.ID] = sc
			order = append(order, sc.ID)
		}
		now := tx.Now().UnixMilli()
		sc := Script{ID: id, Name: r.Name, Script: r.Script, Enabled: r.Enabled != nil && *r.Enabled,
			CreatedAt: now, CreatedBy: p.Name, UpdatedAt: now, UpdatedBy: p.Name}
		byID[id] = sc
		pos := -1
		if r.Position != nil {
			pos = *r.Position
		}
		return renumber(tx, byID, place(order, id, pos))
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"script_id": id}, nil
}

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var scripts []Script
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		scripts, err = all(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := range scripts {
		scripts[i].Script = "" // the list carries no bodies
	}
	if len(scripts) == 0 {
		return map[string]any{}, nil
	}
	return map[string]any{"scripts": scripts}, nil
}

func notFound(id string) error {
	return api.NotFound("The global init script with id %s does not exist.", id)
}

func (s *Service) get(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("script_id")
	var sc Script
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		sc, err = store.Get[Script](tx, kindScript, id)
		if errors.Is(err, store.ErrNotFound) {
			return notFound(id)
		}
		return err
	})
	return sc, err
}

func (s *Service) update(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var r scriptRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validate(r); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("script_id")
	p := principal.MustFrom(ctx)
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		scripts, err := all(tx)
		if err != nil {
			return err
		}
		byID := map[string]Script{}
		var order []string
		for _, sc := range scripts {
			byID[sc.ID] = sc
			order = append(order, sc.ID)
		}
		sc, ok := byID[id]
		if !ok {
			return notFound(id)
		}
		sc.Name, sc.Script = r.Name, r.Script
		if r.Enabled != nil {
			sc.Enabled = *r.Enabled
		}
		sc.UpdatedAt, sc.UpdatedBy = tx.Now().UnixMilli(), p.Name
		byID[id] = sc
		pos := sc.Position
		if r.Position != nil {
			pos = *r.Position
		}
		return renumber(tx, byID, place(order, id, pos))
	})
	return nil, err
}

func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("script_id")
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		scripts, err := all(tx)
		if err != nil {
			return err
		}
		byID := map[string]Script{}
		var order []string
		found := false
		for _, sc := range scripts {
			if sc.ID == id {
				found = true
				continue
			}
			byID[sc.ID] = sc
			order = append(order, sc.ID)
		}
		if !found {
			return notFound(id)
		}
		if err := tx.Delete(kindScript, id); err != nil {
			return err
		}
		return renumber(tx, byID, order)
	})
	return nil, err
}

// Enabled returns the enabled scripts in run order, for clusters to run.
func (s *Service) Enabled(ctx context.Context) ([]Script, error) {
	var out []Script
	err := s.Store.View(ctx, func(tx store.Tx) error {
		scripts, err := all(tx)
		for _, sc := range scripts {
			if sc.Enabled {
				out = append(out, sc)
			}
		}
		return err
	})
	return out, err
}
