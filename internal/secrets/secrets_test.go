package secrets_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/iam"
	sdkws "github.com/databricks/databricks-sdk-go/service/workspace"

	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

var ctx = context.Background()

func decoded(t *testing.T, v string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		t.Fatalf("value is not base64: %v", err)
	}
	return string(b)
}

// codeOf is the Databricks error code of an SDK error.
func codeOf(err error) string {
	var ae *apierr.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode
	}
	return ""
}

// rights tries what each level allows, as w, on scope "team", and reports
// which of READ, WRITE and MANAGE the caller could use. Every refusal must
// be PERMISSION_DENIED.
func rights(t *testing.T, w *databricks.WorkspaceClient, who string) (read, write, manage bool) {
	t.Helper()
	ok := func(what string, err error) bool {
		if err != nil && !errors.Is(err, apierr.ErrPermissionDenied) {
			t.Errorf("%s, %s: %v (want success or PERMISSION_DENIED)", who, what, err)
		}
		return err == nil
	}
	_, lerr := w.Secrets.ListSecretsAll(ctx, sdkws.ListSecretsRequest{Scope: "team"})
	_, gerr := w.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "db-password"})
	read = ok("list", lerr) && ok("get", gerr)
	perr := w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "team", Key: "scratch", StringValue: "x"})
	derr := w.Secrets.DeleteSecret(ctx, sdkws.DeleteSecret{Scope: "team", Key: "scratch"})
	write = ok("put", perr) && ok("delete", derr)
	_, aerr := w.Secrets.ListAclsAll(ctx, sdkws.ListAclsRequest{Scope: "team"})
	_, gaerr := w.Secrets.GetAcl(ctx, sdkws.GetAclRequest{Scope: "team", Principal: "owner@example.com"})
	paerr := w.Secrets.PutAcl(ctx, sdkws.PutAcl{Scope: "team", Principal: "admins", Permission: sdkws.AclPermissionRead})
	manage = ok("list ACLs", aerr) && ok("get ACL", gaerr) && ok("put ACL", paerr)
	if manage {
		ok("delete ACL", w.Secrets.DeleteAcl(ctx, sdkws.DeleteAcl{Scope: "team", Principal: "admins"}))
	}
	return read, write, manage
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
	if err := wo.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "team", Key: "db-password", StringValue: "s3cr3t"}); err != nil {
		t.Fatal(err)
	}
	raw := []byte{0, 1, 2, 255}
	if err := wo.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "team", Key: "blob", BytesValue: base64.StdEncoding.EncodeToString(raw)}); err != nil {
		t.Fatal(err)
	}
	got, err := wo.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "db-password"})
	if err != nil || got.Key != "db-password" || decoded(t, got.Value) != "s3cr3t" {
		t.Fatalf("get = %+v, %v", got, err)
	}
	if gb, err := wo.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "blob"}); err != nil || decoded(t, gb.Value) != string(raw) {
		t.Errorf("bytes value = %+v, %v", gb, err)
	}
	// A put overwrites and moves last_updated_timestamp.
	list, err := wo.Secrets.ListSecretsAll(ctx, sdkws.ListSecretsRequest{Scope: "team"})
	if err != nil || len(list) != 2 || list[0].Key != "blob" || list[1].Key != "db-password" || list[1].LastUpdatedTimestamp == 0 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if err := wo.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "team", Key: "db-password", StringValue: "s3cr3t-2"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := wo.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "db-password"}); decoded(t, got.Value) != "s3cr3t-2" {
		t.Errorf("overwritten value = %q", decoded(t, got.Value))
	}
	// A list answers keys and times, never values.
	r := srv.Do(owner.Token, "GET", "/api/2.0/secrets/list?scope=team", nil)
	if r.Status != 200 || bytes.Contains(r.Body, []byte("value")) || !bytes.Contains(r.Body, []byte(`"last_updated_timestamp"`)) {
		t.Errorf("raw list: %d %s", r.Status, r.Body)
	}

	// Scope names are visible to every user, as in Databricks; their
	// contents are not.
	scopes, err := wx.Secrets.ListScopesAll(ctx)
	if err != nil || len(scopes) != 1 || scopes[0].Name != "team" || scopes[0].BackendType != sdkws.ScopeBackendTypeDatabricks {
		t.Errorf("scopes seen by another user = %+v, %v", scopes, err)
	}

	// The other user walks READ, WRITE, MANAGE; each put-acl replaces the
	// last; then the ACL goes and so do the rights.
	steps := []struct {
		perm                sdkws.AclPermission
		read, write, manage bool
	}{
		{"", false, false, false},
		{sdkws.AclPermissionRead, true, false, false},
		{sdkws.AclPermissionWrite, true, true, false},
		{sdkws.AclPermissionManage, true, true, true},
		{sdkws.AclPermissionRead, true, false, false},
	}
	for _, st := range steps {
		if st.perm != "" {
			if err := wo.Secrets.PutAcl(ctx, sdkws.PutAcl{Scope: "team", Principal: other.UserName, Permission: st.perm}); err != nil {
				t.Fatal(err)
			}
			acl, err := wo.Secrets.GetAcl(ctx, sdkws.GetAclRequest{Scope: "team", Principal: other.UserName})
			if err != nil || acl.Permission != st.perm || acl.Principal != other.UserName {
				t.Errorf("get ACL after putting %s = %+v, %v", st.perm, acl, err)
			}
		}
		read, write, manage := rights(t, wx, "other with "+string(st.perm))
		if read != st.read || write != st.write || manage != st.manage {
			t.Errorf("with %q: read=%v write=%v manage=%v, want %v %v %v", st.perm, read, write, manage, st.read, st.write, st.manage)
		}
	}
	acls, err := admin.Secrets.ListAclsAll(ctx, sdkws.ListAclsRequest{Scope: "team"})
	if err != nil || len(acls) != 2 || acls[0] != (sdkws.AclItem{Principal: "other@example.com", Permission: "READ"}) ||
		acls[1] != (sdkws.AclItem{Principal: "owner@example.com", Permission: "MANAGE"}) {
		t.Errorf("ACLs = %+v, %v", acls, err)
	}
	if err := wo.Secrets.DeleteAcl(ctx, sdkws.DeleteAcl{Scope: "team", Principal: other.UserName}); err != nil {
		t.Fatal(err)
	}
	if read, _, _ := rights(t, wx, "other after delete-acl"); read {
		t.Error("other still reads after its ACL was deleted")
	}
	// Admins pass every check without an ACL.
	if read, write, manage := rights(t, admin, "admin"); !read || !write || !manage {
		t.Errorf("admin: read=%v write=%v manage=%v", read, write, manage)
	}

	// Groups and service principals are principals too; a group is stored
	// as the directory spells it.
	g, err := admin.Groups.Create(ctx, iam.Group{DisplayName: "eng", Members: []iam.ComplexValue{{Value: other.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wo.Secrets.PutAcl(ctx, sdkws.PutAcl{Scope: "team", Principal: "ENG", Permission: sdkws.AclPermissionRead}); err != nil {
		t.Fatal(err)
	}
	if read, write, _ := rights(t, wx, "other through eng"); !read || write {
		t.Errorf("other through group eng: read=%v write=%v", read, write)
	}
	if acl, err := wo.Secrets.GetAcl(ctx, sdkws.GetAclRequest{Scope: "team", Principal: "eng"}); err != nil || acl.Principal != g.DisplayName {
		t.Errorf("group ACL = %+v, %v", acl, err)
	}
	sp, err := admin.ServicePrincipals.Create(ctx, iam.ServicePrincipal{DisplayName: "robot"})
	if err != nil {
		t.Fatal(err)
	}
	if err := wo.Secrets.PutAcl(ctx, sdkws.PutAcl{Scope: "team", Principal: sp.ApplicationId, Permission: sdkws.AclPermissionWrite}); err != nil {
		t.Errorf("ACL for a service principal: %v", err)
	}

	// Deleting secrets and the scope.
	if err := wo.Secrets.DeleteSecret(ctx, sdkws.DeleteSecret{Scope: "team", Key: "db-password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := wo.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "team", Key: "db-password"}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("deleted secret: %v", err)
	}
	if err := wx.Secrets.DeleteScope(ctx, sdkws.DeleteScope{Scope: "team"}); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("delete scope with READ: %v", err)
	}
	if err := wo.Secrets.DeleteScope(ctx, sdkws.DeleteScope{Scope: "team"}); err != nil {
		t.Fatal(err)
	}
	if _, err := wo.Secrets.ListSecretsAll(ctx, sdkws.ListSecretsRequest{Scope: "team"}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("deleted scope: %v", err)
	}
	if scopes, _ := admin.Secrets.ListScopesAll(ctx); len(scopes) != 0 {
		t.Errorf("scopes after delete = %+v", scopes)
	}

	// initial_manage_principal "users" gives every user MANAGE, and only
	// that ACL is made.
	if err := wo.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "shared", InitialManagePrincipal: "users"}); err != nil {
		t.Fatal(err)
	}
	acls, err = wx.Secrets.ListAclsAll(ctx, sdkws.ListAclsRequest{Scope: "shared"})
	if err != nil || len(acls) != 1 || acls[0] != (sdkws.AclItem{Principal: "users", Permission: "MANAGE"}) {
		t.Errorf("ACLs of a scope for all users = %+v, %v", acls, err)
	}
}

func TestSecretsErrorsAreDatabricksErrors(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	if err := w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "s"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k", StringValue: "v"}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 128<<10)
	cases := []struct {
		name string
		err  error
		is   error
		code string
	}{
		{"unknown scope", w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "nope", Key: "k", StringValue: "v"}), apierr.ErrResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST"},
		{"unknown key", w.Secrets.DeleteSecret(ctx, sdkws.DeleteSecret{Scope: "s", Key: "nope"}), apierr.ErrResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST"},
		{"unknown ACL", w.Secrets.DeleteAcl(ctx, sdkws.DeleteAcl{Scope: "s", Principal: "users"}), apierr.ErrResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST"},
		{"ACL for no one", w.Secrets.PutAcl(ctx, sdkws.PutAcl{Scope: "s", Principal: "nobody@example.com", Permission: "READ"}), apierr.ErrInvalidParameterValue, "INVALID_PARAMETER_VALUE"},
		{"unknown level", w.Secrets.PutAcl(ctx, sdkws.PutAcl{Scope: "s", Principal: "users", Permission: "OWNER"}), apierr.ErrInvalidParameterValue, "INVALID_PARAMETER_VALUE"},
		{"bad scope name", w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "a b"}), apierr.ErrInvalidParameterValue, "INVALID_PARAMETER_VALUE"},
		{"long scope name", w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: strings.Repeat("a", 129)}), apierr.ErrInvalidParameterValue, "INVALID_PARAMETER_VALUE"},
		{"bad key name", w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "a/b", StringValue: "v"}), apierr.ErrInvalidParameterValue, "INVALID_PARAMETER_VALUE"},
		{"no value", w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k"}), apierr.ErrBadRequest, "MALFORMED_REQUEST"},
		{"two values", w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k", StringValue: "v", BytesValue: "dg=="}), apierr.ErrBadRequest, "MALFORMED_REQUEST"},
		{"bytes not base64", w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k", BytesValue: "%%%"}), apierr.ErrBadRequest, "MALFORMED_REQUEST"},
		{"value over 128 KB", w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k", StringValue: big + "x"}), apierr.ErrInvalidParameterValue, "INVALID_PARAMETER_VALUE"},
		{"vault-backed scope", w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "kv", ScopeBackendType: sdkws.ScopeBackendTypeAzureKeyvault,
			BackendAzureKeyvault: &sdkws.AzureKeyVaultSecretScopeMetadata{ResourceId: "/subscriptions/x", DnsName: "https://x.vault.azure.net/"}}),
			apierr.ErrInvalidParameterValue, "INVALID_PARAMETER_VALUE"},
		{"unknown backend", w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "x", ScopeBackendType: "S3"}), apierr.ErrInvalidParameterValue, "INVALID_PARAMETER_VALUE"},
		{"initial manager other than users", w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "x", InitialManagePrincipal: "admins"}), apierr.ErrInvalidParameterValue, "INVALID_PARAMETER_VALUE"},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.is) || codeOf(c.err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, c.err, c.code)
		}
	}
	// A value of exactly 128 KB is fine.
	if err := w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "big", StringValue: big}); err != nil {
		t.Errorf("128 KB value: %v", err)
	}
	var ae *apierr.APIError
	err := w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "kv", ScopeBackendType: sdkws.ScopeBackendTypeAzureKeyvault})
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "Azure Key Vault-backed secret scopes are not available yet") {
		t.Errorf("vault-backed scope message: %v", err)
	}
	// Nothing was half-made by the refused calls.
	scopes, _ := w.Secrets.ListScopesAll(ctx)
	if len(scopes) != 1 || scopes[0].Name != "s" {
		t.Errorf("scopes = %+v", scopes)
	}
}

