package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Service manages principals and tokens.
type Service struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time

	// TokenPolicy, if set, decides whether a principal may create and use
	// personal access tokens (the authorization/tokens permission).
	TokenPolicy func(ctx context.Context, p principal.Principal) error
	// UserCreated runs in the transaction that creates a user.
	UserCreated UserHook

	gen   atomic.Int64 // bumped by every change to identity documents
	mu    sync.Mutex
	cache map[string]cachedToken
}

type cachedToken struct {
	p      principal.Principal
	expiry int64 // epoch ms, -1 never
	gen    int64
}

// New returns the identity service over st.
func New(st store.Store, log *slog.Logger) *Service {
	return &Service{store: st, log: log, now: time.Now, cache: map[string]cachedToken{}}
}

// Invalidate drops every cached token resolution. The service calls it after
// its own changes; Watch calls it for changes made elsewhere (replication).
func (s *Service) Invalidate() {
	s.gen.Add(1)
	s.mu.Lock()
	clear(s.cache)
	s.mu.Unlock()
}

// Watch follows the change log and invalidates cached resolutions whenever
// an identity document changes, until ctx ends.
func (s *Service) Watch(ctx context.Context) {
	ch, stop := s.store.Notify()
	defer stop()
	last, err := s.store.LastSeq(ctx)
	if err != nil {
		s.log.Error("identity watch: read last sequence number", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
		// A region that rejoins its peer after a failover rewinds its log
		// (store.Rewind): the changes it drops may have touched identities,
		// and the numbers after the rewind point are used again.
		if cur, err := s.store.LastSeq(ctx); err == nil && cur < last {
			last = cur
			s.Invalidate()
		}
		for {
			changes, err := s.store.Changes(ctx, last, 500)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("identity watch: read changes", "seq", last, "err", err)
				}
				break
			}
			for _, c := range changes {
				last = c.Seq
				for _, op := range c.Ops {
					if strings.HasPrefix(string(op.Kind), KindPrefix) {
						s.Invalidate()
						break
					}
				}
			}
			if len(changes) < 500 {
				break
			}
		}
	}
}

func (s *Service) update(ctx context.Context, fn func(store.Tx) error) error {
	_, err := s.store.Update(ctx, fn)
	if err == nil {
		s.Invalidate()
	}
	return err
}

// EnsureBuiltins creates the admins and users groups if they are missing.
func (s *Service) EnsureBuiltins(ctx context.Context) error {
	return s.update(ctx, func(tx store.Tx) error {
		for _, name := range []string{principal.AdminsGroup, principal.UsersGroup} {
			if ok, err := store.Exists(tx, kindGroupName, normName(name)); err != nil || ok {
				if err != nil {
					return err
				}
				continue
			}
			g := Group{DisplayName: name}
			if name == principal.UsersGroup {
				g.Entitlements = []ComplexValue{{Value: entitlementWSA}, {Value: entitlementSQL}}
			}
			if _, err := s.createGroup(tx, g); err != nil {
				return err
			}
		}
		return nil
	})
}

// Bootstrap makes token an admin personal access token of a bootstrap admin
// user, once: a later start with the same token set does nothing, even if
// the token was deleted since.
func (s *Service) Bootstrap(ctx context.Context, token, userName string) error {
	if token == "" {
		return nil
	}
	return s.update(ctx, func(tx store.Tx) error {
		if ok, err := store.Exists(tx, kindBootstrap, "done"); err != nil || ok {
			return err
		}
		u, err := s.userByName(tx, userName)
		if errors.Is(err, store.ErrNotFound) {
			u, err = s.createUser(tx, User{UserName: userName, DisplayName: "Tandem administrator"})
		}
		if err != nil {
			return err
		}
		if err := s.addMember(tx, principal.AdminsGroup, u.ID); err != nil {
			return err
		}
		if _, err := s.storeToken(tx, token, u.ID, u.UserName, u.ID, u.UserName, "bootstrap token", -1); err != nil {
			return err
		}
		return store.Put(tx, kindBootstrap, "done", map[string]int64{"time": tx.Now().UnixMilli()})
	})
}

