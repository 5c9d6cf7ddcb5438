package dbfs_test

import (
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/files"

	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/testenv"
)

// TestMain stops the PostgreSQL server the tests share once they end.
func TestMain(m *testing.M) { testenv.Main(m) }

// The same DBFS on the PostgreSQL store: keys sort byte by byte there too,
// so listings, version scans and the purge's expiry index behave alike.
func TestDBFSOnPostgreSQL(t *testing.T) {
	srv, skip := startWithClock(t, servertest.WithStore(testenv.Postgres(t)))
	w := srv.SDK(srv.AdminToken)
	r := restorePoints{t, srv}
	data := random(3<<20 + 5)
	if err := w.Dbfs.WriteFile(ctx, "/pg/a/big.bin", data); err != nil {
		t.Fatal(err)
	}
	r.put("/pg/a2", "sibling") // sorts between "/pg/a" and its children byte-wise
	t1 := mark()
	r.put("/pg/a/big.bin", "small now")
	if err := w.Dbfs.Move(ctx, files.Move{SourcePath: "/pg/a", DestinationPath: "/pg/b"}); err != nil {
		t.Fatal(err)
	}
	list, err := w.Dbfs.ListAll(ctx, files.ListDbfsRequest{Path: "/pg"})
	if err != nil || len(list) != 2 || list[0].Path != "/pg/a2" || list[1].Path != "/pg/b" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	r.restore("/pg", t1)
	got, err := w.Dbfs.ReadFile(ctx, "/pg/a/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "restored on PostgreSQL", got, data)
	if r.exists("/pg/b") || r.read("/pg/a2") != "sibling" {
		t.Errorf("after the restore: /pg/b there %v, /pg/a2 = %q", r.exists("/pg/b"), r.read("/pg/a2"))
	}
	skip(srv.DBFS.Retention + time.Hour) // every version has expired
	if err := srv.DBFS.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.DBFS.Sweep(ctx, 0); err != nil {
		t.Fatal(err)
	}
	resp := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/dbfs/versions?path=/pg/a/big.bin", nil)
	if vs := resp.JSON(t)["versions"].([]any); len(vs) != 1 {
		t.Errorf("versions after purging everything: %s", resp.Body)
	}
	got, _ = w.Dbfs.ReadFile(ctx, "/pg/a/big.bin")
	sameBytes(t, "after the purge and sweep", got, data)
}