// lockedBuffer collects the server log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

func TestSecretValuesNeverReachDiskLogsOrAudit(t *testing.T) {
	var logs lockedBuffer
	srv := servertest.Start(t, servertest.WithLogOutput(&logs))
	w := srv.SDK(srv.AdminToken)
	const marker = "VALUE-MARKER-9f8e7d6c"
	bytesMarker := []byte("BYTES-MARKER-\x00\x01\xfe-51a3")
	forms := [][]byte{
		[]byte(marker), []byte(base64.StdEncoding.EncodeToString([]byte(marker))),
		bytesMarker, []byte(base64.StdEncoding.EncodeToString(bytesMarker)),
	}
	leaks := func(b []byte) bool {
		for _, f := range forms {
			if bytes.Contains(b, f) {
				return true
			}
		}
		return false
	}
	if err := w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "s", InitialManagePrincipal: "users"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k", StringValue: marker}); err != nil {
		t.Fatal(err)
	}
	if err := w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "b", BytesValue: base64.StdEncoding.EncodeToString(bytesMarker)}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k", "b"} {
		if _, err := w.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "s", Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	admin := principal.Principal{ID: "x", Kind: principal.User, Name: "runtime-test", Admin: true}
	if v, err := srv.Secrets.GetValue(principal.With(ctx, admin), "s", "k"); err != nil || string(v) != marker {
		t.Fatalf("GetValue = %q, %v", v, err)
	}
	// Refused calls carrying the value answer without it.
	for _, body := range []map[string]string{
		{"scope": "s", "key": "bad key", "string_value": marker},
		{"scope": "s", "key": "k", "string_value": marker, "bytes_value": "%%%"},
		{"scope": "nope", "key": "k", "string_value": marker},
		{"scope": "s", "key": "k", "bytes_value": marker + "%"},
	} {
		r := srv.Do(srv.AdminToken, "POST", "/api/2.0/secrets/put", body)
		if r.Status < 400 || leaks(r.Body) {
			t.Errorf("refused put: %d %s", r.Status, r.Body)
		}
	}
	for _, path := range []string{"/api/2.0/secrets/list?scope=s", "/api/2.0/secrets/scopes/list", "/api/2.0/secrets/acls/list?scope=s"} {
		if r := srv.Do(srv.AdminToken, "GET", path, nil); r.Status != 200 || leaks(r.Body) {
			t.Errorf("%s: %d %s", path, r.Status, r.Body)
		}
	}

	// The metadata store and its write-ahead log, while the region runs.
	for _, name := range []string{"meta.db", "meta.db-wal"} {
		b, err := os.ReadFile(filepath.Join(srv.DataDir, name))
		if err != nil && name == "meta.db" {
			t.Fatal(err)
		}
		if leaks(b) {
			t.Errorf("%s holds a secret value in clear", name)
		}
	}
	// The audit journal has the calls, without the values.
	var journal []byte
	filepath.Walk(filepath.Join(srv.DataDir, "audit", "journal"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			journal = append(journal, b...)
		}
		return nil
	})
	for _, action := range []string{"secrets/putSecret", "secrets/getSecret", `"runtime-test"`} {
		if !bytes.Contains(journal, []byte(action)) {
			t.Errorf("the audit journal has no %s record", action)
		}
	}
	if leaks(journal) {
		t.Error("the audit journal holds a secret value")
	}

	srv.Close()
	// Nothing the region wrote holds a value: store, journal, storage
	// account, keyring, TLS files.
	filepath.Walk(srv.DataDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		if b, _ := os.ReadFile(p); leaks(b) {
			t.Errorf("%s holds a secret value", p)
		}
		return nil
	})
	// Nor does the server log, at debug level.
	if l := logs.Bytes(); len(l) == 0 || leaks(l) {
		t.Errorf("server log (%d bytes) leaks a value or is empty", len(l))
	}
}

