package identity

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// maxTokensPerPrincipal is the QUOTA_EXCEEDED bound of token/create.
const maxTokensPerPrincipal = 600

func (s *Service) tokenRoutes() []api.Route {
	r := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "accounts", Action: action, Handler: h}
	}
	return []api.Route{
		r("POST /api/2.0/token/create", "generateDbToken", s.createToken),
		r("GET /api/2.0/token/list", "listDbTokens", s.listTokens),
		r("POST /api/2.0/token/delete", "revokeDbToken", s.deleteToken),
		r("GET /api/2.0/token-management/tokens", "listTokens", s.adminListTokens),
		r("GET /api/2.0/token-management/tokens/{token_id}", "getToken", s.adminGetToken),
		r("DELETE /api/2.0/token-management/tokens/{token_id}", "revokeDbToken", s.adminDeleteToken),
		r("POST /api/2.0/token-management/on-behalf-of/tokens", "generateDbToken", s.oboToken),
	}
}

// publicTokenInfo is what a token's owner sees.
type publicTokenInfo struct {
	TokenID      string `json:"token_id"`
	CreationTime int64  `json:"creation_time"`
	ExpiryTime   int64  `json:"expiry_time"`
	Comment      string `json:"comment,omitempty"`
}

// tokenInfo is what token management shows admins.
type tokenInfo struct {
	TokenID           string `json:"token_id"`
	Comment           string `json:"comment,omitempty"`
	CreationTime      int64  `json:"creation_time"`
	ExpiryTime        int64  `json:"expiry_time"`
	CreatedByID       int64  `json:"created_by_id"`
	CreatedByUsername string `json:"created_by_username"`
	OwnerID           int64  `json:"owner_id"`
}

func public(t Token) publicTokenInfo {
	return publicTokenInfo{TokenID: t.ID, CreationTime: t.CreationTime, ExpiryTime: t.ExpiryTime, Comment: t.Comment}
}

func info(t Token) tokenInfo {
	cb, _ := strconv.ParseInt(t.CreatedByID, 10, 64)
	ow, _ := strconv.ParseInt(t.OwnerID, 10, 64)
	return tokenInfo{TokenID: t.ID, Comment: t.Comment, CreationTime: t.CreationTime, ExpiryTime: t.ExpiryTime,
		CreatedByID: cb, CreatedByUsername: t.CreatedBy, OwnerID: ow}
}

type createTokenRequest struct {
	Comment         string `json:"comment"`
	LifetimeSeconds int64  `json:"lifetime_seconds"`
	ApplicationID   string `json:"application_id"`
}

func validateTokenRequest(r createTokenRequest) error {
	if r.LifetimeSeconds < 0 {
		return api.InvalidParam("lifetime_seconds must be positive, or absent for a token that does not expire.")
	}
	if len(r.Comment) > 1024 {
		return api.InvalidParam("comment is longer than 1024 characters.")
	}
	return nil
}

func (s *Service) createToken(ctx context.Context, req *api.Request) (any, error) {
	p := principal.MustFrom(ctx)
	if s.TokenPolicy != nil {
		if err := s.TokenPolicy(ctx, p); err != nil {
			return nil, err
		}
	}
	var r createTokenRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if err := validateTokenRequest(r); err != nil {
		return nil, err
	}
	return s.issue(ctx, p.ID, p.Name, p, r)
}

type createTokenResponse struct {
	TokenValue string `json:"token_value"`
	TokenInfo  any    `json:"token_info"`
}

