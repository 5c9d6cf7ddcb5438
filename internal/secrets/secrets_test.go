package secrets_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/databricks/databricks-sdk-go/apierr"
	sdkws "github.com/databricks/databricks-sdk-go/service/workspace"

	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/secrets"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

var ctx = context.Background()

func TestAllowedDecidesByTheHighestMatchingACL(t *testing.T) {
	ann := principal.Principal{Name: "ann@x", Kind: principal.User, Groups: []string{"users", "eng"}}
	admin := principal.Principal{Name: "root@x", Admin: true}
	cases := []struct {
		name string
		p    principal.Principal
		acls []secrets.ACL
		need secrets.Permission
		want bool
	}{
		{"no ACL", ann, nil, secrets.Read, false},
		{"admin without ACL", admin, nil, secrets.Manage, true},
		{"direct read reads", ann, []secrets.ACL{{Principal: "ann@x", Permission: secrets.Read}}, secrets.Read, true},
		{"read does not write", ann, []secrets.ACL{{Principal: "ann@x", Permission: secrets.Read}}, secrets.Write, false},
		{"group write writes", ann, []secrets.ACL{{Principal: "eng", Permission: secrets.Write}}, secrets.Write, true},
		{"highest wins", ann, []secrets.ACL{{Principal: "ann@x", Permission: secrets.Read}, {Principal: "users", Permission: secrets.Manage}}, secrets.Manage, true},
		{"case-insensitive user", ann, []secrets.ACL{{Principal: "ANN@x", Permission: secrets.Read}}, secrets.Read, true},
		{"someone else's", ann, []secrets.ACL{{Principal: "bob@x", Permission: secrets.Manage}}, secrets.Read, false},
	}
	for _, c := range cases {
		if got := secrets.Allowed(c.p, c.acls, c.need); got != c.want {
			t.Errorf("%s: Allowed = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSecretsThroughTheSDKWithTheACLMatrix(t *testing.T) {
	srv := servertest.Start(t)
	admin := srv.SDK(srv.AdminToken)
	owner := srv.NewUser("owner@example.com", false)
	other := srv.NewUser("other@example.com", false)
	wo, wx := srv.SDK(owner.Token), srv.SDK(other.Token)

	if err := wo.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "team"}); err != nil {
		t.Fatal(err)
	}
	if err := wo.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "team"}); !errors.Is(err, apierr.ErrResourceAlreadyExists) {
		t.Errorf("duplicate scope: %v", err)
	}
	if err := wo.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "team", Key: "db-password", StringValue: "s3cr3t-marker-4711"}); err != nil {
		t.Fatal(err)
	}
	raw := []byte{0, 1, 2, 255}
	if err := wo.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "team", Key: "blob", BytesValue: base64.StdEncoding.EncodeToString(raw)}); err != nil {
		t.Fatal(err)
	}
	got, err := wo.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "db-password"})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := base64.StdEncoding.DecodeString(got.Value); string(v) != "s3cr3t-marker-4711" {
		t.Errorf("get = %q", v)
	}
	gb, _ := wo.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "blob"})
	if v, _ := base64.StdEncoding.DecodeString(gb.Value); !bytes.Equal(v, raw) {
		t.Errorf("bytes value = %v", v)
	}
	list, err := wo.Secrets.ListSecretsAll(ctx, sdkws.ListSecretsRequest{Scope: "team"})
	if err != nil || len(list) != 2 {
		t.Errorf("list = %+v, %v", list, err)
	}
	// The other user has nothing until granted: READ, then WRITE, then MANAGE.
	if _, err := wx.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "db-password"}); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("get without ACL: %v", err)
	}
	if scopes, _ := wx.Secrets.ListScopesAll(ctx); len(scopes) != 0 {
		t.Errorf("other lists %d scopes", len(scopes))
	}
	steps := []struct {
		perm                sdkws.AclPermission
		read, write, manage bool
	}{
		{sdkws.AclPermissionRead, true, false, false},
		{sdkws.AclPermissionWrite, true, true, false},
		{sdkws.AclPermissionManage, true, true, true},
	}
	for _, st := range steps {
		if err := wo.Secrets.PutAcl(ctx, sdkws.PutAcl{Scope: "team", Principal: other.UserName, Permission: st.perm}); err != nil {
			t.Fatal(err)
		}
		_, rerr := wx.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "db-password"})
		werr := wx.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "team", Key: "k2", StringValue: "v"})
		_, merr := wx.Secrets.ListAclsAll(ctx, sdkws.ListAclsRequest{Scope: "team"})
		for _, c := range []struct {
			what string
			err  error
			ok   bool
		}{{"read", rerr, st.read}, {"write", werr, st.write}, {"manage", merr, st.manage}} {
			if (c.err == nil) != c.ok || (c.err != nil && !errors.Is(c.err, apierr.ErrPermissionDenied)) {
				t.Errorf("with %s, %s: %v (want allowed=%v)", st.perm, c.what, c.err, c.ok)
			}
		}
	}
	acl, err := admin.Secrets.GetAcl(ctx, sdkws.GetAclRequest{Scope: "team", Principal: other.UserName})
	if err != nil || acl.Permission != sdkws.AclPermissionManage {
		t.Errorf("get ACL = %+v, %v", acl, err)
	}
	if err := wo.Secrets.DeleteAcl(ctx, sdkws.DeleteAcl{Scope: "team", Principal: other.UserName}); err != nil {
		t.Fatal(err)
	}
	if err := wo.Secrets.PutAcl(ctx, sdkws.PutAcl{Scope: "team", Principal: "nobody@example.com", Permission: sdkws.AclPermissionRead}); !errors.Is(err, apierr.ErrNotFound) {
		t.Errorf("ACL for an unknown principal: %v", err)
	}
	if err := wo.Secrets.DeleteSecret(ctx, sdkws.DeleteSecret{Scope: "team", Key: "db-password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := wo.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "db-password"}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("deleted secret: %v", err)
	}
	if err := wo.Secrets.DeleteScope(ctx, sdkws.DeleteScope{Scope: "team"}); err != nil {
		t.Fatal(err)
	}
	if _, err := wo.Secrets.ListSecretsAll(ctx, sdkws.ListSecretsRequest{Scope: "team"}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("deleted scope: %v", err)
	}
}

