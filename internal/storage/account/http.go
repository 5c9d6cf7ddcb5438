package account

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/storage"
)

// Routes returns the storage admin API: account settings and status, copy
// health, geo-replication (Last Sync Time), key rotation, failover, a
// scrub on demand, and listing and reading objects (in clear) from the
// account and from the secondary endpoint of RA- accounts. Every route is admin-only and audited (category
// "storage"); vault tokens never reach a response or an audit record.
func (a *Account) Routes() []api.Route {
	r := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "storage", Action: action, Handler: a.admin(h)}
	}
	return []api.Route{
		r("GET /api/2.0/tandem/storage/account", "getAccount", a.getAccount),
		r("PATCH /api/2.0/tandem/storage/account", "updateAccount", a.updateAccount),
		r("GET /api/2.0/tandem/storage/health", "getHealth", a.getHealth),
		r("GET /api/2.0/tandem/storage/geo-replication", "getGeoReplication", a.getGeo),
		r("POST /api/2.0/tandem/storage/rotate-key", "rotateKey", a.rotateKey),
		r("POST /api/2.0/tandem/storage/failover", "failover", a.failover),
		r("POST /api/2.0/tandem/storage/scrub", "scrub", a.scrub),
		r("GET /api/2.0/tandem/storage/objects/list", "listObjects", a.listObjects(a.primaryEndpoint)),
		r("GET /api/2.0/tandem/storage/objects/read", "readObject", a.readObject(a.primaryEndpoint)),
		r("GET /api/2.0/tandem/storage/secondary/list", "listSecondary", a.listObjects(a.Secondary)),
		r("GET /api/2.0/tandem/storage/secondary/read", "readSecondary", a.readObject(a.Secondary)),
	}
}

// maxSecondaryRead bounds one read from the secondary endpoint, as DBFS
// bounds its reads.
const maxSecondaryRead = 1 << 20

func (a *Account) primaryEndpoint() storage.Backend { return a }

// listObjects lists objects of an endpoint, as an operator browses a
// storage account (the secondary one: what the secondary region holds).
func (a *Account) listObjects(endpoint func() storage.Backend) api.Handler {
	return func(ctx context.Context, req *api.Request) (any, error) { return a.list(ctx, req, endpoint()) }
}

// readObject reads up to 1 MiB of an object from an endpoint, in clear.
func (a *Account) readObject(endpoint func() storage.Backend) api.Handler {
	return func(ctx context.Context, req *api.Request) (any, error) { return a.read(ctx, req, endpoint()) }
}

func (a *Account) list(ctx context.Context, req *api.Request, b storage.Backend) (any, error) {
	var q struct {
		Prefix string `json:"prefix"`
		Limit  int    `json:"limit"`
	}
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 1000
	}
	type item struct {
		Name             string `json:"name"`
		Size             int64  `json:"size"`
		ModificationTime int64  `json:"modification_time"`
	}
	out := []item{}
	errFull := errors.New("full")
	err := b.List(ctx, q.Prefix, func(oi storage.ObjectInfo) error {
		if checkName(oi.Name) != nil {
			return nil
		}
		if len(out) == q.Limit {
			return errFull
		}
		out = append(out, item{Name: oi.Name, Size: oi.Size, ModificationTime: oi.ModTime.UnixMilli()})
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return nil, secondaryErr(err)
	}
	return map[string]any{"objects": out, "truncated": errors.Is(err, errFull)}, nil
}

