package diagnostics_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/iam"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/audit/destination"
	"github.com/tandemdata/tandem/internal/audit/destination/storageaccount"
	"github.com/tandemdata/tandem/internal/audit/digest"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/storage"
)

type recordsPage struct {
	Records       []audit.Record `json:"records"`
	NextPageToken string         `json:"next_page_token"`
}

// findRecords polls the query API until match finds a record or the
// deadline passes.
func findRecords(t *testing.T, srv *servertest.Server, query url.Values, want int) []audit.Record {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var all []audit.Record
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		for {
			resp := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/audit/records?"+q.Encode(), nil)
			if resp.Status != 200 {
				t.Fatalf("query records: %d %s", resp.Status, resp.Body)
			}
			var page recordsPage
			if err := json.Unmarshal(resp.Body, &page); err != nil {
				t.Fatal(err)
			}
			all = append(all, page.Records...)
			if page.NextPageToken == "" {
				break
			}
			q.Set("page_token", page.NextPageToken)
		}
		if len(all) >= want || time.Now().After(deadline) {
			return all
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestEveryWorkspaceAnswersWhoDidWhatFromTheFirstStart(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	ctx := t.Context()
	u, err := w.Users.Create(ctx, iam.User{UserName: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	// The SDK's call answered; its record is in the query store shortly.
	recs := findRecords(t, srv, url.Values{"operation_name": {"Microsoft.Databricks/accounts/add"}}, 1)
	if len(recs) != 1 {
		t.Fatalf("found %d accounts/add records, want 1", len(recs))
	}
	r := recs[0]
	if r.Identity.Email != "admin@tandem.local" || r.Category != "accounts" || r.Properties.ActionName != "add" ||
		r.Properties.Response.StatusCode != 201 || !strings.Contains(r.Properties.Response.Result, u.Id) ||
		r.Properties.RequestParams["userName"] != "ada@example.com" || r.Properties.RequestID == "" {
		t.Errorf("record = %+v", r)
	}
	// Filters: by request id, user, category, free text, time.
	for name, q := range map[string]url.Values{
		"request_id": {"request_id": {r.Properties.RequestID}},
		"user":       {"user": {"admin@tandem.local"}, "category": {"accounts"}, "operation_name": {"add"}},
		"q":          {"q": {"ADA@example"}},
		"time":       {"start_time": {fmt.Sprint(time.Now().Add(-time.Minute).UnixMilli())}, "q": {"ada@example.com"}, "category": {"accounts"}},
	} {
		got := findRecords(t, srv, q, 1)
		found := false
		for _, g := range got {
			found = found || g.Properties.LogID == r.Properties.LogID
		}
		if !found {
			t.Errorf("filter %s did not find the record (got %d records)", name, len(got))
		}
	}
	if got := findRecords(t, srv, url.Values{"end_time": {"1"}}, 0); len(got) != 0 {
		t.Errorf("end_time before everything found %d records", len(got))
	}
}

func TestRecordsQueryPagesAndRefusesBadInput(t *testing.T) {
	srv := servertest.Start(t)
	for i := 0; i < 7; i++ {
		srv.Do(srv.AdminToken, "GET", "/api/2.0/preview/scim/v2/Me", nil)
	}
	q := url.Values{"operation_name": {"getCurrentUser"}, "page_size": {"3"}}
	recs := findRecords(t, srv, q, 7)
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.Properties.LogID] {
			t.Errorf("record %s on two pages", r.Properties.LogID)
		}
		seen[r.Properties.LogID] = true
	}
	if len(recs) < 7 {
		t.Errorf("paged through %d records, want at least 7", len(recs))
	}
	for _, bad := range []string{"page_token=nope", "start_time=yesterday", "page_size=0", "start_time=10&end_time=5"} {
		resp := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/audit/records?"+bad, nil)
		if resp.Status != 400 || resp.JSON(t)["error_code"] != "INVALID_PARAMETER_VALUE" {
			t.Errorf("%s: %d %s", bad, resp.Status, resp.Body)
		}
	}
	user := srv.NewUser("grace@example.com", false)
	for _, path := range []string{"/api/2.0/tandem/audit/records", "/api/2.0/tandem/diagnostic-settings", "/metrics"} {
		if resp := srv.Do(user.Token, "GET", path, nil); resp.Status != 403 {
			t.Errorf("non-admin GET %s: %d %s", path, resp.Status, resp.Body)
		}
	}
}

func shortDigests(c *config.Config) { c.Audit.DigestPeriod = config.Duration(time.Second) }

func TestStorageAccountGetsAzureLayoutAndSealedDigests(t *testing.T) {
	srv := servertest.Start(t, shortDigests)
	resp := srv.Do(srv.AdminToken, "PUT", "/api/2.0/tandem/diagnostic-settings/to-storage", map[string]any{
		"logs":            []map[string]any{{"category": "accounts", "enabled": true}},
		"storage_account": map[string]any{},
	})
	if resp.Status != 200 {
		t.Fatalf("put setting: %d %s", resp.Status, resp.Body)
	}
	me := srv.Do(srv.AdminToken, "GET", "/api/2.0/preview/scim/v2/Me", nil)
	reqID := me.Header.Get("X-Request-Id")
	// The storage account encrypts what it holds: read it through the
	// account, as a user of the storage account reads blobs.
	ctx := context.Background()
	account := srv.Storage
	// Delivered within the hour it was made in (or the next, at the turn).
	var blob string
	for _, at := range []time.Time{time.Now(), time.Now().Add(time.Minute)} {
		blob = storageaccount.BlobName(srv.Server.Diagnostics.ResourceIDForTest(), "accounts", at)
		if !strings.HasPrefix(blob, "insights-logs-accounts/resourceId=/SUBSCRIPTIONS/") || !strings.HasSuffix(blob, "/m=00/PT1H.json") {
			t.Fatalf("blob name %s is not Azure's layout", blob)
		}
		if _, err := account.Stat(ctx, blob); err == nil {
			break
		}
	}
	var found map[string]any
	deadline := time.Now().Add(15 * time.Second)
	for found == nil && time.Now().Before(deadline) {
		f, err := account.Get(ctx, blob, 0, -1)
		if err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("PT1H.json line is not JSON: %s", sc.Text())
				}
				if props, _ := m["properties"].(map[string]any); props["requestId"] == reqID {
					found = m
				}
			}
			f.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	if found == nil {
		t.Fatalf("record of request %s not in %s", reqID, blob)
	}
	// Azure's wire form: identity, requestParams and response are JSON strings.
	props := found["properties"].(map[string]any)
	for _, f := range []any{found["identity"], props["requestParams"], props["response"]} {
		if _, ok := f.(string); !ok {
			t.Errorf("nested field is %T on the wire, want a JSON string: %v", f, found)
		}
	}
	if found["operationName"] != "Microsoft.Databricks/accounts/getCurrentUser" || !strings.Contains(found["identity"].(string), `"email":"admin@tandem.local"`) {
		t.Errorf("wire record = %v", found)
	}
	line, _ := json.Marshal(found)
	if r, err := destination.FromWire(line); err != nil || r.Properties.Response.StatusCode != 200 {
		t.Errorf("wire record does not decode back: %v %+v", err, r)
	}

	// Digests seal the blob; verify passes, then names a tampered file.
	var rep digest.Report
	deadline = time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		rep, err = digest.Verify(storage.FS(ctx, account), nil)
		if err == nil && len(rep.Chains) == 1 && rep.Chains[0].Files >= 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !rep.OK() || len(rep.Chains) != 1 || rep.Chains[0].Files < 1 {
		t.Fatalf("verify before tampering: %+v", rep)
	}
	// Stop the server so the blob stops growing, then alter one byte
	// through the account (someone with write access to it; a byte changed
	// on disk under the account's encryption is caught by the account).
	srv.Server.Close()
	cfg := config.Default()
	cfg.DataDir = srv.DataDir
	rw, closeRW, err := server.OpenStorage(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRW()
	rep, _ = digest.Verify(storage.FS(ctx, rw), nil)
	if !rep.OK() {
		t.Fatalf("verify after stop: %+v", rep.Problems)
	}
	r, err := rw.Get(ctx, blob, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	b[10] ^= 1
	if err := rw.Put(ctx, blob, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	rep, _ = digest.Verify(storage.FS(ctx, rw), nil)
	if rep.OK() || rep.Problems[0].Kind != "altered-file" || !strings.HasSuffix(rep.Problems[0].Object, "PT1H.json") {
		t.Errorf("verify after tampering: %+v", rep.Problems)
	}
}
