package dbfs_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/databricks/databricks-sdk-go/service/files"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

func TestDBFSCallsAreAuditedWithoutTheirContents(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	// Contents that are easy to find if they leak: a marker, and its base64.
	secret := []byte(strings.Repeat("TOP-SECRET-CONTENTS ", 100))
	leak := []string{"TOP-SECRET", base64.StdEncoding.EncodeToString(secret)[:40]}

	w.Dbfs.Mkdirs(ctx, files.MkDirs{Path: "/aud"})
	w.Dbfs.Put(ctx, files.Put{Path: "/aud/json", Contents: base64.StdEncoding.EncodeToString(secret)})
	sp := startPut(t, srv, "/aud/form", "")
	sp.file.Write(secret)
	if r := sp.finish(); r.status != 200 {
		t.Fatalf("multipart put: %d %s", r.status, r.body)
	}
	h, _ := w.Dbfs.Create(ctx, files.Create{Path: "/aud/blocks"})
	w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: base64.StdEncoding.EncodeToString(secret)})
	w.Dbfs.Close(ctx, files.Close{Handle: h.Handle})
	w.Dbfs.ReadFile(ctx, "/aud/blocks") // get-status and read
	w.Dbfs.ListAll(ctx, files.ListDbfsRequest{Path: "/aud"})
	w.Dbfs.Move(ctx, files.Move{SourcePath: "/aud/json", DestinationPath: "/aud/moved"})
	w.Dbfs.Delete(ctx, files.Delete{Path: "/aud", Recursive: true})

	recs, _, err := srv.Journal.Read(audit.Position{}, 100000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]*audit.Record{}
	for _, rec := range recs {
		if rec.Category != "dbfs" {
			continue
		}
		seen[rec.Properties.ActionName] = rec
		b, _ := json.Marshal(rec)
		for _, l := range leak {
			if strings.Contains(string(b), l) {
				t.Errorf("the %s record holds file contents: %s", rec.Properties.ActionName, b)
			}
		}
		for _, k := range []string{"contents", "data"} {
			if _, ok := rec.Properties.RequestParams[k]; ok {
				t.Errorf("the %s record keeps %q", rec.Properties.ActionName, k)
			}
		}
	}
	for _, action := range []string{"create", "addBlock", "close", "put", "mkdirs", "move", "delete", "read", "getStatus", "list"} {
		rec := seen[action]
		if rec == nil {
			t.Errorf("no dbfs/%s record", action)
			continue
		}
		if rec.OperationName != "Microsoft.Databricks/dbfs/"+action || rec.Properties.Response.StatusCode != 200 {
			t.Errorf("dbfs/%s record: %s, status %d", action, rec.OperationName, rec.Properties.Response.StatusCode)
		}
	}
	// The records say which file: a put names its path, a close the path
	// of its upload.
	if p := seen["put"].Properties.RequestParams["path"]; p != "/aud/form" {
		t.Errorf("put record path = %q", p)
	}
	if p := seen["close"].Properties.RequestParams["path"]; p != "/aud/blocks" {
		t.Errorf("close record path = %q", p)
	}
}