func (a *Account) read(ctx context.Context, req *api.Request, b storage.Backend) (any, error) {
	var q struct {
		Name   string `json:"name"`
		Offset int64  `json:"offset"`
		Length int64  `json:"length"`
	}
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	if q.Name == "" {
		return nil, api.MissingField("name")
	}
	if q.Offset < 0 || q.Length < 0 {
		return nil, api.InvalidParam("offset and length must not be negative.")
	}
	if q.Length == 0 || q.Length > maxSecondaryRead {
		q.Length = maxSecondaryRead
	}
	if err := checkName(q.Name); err != nil {
		return nil, api.InvalidParam("%v", err)
	}
	r, err := b.Get(ctx, q.Name, q.Offset, q.Length)
	if err != nil {
		return nil, secondaryErr(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return map[string]any{"bytes_read": len(data), "data": base64.StdEncoding.EncodeToString(data)}, nil
}

func secondaryErr(err error) error {
	if errors.Is(err, storage.ErrReadOnly) {
		return api.Errorf(api.InvalidState, "The account has no readable secondary endpoint: use RA-GRS or RA-GZRS.")
	}
	return err
}

func (a *Account) admin(h api.Handler) api.Handler {
	return func(ctx context.Context, req *api.Request) (any, error) {
		p, _ := principal.From(ctx)
		if !p.Admin {
			return nil, api.Denied("Only workspace admins can manage the storage account.")
		}
		return h(ctx, req)
	}
}

func (a *Account) getAccount(ctx context.Context, req *api.Request) (any, error) {
	return a.Status(), nil
}

// updateRequest is a partial update: absent fields keep their value; an
// encryption object replaces the whole encryption setting.
type updateRequest struct {
	Redundancy *string     `json:"redundancy"`
	Encryption *Encryption `json:"encryption"`
}

func (a *Account) updateAccount(ctx context.Context, req *api.Request) (any, error) {
	var u updateRequest
	if err := req.Decode(&u); err != nil {
		return nil, err
	}
	if u.Redundancy == nil && u.Encryption == nil {
		return nil, api.InvalidParam("Nothing to update: send redundancy and/or encryption.")
	}
	next := a.Settings()
	// Keep the stored sealed tokens when the same vault is named again.
	a.mu.RLock()
	cur := a.set
	a.mu.RUnlock()
	next.Encryption = cur.Encryption
	if u.Redundancy != nil {
		r, err := ParseRedundancy(*u.Redundancy)
		if err != nil {
			return nil, api.InvalidParam("%v", err)
		}
		next.Redundancy = r
	}
	if u.Encryption != nil {
		e := *u.Encryption
		if e.KeySource == "" {
			e.KeySource = KeySourcePlatform
		}
		next.Encryption = e
		keepTokens(cur.Encryption, &next.Encryption)
	}
	p, _ := principal.From(ctx)
	if _, err := a.Update(ctx, next, p.Name); err != nil {
		var inv *InvalidError
		if errors.As(err, &inv) {
			return nil, api.InvalidParam("%v", inv.Err)
		}
		return nil, err
	}
	return a.Status(), nil
}

func (a *Account) getHealth(ctx context.Context, req *api.Request) (any, error) {
	s := a.Status()
	return map[string]any{"copies": s.Copies, "secondary_copies": s.SecondaryCopies, "redundancy": s.Settings.Redundancy}, nil
}

func (a *Account) getGeo(ctx context.Context, req *api.Request) (any, error) {
	s := a.Status()
	if s.GeoReplication == nil {
		return nil, api.Errorf(api.InvalidState, "The account is %s: it is not geo-replicated (use GRS, GZRS, RA-GRS or RA-GZRS).", s.Settings.Redundancy)
	}
	return s.GeoReplication, nil
}

func (a *Account) rotateKey(ctx context.Context, req *api.Request) (any, error) {
	return a.RotateKey(ctx)
}

func (a *Account) failover(ctx context.Context, req *api.Request) (any, error) {
	var body struct {
		FailoverType string `json:"failover_type"`
	}
	if err := req.Decode(&body); err != nil {
		return nil, err
	}
	kind := Unplanned
	switch strings.ToLower(body.FailoverType) {
	case "", "unplanned":
	case "planned":
		kind = Planned
	default:
		return nil, api.InvalidParam("failover_type %q is not Planned or Unplanned.", body.FailoverType)
	}
	p, _ := principal.From(ctx)
	if _, err := a.Failover(ctx, kind, p.Name); err != nil {
		var inv *InvalidError
		if errors.As(err, &inv) {
			return nil, api.Errorf(api.InvalidState, "%v", inv.Err)
		}
		return nil, err
	}
	return a.Status(), nil
}

func (a *Account) scrub(ctx context.Context, req *api.Request) (any, error) {
	rep, err := a.Scrub(ctx)
	if err != nil && len(rep.Lost) == 0 {
		return nil, err
	}
	return map[string]any{"objects": rep.Objects, "repaired": rep.Repaired, "removed": rep.Removed, "lost": rep.Lost,
		"restored_copies": rep.Restored, "took_ms": rep.Took.Milliseconds()}, nil
}
