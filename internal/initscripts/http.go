package initscripts

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Routes returns the Global init scripts API. Script bodies stay out of the
// audit records: they are bulky and may carry credentials.
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

// requireAdmin refuses everyone but workspace admins, as Databricks does.
func requireAdmin(ctx context.Context) (principal.Principal, error) {
	p, ok := principal.From(ctx)
	if !ok || p.IsZero() {
		return p, api.Errorf(api.Unauthenticated, "Authentication is required.")
	}
	if !p.Admin {
		return p, api.Denied("Only workspace admins can manage global init scripts; %s is not an admin.", p.Name)
	}
	return p, nil
}

type scriptRequest struct {
	Name     string `json:"name"`
	Script   string `json:"script"`
	Enabled  *bool  `json:"enabled"`
	Position *int   `json:"position"`
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_\-. ]*$`)

// check validates the fields a request gives; an update may give none.
func (r scriptRequest) check(create bool) error {
	if create && r.Name == "" {
		return api.MissingField("name")
	}
	if r.Name != "" {
		if len(r.Name) > MaxNameLen {
			return api.InvalidParam("The script name is %d characters long; it may have at most %d.", len(r.Name), MaxNameLen)
		}
		if strings.TrimSpace(r.Name) == "" || !nameRE.MatchString(r.Name) {
			return api.InvalidParam("Invalid script name %q: use letters, digits, spaces, '-', '_' and '.'.", r.Name)
		}
	}
	if create && r.Script == "" {
		return api.MissingField("script")
	}
	if r.Script != "" {
		b, err := base64.StdEncoding.DecodeString(r.Script)
		if err != nil {
			return api.Errorf(api.MalformedRequest, "script must be the script's content in standard base64.")
		}
		if len(b) > MaxScript {
			return api.InvalidParam("The script is %d bytes; a global init script may be at most %d bytes (64 KB).", len(b), MaxScript)
		}
	}
	if r.Position != nil && *r.Position < 0 {
		return api.InvalidParam("position must be 0 or more, not %d.", *r.Position)
	}
	return nil
}

// load returns every script by id and the run order.
func load(tx store.Tx) (map[string]Script, []string, error) {
	scripts, err := all(tx)
	if err != nil {
		return nil, nil, err
	}
	byID := make(map[string]Script, len(scripts))
	order := make([]string, 0, len(scripts))
	for _, sc := range scripts {
		byID[sc.ID] = sc
		order = append(order, sc.ID)
	}
	return byID, order, nil
}

// newID returns a script id in Databricks' form: 16 upper-case hex digits.
func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

func notFound(id string) error {
	return api.NotFound("The global init script with id %s does not exist.", id)
}

func (s *Service) create(ctx context.Context, req *api.Request) (any, error) {
	p, err := requireAdmin(ctx)
	if err != nil {
		return nil, err
	}
	var r scriptRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := r.check(true); err != nil {
		return nil, err
	}
	id := newID()
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		byID, order, err := load(tx)
		if err != nil {
			return err
		}
		now := tx.Now().UnixMilli()
		byID[id] = Script{ID: id, Name: r.Name, Script: r.Script, Enabled: r.Enabled != nil && *r.Enabled,
			Position: -1, CreatedAt: now, CreatedBy: p.Name, UpdatedAt: now, UpdatedBy: p.Name}
		pos := -1
		if r.Position != nil {
			pos = *r.Position
		}
		return renumber(tx, byID, place(order, id, pos), id)
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"script_id": id}, nil
}

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	if _, err := requireAdmin(ctx); err != nil {
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
	if len(scripts) == 0 {
		return nil, nil
	}
	for i := range scripts {
		scripts[i].Script = "" // a list carries no bodies
	}
	return map[string]any{"scripts": scripts}, nil
}

func (s *Service) get(ctx context.Context, req *api.Request) (any, error) {
	if _, err := requireAdmin(ctx); err != nil {
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
	if err != nil {
		return nil, err
	}
	return sc, nil
}

// update changes the fields the request gives; the others keep their
// values. The SDKs always send name and script, so an empty one counts as
// not given.
func (s *Service) update(ctx context.Context, req *api.Request) (any, error) {
	p, err := requireAdmin(ctx)
	if err != nil {
		return nil, err
	}
	var r scriptRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := r.check(false); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("script_id")
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		byID, order, err := load(tx)
		if err != nil {
			return err
		}
		sc, ok := byID[id]
		if !ok {
			return notFound(id)
		}
		if r.Name != "" {
			sc.Name = r.Name
		}
		if r.Script != "" {
			sc.Script = r.Script
		}
		if r.Enabled != nil {
			sc.Enabled = *r.Enabled
		}
		sc.UpdatedAt, sc.UpdatedBy = tx.Now().UnixMilli(), p.Name
		byID[id] = sc
		pos := sc.Position
		if r.Position != nil {
			pos = *r.Position
		}
		return renumber(tx, byID, place(order, id, pos), id)
	})
	return nil, err
}

func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("script_id")
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		byID, order, err := load(tx)
		if err != nil {
			return err
		}
		if _, ok := byID[id]; !ok {
			return notFound(id)
		}
		if err := tx.Delete(kindScript, id); err != nil {
			return err
		}
		return renumber(tx, byID, without(order, id), "")
	})
	return nil, err
}
