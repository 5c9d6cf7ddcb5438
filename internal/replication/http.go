package replication

import (
	"context"
	"crypto/ecdh"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// Peer-only endpoints. They take no bearer token: the caller is the peer
// region, authenticated by its client certificate (Peer.Authenticate).
const (
	ChangesPath = "/api/2.0/tandem/replication/changes"
	KeysPath    = "/api/2.0/tandem/replication/keys"
)

// Header names a follower sends so that the region it reads from learns
// who follows it and which epoch the follower knows of.
const (
	HeaderRegion = "X-Tandem-Region"
	HeaderEpoch  = "X-Tandem-Epoch"
)

// LeaderInfo describes the region serving its change log at the time of an
// answer.
type LeaderInfo struct {
	Region string `json:"region"`
	Epoch  int64  `json:"epoch"`
	Role   string `json:"role"`
}

// Batch is one answer of the changes endpoint.
type Batch struct {
	LeaderInfo
	// LastSeq is the leader's newest sequence number and LastTime its
	// commit time (epoch ms), whether or not Changes reach it.
	LastSeq  int64          `json:"last_seq"`
	LastTime int64          `json:"last_time"`
	Changes  []store.Change `json:"changes"`
}

// Limits of the changes endpoint.
const (
	MaxBatch = 1000
	MaxWait  = 30 * time.Second
)

// Service serves this region's change log and shared keys to its peer.
type Service struct {
	Store store.Store // the raw store, not a write gate
	Peer  *Peer
	Keys  *keys.Keyring
	// SharedKeys names the platform keys whose material both regions hold.
	SharedKeys []string
	// Objects keeps the peer's geo-replicated storage (nil: none).
	Objects storage.Backend
	// ObjectsKey, if set, is the id of the account key Objects holds
	// objects under; writes sealed under another are refused.
	ObjectsKey func() string
	// Self describes this region at the time of a call.
	Self func() LeaderInfo
	// Follower, if set, learns of each call: the peer region reading this
	// log, the epoch it knows of (a region that is behind the times learns
	// it has been superseded that way too) and, for reads of the log, the
	// last change it has applied (-1 for other calls).
	Follower func(region string, epoch, applied int64)
	Log      *slog.Logger
}

// Routes mounts the peer-only endpoints. They are public to the API layer
// (no token) and check the peer's certificate themselves; reading the log is
// not audited (the follower polls continuously and holds no user's
// authority), the key exchange is.
func (s *Service) Routes() []api.Route {
	return append([]api.Route{
		{Pattern: "GET " + ChangesPath, Public: true, NoAudit: true, DR: true, Handler: s.changes},
		{Pattern: "POST " + KeysPath, Public: true, DR: true, NoResult: true, Category: "tandemReplication", Action: "shareKeys", Handler: s.keys},
	}, s.objectRoutes()...)
}

func (s *Service) authenticate(r *api.Request, applied int64) error {
	if s.Peer == nil {
		return api.Errorf(api.FeatureDisabled, "This region has no peer region: start it with the peer's URL and CA file (--peer/--primary and --peer-ca).")
	}
	if err := s.Peer.Authenticate(r.HTTP); err != nil {
		return err
	}
	if s.Follower != nil {
		if e, err := strconv.ParseInt(r.HTTP.Header.Get(HeaderEpoch), 10, 64); err == nil {
			s.Follower(r.HTTP.Header.Get(HeaderRegion), e, applied)
		}
	}
	return nil
}

func (s *Service) changes(ctx context.Context, req *api.Request) (any, error) {
	q := req.HTTP.URL.Query()
	after, err := strconv.ParseInt(q.Get("after"), 10, 64)
	if err != nil || after < 0 {
		after = -1
	}
	if err := s.authenticate(req, after); err != nil {
		return nil, err
	}
	if after < 0 {
		return nil, api.InvalidParam("after must be a sequence number (0 or more).")
	}
	limit := MaxBatch
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxBatch {
			return nil, api.InvalidParam("limit must be between 1 and %d.", MaxBatch)
		}
	}
	var wait time.Duration
	if v := q.Get("wait_ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return nil, api.InvalidParam("wait_ms must be a number of milliseconds.")
		}
		wait = min(time.Duration(ms)*time.Millisecond, MaxWait)
	}
	// Subscribe before reading, so a commit between the read and the wait
	// is not missed.
	notify, stop := s.Store.Notify()
	defer stop()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var cs []store.Change
	for {
		if cs, err = s.Store.Changes(ctx, after, limit); err != nil {
			return nil, err
		}
		if len(cs) > 0 || wait == 0 {
			break
		}
		select {
		case <-notify:
			continue
		case <-timer.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		break
	}
	b := Batch{LeaderInfo: s.Self(), Changes: cs}
	if b.LastSeq, err = s.Store.LastSeq(ctx); err != nil {
		return nil, err
	}
	if n := len(cs); n > 0 && cs[n-1].Seq == b.LastSeq {
		b.LastTime = cs[n-1].Time
	} else if b.LastSeq > 0 {
		last, err := s.Store.Changes(ctx, b.LastSeq-1, 1)
		if err != nil {
			return nil, err
		}
		if len(last) == 1 {
			b.LastTime = last[0].Time
		}
	}
	if b.Changes == nil {
		b.Changes = []store.Change{}
	}
	return b, nil
}

func (s *Service) keys(ctx context.Context, req *api.Request) (any, error) {
	if err := s.authenticate(req, -1); err != nil {
		return nil, err
	}
	var kr keyRequest
	if err := req.Decode(&kr); err != nil {
		return nil, err
	}
	if _, err := ecdh.X25519().NewPublicKey(kr.PublicKey); err != nil {
		return nil, api.InvalidParam("public_key must be an X25519 public key (32 bytes, base64).")
	}
	versions := map[string][][]byte{}
	for _, name := range kr.Names {
		if !slices.Contains(s.SharedKeys, name) {
			return nil, api.Errorf(api.PermissionDenied, "Key %q is not shared with the peer region.", name)
		}
		v, err := s.Keys.Export(name)
		if err != nil {
			return nil, fmt.Errorf("export key %s: %w", name, err)
		}
		versions[name] = v
	}
	resp, err := sealKeys(kr.PublicKey, versions)
	for _, vs := range versions {
		for _, v := range vs {
			clear(v)
		}
	}
	if err != nil {
		return nil, err
	}
	if s.Log != nil {
		s.Log.Info("shared keys with the peer region", "keys", kr.Names)
	}
	return resp, nil
}

// errorBody is the Databricks error body a peer answers with.
type errorBody struct {
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
}

// PeerError is an error answer of the peer region.
type PeerError struct {
	Status  int
	Code    string
	Message string
}

func (e *PeerError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("peer answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("peer answered %d %s: %s", e.Status, e.Code, e.Message)
}