func TestADisabledKeyFailsClosed(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	if err := w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "s"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k", StringValue: "v"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Keys.SetDisabled("secrets", true); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{
		"get": func() error {
			_, err := w.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "s", Key: "k"})
			return err
		}(),
		"put":    w.Secrets.PutSecret(ctx, sdkws.PutSecret{Scope: "s", Key: "k2", StringValue: "v"}),
		"create": w.Secrets.CreateScope(ctx, sdkws.CreateScope{Scope: "s2"}),
	}
	for what, err := range checks {
		var ae *apierr.APIError
		if !errors.As(err, &ae) || ae.ErrorCode != "PERMISSION_DENIED" || !strings.Contains(ae.Message, "platform/secrets") {
			t.Errorf("%s with the key disabled: %v", what, err)
		}
	}
	// Metadata stays readable: listing needs no key.
	if list, err := w.Secrets.ListSecretsAll(ctx, sdkws.ListSecretsRequest{Scope: "s"}); err != nil || len(list) != 1 {
		t.Errorf("list with the key disabled: %+v, %v", list, err)
	}
	if err := srv.Keys.SetDisabled("secrets", false); err != nil {
		t.Fatal(err)
	}
	got, err := w.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "s", Key: "k"})
	if err != nil || decoded(t, got.Value) != "v" {
		t.Errorf("after re-enabling the key: %+v, %v", got, err)
	}
	// A rotated key still opens what the old version wrapped.
	if err := srv.Keys.Rotate("secrets"); err != nil {
		t.Fatal(err)
	}
	if got, err := w.Secrets.GetSecret(ctx, sdkws.GetSecretRequest{Scope: "s", Key: "k"}); err != nil || decoded(t, got.Value) != "v" {
		t.Errorf("after rotating the key: %+v, %v", got, err)
	}
}