func (s *Service) issue(ctx context.Context, ownerID, ownerName string, creator principal.Principal, r createTokenRequest) (any, error) {
	value := NewTokenValue()
	var t Token
	err := s.update(ctx, func(tx store.Tx) error {
		n := 0
		err := store.ScanPrefix(tx, kindToken, "", func(_ string, t Token) error {
			if t.OwnerID == ownerID {
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n >= maxTokensPerPrincipal {
			return api.Errorf(api.QuotaExceeded, "%s already has %d tokens, the most one principal may hold.", ownerName, n)
		}
		t, err = s.storeToken(tx, value, ownerID, ownerName, creator.ID, creator.Name, r.Comment, r.LifetimeSeconds)
		return err
	})
	if err != nil {
		return nil, err
	}
	if ownerID != creator.ID {
		return createTokenResponse{TokenValue: value, TokenInfo: info(t)}, nil
	}
	return createTokenResponse{TokenValue: value, TokenInfo: public(t)}, nil
}

func (s *Service) tokens(ctx context.Context, keep func(Token) bool) ([]Token, error) {
	var out []Token
	err := s.store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindToken, "", func(_ string, t Token) error {
			if keep(t) {
				out = append(out, t)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreationTime < out[j].CreationTime })
	return out, err
}

func (s *Service) listTokens(ctx context.Context, req *api.Request) (any, error) {
	p := principal.MustFrom(ctx)
	ts, err := s.tokens(ctx, func(t Token) bool { return t.OwnerID == p.ID })
	if err != nil {
		return nil, err
	}
	infos := []publicTokenInfo{}
	for _, t := range ts {
		infos = append(infos, public(t))
	}
	return map[string]any{"token_infos": infos}, nil
}

func (s *Service) deleteToken(ctx context.Context, req *api.Request) (any, error) {
	p := principal.MustFrom(ctx)
	var r struct {
		TokenID string `json:"token_id"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.TokenID == "" {
		return nil, api.MissingField("token_id")
	}
	return nil, s.revoke(ctx, r.TokenID, func(t Token) bool { return t.OwnerID == p.ID })
}

// revoke deletes a token if mayDelete allows it; a token the caller may not
// see is reported as missing, so ids of others' tokens are not confirmed.
func (s *Service) revoke(ctx context.Context, id string, mayDelete func(Token) bool) error {
	return s.update(ctx, func(tx store.Tx) error {
		hash, err := store.Get[string](tx, kindTokenID, id)
		if err == nil {
			var t Token
			t, err = store.Get[Token](tx, kindToken, hash)
			if err == nil {
				if !mayDelete(t) {
					return api.NotFound("Token %s does not exist.", id)
				}
				return deleteToken(tx, t)
			}
		}
		if errors.Is(err, store.ErrNotFound) {
			return api.NotFound("Token %s does not exist.", id)
		}
		return err
	})
}

func (s *Service) adminListTokens(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var q struct {
		CreatedByID       string `json:"created_by_id"`
		CreatedByUsername string `json:"created_by_username"`
	}
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	ts, err := s.tokens(ctx, func(t Token) bool {
		return (q.CreatedByID == "" || t.CreatedByID == q.CreatedByID) &&
			(q.CreatedByUsername == "" || strings.EqualFold(t.CreatedBy, q.CreatedByUsername))
	})
	if err != nil {
		return nil, err
	}
	infos := []tokenInfo{}
	for _, t := range ts {
		infos = append(infos, info(t))
	}
	return map[string]any{"token_infos": infos}, nil
}

func (s *Service) adminGetToken(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	id := req.HTTP.PathValue("token_id")
	var t Token
	err := s.store.View(ctx, func(tx store.Tx) error {
		hash, err := store.Get[string](tx, kindTokenID, id)
		if err != nil {
			return err
		}
		t, err = store.Get[Token](tx, kindToken, hash)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.NotFound("Token %s does not exist.", id)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"token_info": info(t)}, nil
}

func (s *Service) adminDeleteToken(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	return nil, s.revoke(ctx, req.HTTP.PathValue("token_id"), func(Token) bool { return true })
}

func (s *Service) oboToken(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var r createTokenRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.ApplicationID == "" {
		return nil, api.MissingField("application_id")
	}
	if err := validateTokenRequest(r); err != nil {
		return nil, err
	}
	var sp ServicePrincipal
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		sp, err = s.spByApp(tx, r.ApplicationID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.NotFound("Service principal with application id %s does not exist.", r.ApplicationID)
	}
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, sp.ID, sp.ApplicationID, principal.MustFrom(ctx), r)
}

// IssueToken creates a personal access token for the principal with the
// given id, outside the API (tests and `tandem up` use it). It returns the
// token's value.
func (s *Service) IssueToken(ctx context.Context, ownerID, comment string, lifetimeSeconds int64) (string, error) {
	owner, err := s.Resolve(ctx, ownerID)
	if err != nil {
		return "", err
	}
	value := NewTokenValue()
	err = s.update(ctx, func(tx store.Tx) error {
		_, err := s.storeToken(tx, value, owner.ID, owner.Name, principal.SystemPrincipal.ID, principal.SystemName, comment, lifetimeSeconds)
		return err
	})
	return value, err
}