func TestSecretValuesNeverReachDiskLogsOrAudit(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	const marker = "VALUE-MARKER-9f8e7d6c"
	w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "s", InitialManagePrincipal: "users"})
	if err := w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k", StringValue: marker}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "s", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	// Bad input carrying the value is refused without echoing it.
	r := srv.Do(srv.AdminToken, "POST", "/api/2.0/secrets/put", map[string]string{"scope": "s", "key": "bad key", "string_value": marker})
	if r.Status != 400 || bytes.Contains(r.Body, []byte(marker)) {
		t.Errorf("bad put: %d %s", r.Status, r.Body)
	}
	srv.Close()
	// Nothing on disk holds the value in clear: the store (and its WAL), the
	// audit journal, the storage account, the keyring.
	found := []string{}
	filepath.Walk(srv.DataDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString([]byte(marker)))) {
			found = append(found, p)
		}
		return nil
	})
	if len(found) > 0 {
		t.Errorf("the secret value is in clear in %v", found)
	}
}

func TestADisabledKeyFailsClosed(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "s"})
	w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k", StringValue: "v"})
	if err := srv.Keys.SetDisabled("secrets", true); err != nil {
		t.Fatal(err)
	}
	_, err := w.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "s", Key: "k"})
	var ae *apierr.APIError
	if !errors.As(err, &ae) || ae.ErrorCode != "PERMISSION_DENIED" || !bytes.Contains([]byte(ae.Message), []byte("platform/secrets")) {
		t.Errorf("get with a disabled key: %v", err)
	}
	srv.Keys.SetDisabled("secrets", false)
	if _, err := w.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "s", Key: "k"}); err != nil {
		t.Errorf("after re-enabling the key: %v", err)
	}
}
