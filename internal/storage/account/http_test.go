package account_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/files"

	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/testenv"
)

func get(t *testing.T, r servertest.Response, path ...string) any {
	t.Helper()
	var v any = r.JSON(t)
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: no %s in %s", strings.Join(path, "."), p, r.Body)
		}
		v = m[p]
	}
	return v
}

// TestStorageAdminAPI drives the storage account through a real region:
// settings, health, geo-replication and failover over the admin API, and
// a revoked key failing DBFS calls closed through the Databricks Go SDK.
func TestStorageAdminAPI(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Start(t)
	admin := srv.AdminToken
	user := srv.NewUser("someone@example.com", false)

	r := srv.Do(admin, "GET", "/api/2.0/tandem/storage/account", nil)
	if r.Status != 200 || get(t, r, "settings", "redundancy") != "LRS" || get(t, r, "keys", "key_source") != "Microsoft.Storage" ||
		get(t, r, "keys", "key_id") != "platform/root" {
		t.Fatalf("account = %d %s", r.Status, r.Body)
	}
	copies := get(t, srv.Do(admin, "GET", "/api/2.0/tandem/storage/health", nil), "copies").([]any)
	if len(copies) != 3 || copies[0].(map[string]any)["state"] != "HEALTHY" {
		t.Fatalf("health = %v", copies)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/2.0/tandem/storage/account"}, {"PATCH", "/api/2.0/tandem/storage/account"},
		{"GET", "/api/2.0/tandem/storage/geo-replication"}, {"POST", "/api/2.0/tandem/storage/failover"},
	} {
		if r := srv.Do(user.Token, c.method, c.path, map[string]any{"redundancy": "GRS"}); r.Status != 403 {
			t.Errorf("%s %s as a user = %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
	if r := srv.Do(admin, "PATCH", "/api/2.0/tandem/storage/account", map[string]any{"redundancy": "XRS"}); r.Status != 400 || get(t, r, "error_code") != "INVALID_PARAMETER_VALUE" {
		t.Fatalf("bad redundancy = %d %s", r.Status, r.Body)
	}
	if r := srv.Do(admin, "POST", "/api/2.0/tandem/storage/failover", nil); r.Status != 400 || get(t, r, "error_code") != "INVALID_STATE" {
		t.Fatalf("failover of an LRS account = %d %s", r.Status, r.Body)
	}

	// DBFS writes through the account.
	w := srv.SDK(admin)
	content := []byte("dbfs contents behind the storage account")
	if err := w.Dbfs.Put(ctx, files.Put{Path: "/data/a.txt", Contents: base64.StdEncoding.EncodeToString(content), Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	read := func() ([]byte, error) {
		out, err := w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/data/a.txt"})
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(out.Data)
	}

	// Geo-replication on: the Last Sync Time appears once the initial sync
	// is done.
	if r := srv.Do(admin, "PATCH", "/api/2.0/tandem/storage/account", map[string]any{"redundancy": "RA-GRS"}); r.Status != 200 {
		t.Fatalf("RA-GRS = %d %s", r.Status, r.Body)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := srv.Do(admin, "GET", "/api/2.0/tandem/storage/geo-replication", nil)
		if r.Status == 200 && get(t, r, "last_sync_time") != nil && get(t, r, "backlog") == 0.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no last sync time: %s", r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The secondary endpoint serves reads of RA-GRS accounts.
	r = srv.Do(admin, "GET", "/api/2.0/tandem/storage/secondary/list?prefix=", nil)
	objs := get(t, r, "objects").([]any)
	if r.Status != 200 || len(objs) == 0 {
		t.Fatalf("secondary list = %d %s", r.Status, r.Body)
	}
	name := objs[0].(map[string]any)["name"].(string)
	r = srv.Do(admin, "GET", "/api/2.0/tandem/storage/secondary/read?name="+name, nil)
	if r.Status != 200 || get(t, r, "bytes_read").(float64) == 0 {
		t.Fatalf("secondary read = %d %s", r.Status, r.Body)
	}
	if r := srv.Do(user.Token, "GET", "/api/2.0/tandem/storage/secondary/list", nil); r.Status != 403 {
		t.Errorf("secondary list as a user = %d", r.Status)
	}

	// Revoking the platform key fails DBFS closed with PERMISSION_DENIED
	// naming the key; re-enabling restores it.
	srv.Keys.SetDisabled("root", true)
	_, err := read()
	var ae *apierr.APIError
	if !errors.As(err, &ae) || ae.ErrorCode != "PERMISSION_DENIED" || !strings.Contains(ae.Message, "platform/root") {
		t.Fatalf("read with the key disabled = %v", err)
	}
	err = w.Dbfs.Put(ctx, files.Put{Path: "/data/b.txt", Contents: "eA==", Overwrite: true})
	if !errors.As(err, &ae) || ae.ErrorCode != "PERMISSION_DENIED" {
		t.Fatalf("write with the key disabled = %v", err)
	}
	srv.Keys.SetDisabled("root", false)
	if got, err := read(); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read after re-enabling = %q %v", got, err)
	}

	// Rotation re-wraps; failover promotes the secondary.
	if r := srv.Do(admin, "POST", "/api/2.0/tandem/storage/rotate-key", nil); r.Status != 200 || get(t, r, "key_version") != "2" {
		t.Fatalf("rotate = %d %s", r.Status, r.Body)
	}
	r = srv.Do(admin, "POST", "/api/2.0/tandem/storage/failover", map[string]any{"failover_type": "Planned"})
	if r.Status != 200 || get(t, r, "settings", "redundancy") != "LRS" || get(t, r, "settings", "site") != "secondary" {
		t.Fatalf("failover = %d %s", r.Status, r.Body)
	}
	if got, err := read(); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read after failover = %q %v", got, err)
	}
	// Locally redundant now: no secondary endpoint.
	if r := srv.Do(admin, "GET", "/api/2.0/tandem/storage/secondary/list", nil); r.Status != 400 || get(t, r, "error_code") != "INVALID_STATE" {
		t.Fatalf("secondary list after failover = %d %s", r.Status, r.Body)
	}
	// Every change is in the audit journal.
	var audit []byte
	filepath.WalkDir(filepath.Join(srv.DataDir, "audit"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			audit = append(audit, b...)
		}
		return nil
	})
	for _, action := range []string{"updateAccount", "rotateKey", "failover"} {
		if !bytes.Contains(audit, []byte(`"`+action+`"`)) {
			t.Errorf("no audit record of %s", action)
		}
	}
}

// TestStorageAccountWithCustomerManagedKeyKeepsTheTokenSecret switches the
// account to a key in a real tandem keyvault process over the API and
// checks that its token reaches no file of the region: not the store, not
// the audit journal, not a log.
func TestStorageAccountWithCustomerManagedKeyKeepsTheTokenSecret(t *testing.T) {
	kv := testenv.KeyVault(t)
	srv := servertest.Start(t)
	admin := srv.AdminToken
	if r := kvDo(t, kv, "/keys/region-cmk/create"); r != 200 {
		t.Fatalf("create key = %d", r)
	}
	r := srv.Do(admin, "PATCH", "/api/2.0/tandem/storage/account", map[string]any{"encryption": map[string]any{
		"key_source": "Microsoft.Keyvault",
		"key_vault":  map[string]any{"vault_url": kv.URL, "key_name": "region-cmk", "ca_pem": kv.CAPEM(t), "token": kv.Token},
	}})
	if r.Status != 200 || !strings.HasPrefix(get(t, r, "keys", "key_id").(string), kv.URL+"/keys/region-cmk") {
		t.Fatalf("switch to the CMK = %d %s", r.Status, r.Body)
	}
	if bytes.Contains(r.Body, []byte(kv.Token)) {
		t.Fatal("the response holds the token")
	}
	ws := srv.SDK(admin)
	if err := ws.Dbfs.Put(context.Background(), files.Put{Path: "/cmk.txt", Contents: "aGk=", Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	// A later update naming the same vault keeps the stored token.
	r = srv.Do(admin, "PATCH", "/api/2.0/tandem/storage/account", map[string]any{"encryption": map[string]any{
		"key_source": "Microsoft.Keyvault",
		"key_vault":  map[string]any{"vault_url": kv.URL, "key_name": "region-cmk", "ca_pem": kv.CAPEM(t)},
	}})
	if r.Status != 200 {
		t.Fatalf("update without the token = %d %s", r.Status, r.Body)
	}
	filepath.WalkDir(srv.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(kv.Token)) {
				t.Errorf("%s holds the vault token", p)
			}
		}
		return nil
	})
}

func kvDo(t *testing.T, kv *testenv.KeyVaultServer, path string) int {
	b, _ := json.Marshal(map[string]any{"kty": "oct-HSM"})
	req, _ := httpNewRequest("POST", kv.URL+path, b)
	req.Header.Set("Authorization", "Bearer "+kv.Token)
	resp, err := kvHTTP(t, kv).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRegionKeepsItsCopiesInAzurite configures a region's storage account
// on Azure Blob Storage (Azurite) and writes DBFS files through it: they
// come back whole and Azurite's disk holds no byte of them in clear.
func TestRegionKeepsItsCopiesInAzurite(t *testing.T) {
	az := testenv.Azurite(t)
	srv := servertest.Start(t, func(c *config.Config) {
		c.Storage.Redundancy = "ZRS"
		c.Storage.Azure = &config.StorageAzure{ServiceURL: az.URL, Account: az.Account, Key: az.Key, ContainerPrefix: "region-zrs"}
	})
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	marker := []byte("REGION-ON-AZURITE-MARKER-" + time.Now().Format("150405.000000000"))
	data := bytes.Repeat(marker, 20000)
	if err := w.Dbfs.Put(ctx, files.Put{Path: "/az/file", Contents: base64.StdEncoding.EncodeToString(data), Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	out, err := w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/az/file", Length: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := base64.StdEncoding.DecodeString(out.Data); !bytes.Equal(got, data[:min(len(data), 1<<20)]) {
		t.Fatal("DBFS read differs")
	}
	r := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/storage/health", nil)
	copies := get(t, r, "copies").([]any)
	if len(copies) != 3 || copies[0].(map[string]any)["name"] != "zone-1" {
		t.Fatalf("health = %s", r.Body)
	}
	filepath.WalkDir(az.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, marker) {
				t.Errorf("%s holds the plaintext", p)
			}
		}
		return nil
	})
}
