package identity_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/iam"
	"github.com/databricks/databricks-sdk-go/service/settings"

	"github.com/tandemdata/tandem/internal/server/servertest"
)

var ctx = context.Background()

func TestSCIMUsersThroughTheGoSDK(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)

	me, err := w.CurrentUser.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if me.UserName != "admin@tandem.local" {
		t.Errorf("Me = %q", me.UserName)
	}
	if id, err := w.CurrentWorkspaceID(ctx); err != nil || id == 0 {
		t.Errorf("CurrentWorkspaceID = %d, %v", id, err)
	}
	for _, name := range []string{"ann@example.com", "bob@example.com", "carol@corp.io"} {
		if _, err := w.Users.Create(ctx, iam.User{UserName: name, DisplayName: name[:3]}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	_, err = w.Users.Create(ctx, iam.User{UserName: "ANN@example.com"})
	if !errors.Is(err, apierr.ErrResourceAlreadyExists) && !errors.Is(err, apierr.ErrResourceConflict) {
		t.Errorf("duplicate user: %v", err)
	}
	all, err := w.Users.ListAll(ctx, iam.ListUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Errorf("ListAll returned %d users, want 4", len(all))
	}
	// Small pages through startIndex, as the CLI's SDK pages.
	it := w.Users.List(ctx, iam.ListUsersRequest{Count: 1})
	n := 0
	for it.HasNext(ctx) {
		if _, err := it.Next(ctx); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 4 {
		t.Errorf("paging one user at a time saw %d users, want 4", n)
	}
	found, err := w.Users.ListAll(ctx, iam.ListUsersRequest{Filter: `userName sw "ann" or userName co "corp"`})
	if err != nil || len(found) != 2 {
		t.Errorf("filtered list = %d, %v", len(found), err)
	}
	ann, err := w.Users.GetByUserName(ctx, "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	err = w.Users.Patch(ctx, iam.PartialUpdate{Id: ann.Id, Schemas: []iam.PatchSchema{iam.PatchSchemaUrnIetfParamsScimApiMessages20PatchOp},
		Operations: []iam.Patch{{Op: iam.PatchOpReplace, Path: "displayName", Value: "Ann L."},
			{Op: iam.PatchOpAdd, Path: "entitlements", Value: []map[string]string{{"value": "allow-cluster-create"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.Users.GetById(ctx, ann.Id)
	if err != nil || got.DisplayName != "Ann L." || len(got.Entitlements) != 1 {
		t.Errorf("after patch: %+v, %v", got, err)
	}
	if err := w.Users.DeleteById(ctx, ann.Id); err != nil {
		t.Fatal(err)
	}
	_, err = w.Users.GetById(ctx, ann.Id)
	if !errors.Is(err, apierr.ErrNotFound) {
		t.Errorf("get deleted user: %v", err)
	}
}

func TestGroupsAndServicePrincipals(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	u, err := w.Users.Create(ctx, iam.User{UserName: "dev@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := w.ServicePrincipals.Create(ctx, iam.ServicePrincipal{DisplayName: "etl"})
	if err != nil || sp.ApplicationId == "" {
		t.Fatalf("create SP: %+v, %v", sp, err)
	}
	g, err := w.Groups.Create(ctx, iam.Group{DisplayName: "data-eng", Members: []iam.ComplexValue{{Value: u.Id}}})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Groups.Patch(ctx, iam.PartialUpdate{Id: g.Id, Schemas: []iam.PatchSchema{iam.PatchSchemaUrnIetfParamsScimApiMessages20PatchOp},
		Operations: []iam.Patch{{Op: iam.PatchOpAdd, Path: "members", Value: []map[string]string{{"value": sp.Id}}}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.Groups.GetById(ctx, g.Id)
	if err != nil || len(got.Members) != 2 {
		t.Fatalf("group members = %+v, %v", got.Members, err)
	}
	err = w.Groups.Patch(ctx, iam.PartialUpdate{Id: g.Id, Schemas: []iam.PatchSchema{iam.PatchSchemaUrnIetfParamsScimApiMessages20PatchOp},
		Operations: []iam.Patch{{Op: iam.PatchOpRemove, Path: `members[value eq "` + u.Id + `"]`}}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = w.Groups.GetById(ctx, g.Id)
	if len(got.Members) != 1 || got.Members[0].Value != sp.Id {
		t.Errorf("after remove: %+v", got.Members)
	}
	// The user sees the group it is in through Me.
	user := srv.NewUser("member@example.com", false)
	w.Groups.Patch(ctx, iam.PartialUpdate{Id: g.Id, Schemas: []iam.PatchSchema{iam.PatchSchemaUrnIetfParamsScimApiMessages20PatchOp},
		Operations: []iam.Patch{{Op: iam.PatchOpAdd, Path: "members", Value: []map[string]string{{"value": user.ID}}}}})
	me, err := srv.SDK(user.Token).CurrentUser.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, gr := range me.Groups {
		names[gr.Display] = true
	}
	if !names["data-eng"] || !names["users"] {
		t.Errorf("Me groups = %+v", me.Groups)
	}
	// Built-in groups stay.
	admins, _ := w.Groups.GetByDisplayName(ctx, "admins")
	if err := w.Groups.DeleteById(ctx, admins.Id); !errors.Is(err, apierr.ErrBadRequest) {
		t.Errorf("delete admins group: %v", err)
	}
	if err := w.ServicePrincipals.DeleteById(ctx, sp.Id); err != nil {
		t.Fatal(err)
	}
}

func TestNonAdminsCannotChangePrincipals(t *testing.T) {
	srv := servertest.Start(t)
	user := srv.NewUser("plain@example.com", false)
	w := srv.SDK(user.Token)
	if _, err := w.Users.Create(ctx, iam.User{UserName: "x@example.com"}); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("non-admin create user: %v", err)
	}
	if _, err := w.Groups.Create(ctx, iam.Group{DisplayName: "g"}); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("non-admin create group: %v", err)
	}
	// Reading the directory is allowed.
	if _, err := w.Users.ListAll(ctx, iam.ListUsersRequest{}); err != nil {
		t.Errorf("non-admin list users: %v", err)
	}
}

func TestTokensLifecycle(t *testing.T) {
	srv := servertest.Start(t)
	user := srv.NewUser("tok@example.com", false)
	w := srv.SDK(user.Token)
	created, err := w.Tokens.Create(ctx, settings.CreateTokenRequest{Comment: "ci", LifetimeSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if created.TokenValue == "" || created.TokenInfo.ExpiryTime <= created.TokenInfo.CreationTime {
		t.Fatalf("created = %+v", created.TokenInfo)
	}
	// The new token works.
	if _, err := srv.SDK(created.TokenValue).CurrentUser.Me(ctx); err != nil {
		t.Fatalf("new token: %v", err)
	}
	list, err := w.Tokens.ListAll(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list = %d, %v", len(list), err)
	}
	if err := w.Tokens.DeleteByTokenId(ctx, created.TokenInfo.TokenId); err != nil {
		t.Fatal(err)
	}
	// Revoked at once.
	_, err = srv.SDK(created.TokenValue).CurrentUser.Me(ctx)
	if !errors.Is(err, apierr.ErrUnauthenticated) {
		t.Errorf("revoked token: %v", err)
	}
	if err := w.Tokens.DeleteByTokenId(ctx, created.TokenInfo.TokenId); !errors.Is(err, apierr.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	// Admin token management sees everyone's tokens and can revoke them.
	admin := srv.SDK(srv.AdminToken)
	infos, err := admin.TokenManagement.ListAll(ctx, settings.ListTokenManagementRequest{CreatedByUsername: ""})
	if err != nil || len(infos) < 2 {
		t.Fatalf("token management list = %d, %v", len(infos), err)
	}
	if _, err := w.TokenManagement.ListAll(ctx, settings.ListTokenManagementRequest{}); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("non-admin token management: %v", err)
	}
	for _, ti := range infos {
		if ti.OwnerId != 0 && ti.CreatedByUsername == "System-User" {
			if err := admin.TokenManagement.DeleteByTokenId(ctx, ti.TokenId); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := w.CurrentUser.Me(ctx); !errors.Is(err, apierr.ErrUnauthenticated) {
		t.Errorf("token revoked by admin still works: %v", err)
	}
}

func TestServicePrincipalTokensOnBehalfOf(t *testing.T) {
	srv := servertest.Start(t)
	admin := srv.SDK(srv.AdminToken)
	sp, err := admin.ServicePrincipals.Create(ctx, iam.ServicePrincipal{DisplayName: "bot"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := admin.TokenManagement.CreateOboToken(ctx, settings.CreateOboTokenRequest{ApplicationId: sp.ApplicationId, Comment: "bot"})
	if err != nil {
		t.Fatal(err)
	}
	r := srv.Do(tok.TokenValue, http.MethodGet, "/api/2.0/preview/scim/v2/Me", nil)
	if r.Status != 200 || r.JSON(t)["applicationId"] != sp.ApplicationId {
		t.Fatalf("SP Me: %d %s", r.Status, r.Body)
	}
}

func TestExpiredAndUnknownTokensAreRefused(t *testing.T) {
	srv := servertest.Start(t)
	for _, tok := range []string{"dapi-not-a-token", ""} {
		r := srv.Do(tok, http.MethodGet, "/api/2.0/preview/scim/v2/Me", nil)
		if r.Status != http.StatusUnauthorized || r.JSON(t)["error_code"] != "UNAUTHENTICATED" {
			t.Errorf("token %q: %d %s", tok, r.Status, r.Body)
		}
	}
}