// UserNames returns the user name of every user.
func (s *Service) UserNames(ctx context.Context) ([]string, error) {
	var out []string
	err := s.store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindUser, "", func(_ string, u User) error {
			out = append(out, u.UserName)
			return nil
		})
	})
	return out, err
}

// HashToken is how a token is stored and looked up.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Authenticate resolves a bearer token to its principal.
func (s *Service) Authenticate(ctx context.Context, token string) (principal.Principal, error) {
	hash := HashToken(token)
	gen := s.gen.Load()
	now := s.now().UnixMilli()
	s.mu.Lock()
	c, ok := s.cache[hash]
	s.mu.Unlock()
	if ok && c.gen == gen && (c.expiry < 0 || c.expiry > now) {
		return c.p, nil
	}
	var p principal.Principal
	var expiry int64
	err := s.store.View(ctx, func(tx store.Tx) error {
		t, err := store.Get[Token](tx, kindToken, hash)
		if err != nil {
			return err
		}
		if t.ExpiryTime >= 0 && t.ExpiryTime <= now {
			return errTokenExpired
		}
		p, err = s.resolve(tx, t.OwnerID)
		p.TokenID = t.ID
		expiry = t.ExpiryTime
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errTokenExpired), errors.Is(err, errInactive):
		return principal.Principal{}, api.Errorf(api.Unauthenticated, "Invalid access token.")
	case err != nil:
		return principal.Principal{}, err
	}
	s.mu.Lock()
	if len(s.cache) > 100000 {
		clear(s.cache)
	}
	s.cache[hash] = cachedToken{p: p, expiry: expiry, gen: gen}
	s.mu.Unlock()
	return p, nil
}

var (
	errTokenExpired = errors.New("token expired")
	errInactive     = errors.New("principal is not active")
)

// Resolve returns the principal with the given SCIM id.
func (s *Service) Resolve(ctx context.Context, id string) (principal.Principal, error) {
	var p principal.Principal
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		p, err = s.resolve(tx, id)
		return err
	})
	return p, err
}

// resolve builds the principal of a user or service principal id: its names,
// every group it is in (transitively) and its entitlements.
func (s *Service) resolve(tx store.Tx, id string) (principal.Principal, error) {
	var p principal.Principal
	var ents []ComplexValue
	if u, err := store.Get[User](tx, kindUser, id); err == nil {
		if !isActive(u.Active) {
			return p, errInactive
		}
		p = principal.Principal{ID: u.ID, Kind: principal.User, Name: u.UserName, DisplayName: u.DisplayName}
		ents = u.Entitlements
	} else if !errors.Is(err, store.ErrNotFound) {
		return p, err
	} else {
		sp, err := store.Get[ServicePrincipal](tx, kindSP, id)
		if err != nil {
			return p, err
		}
		if !isActive(sp.Active) {
			return p, errInactive
		}
		p = principal.Principal{ID: sp.ID, Kind: principal.ServicePrincipal, Name: sp.ApplicationID, DisplayName: sp.DisplayName}
		ents = sp.Entitlements
	}
	groups, err := store.List[Group](tx, kindGroup, "")
	if err != nil {
		return p, err
	}
	in := memberships(groups, id)
	entSet := map[string]bool{}
	for _, e := range ents {
		entSet[e.Value] = true
	}
	for _, g := range groups {
		if in[g.ID] {
			p.Groups = append(p.Groups, g.DisplayName)
			for _, e := range g.Entitlements {
				entSet[e.Value] = true
			}
			if g.DisplayName == principal.AdminsGroup {
				p.Admin = true
			}
		}
	}
	if !p.InGroup(principal.UsersGroup) {
		p.Groups = append(p.Groups, principal.UsersGroup)
	}
	sort.Strings(p.Groups)
	if p.Admin {
		for e := range validEntitlements {
			entSet[e] = true
		}
	}
	for e := range entSet {
		p.Entitlements = append(p.Entitlements, e)
	}
	sort.Strings(p.Entitlements)
	return p, nil
}

// memberships returns the ids of every group that member is in, directly or
// through nested groups. Every principal is implicitly in "users".
func memberships(groups []Group, member string) map[string]bool {
	parents := map[string][]string{} // member id -> group ids
	for _, g := range groups {
		for _, m := range g.Members {
			parents[m.Value] = append(parents[m.Value], g.ID)
		}
		if g.DisplayName == principal.UsersGroup {
			parents[member] = append(parents[member], g.ID)
		}
	}
	in := map[string]bool{}
	queue := []string{member}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, gid := range parents[cur] {
			if !in[gid] {
				in[gid] = true
				queue = append(queue, gid)
			}
		}
	}
	return in
}

// newID returns the next principal id: a decimal number, as Databricks' SCIM
// ids are (token management reports them as int64).
func newID(tx store.Tx) (string, error) {
	n, err := tx.NextID("identity.principal")
	if err != nil {
		return "", err
	}
	return fmt.Sprint(1_000_000_000 + n), nil
}

// NewTokenValue returns a fresh personal access token value.
func NewTokenValue() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "dapi" + hex.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Service) storeToken(tx store.Tx, value, ownerID, ownerName, creatorID, creatorName, comment string, lifetimeSeconds int64) (Token, error) {
	now := tx.Now().UnixMilli()
	t := Token{
		ID: randomHex(32), Hash: HashToken(value), OwnerID: ownerID, OwnerName: ownerName,
		Comment: comment, CreationTime: now, ExpiryTime: -1, CreatedByID: creatorID, CreatedBy: creatorName,
	}
	if lifetimeSeconds > 0 {
		t.ExpiryTime = now + lifetimeSeconds*1000
	}
	if err := store.Insert(tx, kindToken, t.Hash, t); err != nil {
		return t, err
	}
	return t, store.Put(tx, kindTokenID, t.ID, t.Hash)
}

// LookupPrincipal finds a user by user name, a service principal by
// application id, or a group by name, for permission grants. kind is "user",
// "service_principal" or "group".
func (s *Service) LookupPrincipal(ctx context.Context, kind, name string) (id, display string, err error) {
	err = s.store.View(ctx, func(tx store.Tx) error {
		switch kind {
		case "user":
			u, err := s.userByName(tx, name)
			id, display = u.ID, u.DisplayName
			return err
		case "service_principal":
			sp, err := s.spByApp(tx, name)
			id, display = sp.ID, sp.DisplayName
			return err
		case "group":
			g, err := s.groupByName(tx, name)
			id, display = g.ID, g.DisplayName
			return err
		}
		return store.ErrNotFound
	})
	return id, display, err
}

func (s *Service) userByName(tx store.Tx, name string) (User, error) {
	id, err := store.Get[string](tx, kindUserName, normName(name))
	if err != nil {
		return User{}, err
	}
	return store.Get[User](tx, kindUser, id)
}

func (s *Service) groupByName(tx store.Tx, name string) (Group, error) {
	id, err := store.Get[string](tx, kindGroupName, normName(name))
	if err != nil {
		return Group{}, err
	}
	return store.Get[Group](tx, kindGroup, id)
}

func (s *Service) spByApp(tx store.Tx, app string) (ServicePrincipal, error) {
	id, err := store.Get[string](tx, kindSPApp, normName(app))
	if err != nil {
		return ServicePrincipal{}, err
	}
	return store.Get[ServicePrincipal](tx, kindSP, id)
}

func (s *Service) addMember(tx store.Tx, group, memberID string) error {
	g, err := s.groupByName(tx, group)
	if err != nil {
		return err
	}
	if hasValue(g.Members, memberID) {
		return nil
	}
	g.Members = append(g.Members, ComplexValue{Value: memberID})
	return store.Put(tx, kindGroup, g.ID, g)
}
