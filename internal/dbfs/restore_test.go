package dbfs_test

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/files"

	"github.com/tandemdata/tandem/internal/dbfs"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// restorePoints drives a region's DBFS and its restore points.
type restorePoints struct {
	t   *testing.T
	srv *servertest.Server
}

func (r restorePoints) put(p, s string) {
	r.t.Helper()
	if err := r.srv.SDK(r.srv.AdminToken).Dbfs.WriteFile(ctx, p, []byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// read returns a file's contents, or "-" when there is no file.
func (r restorePoints) read(p string) string {
	r.t.Helper()
	b, err := r.srv.SDK(r.srv.AdminToken).Dbfs.ReadFile(ctx, p)
	if errors.Is(err, apierr.ErrResourceDoesNotExist) {
		return "-"
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

func (r restorePoints) exists(p string) bool {
	_, err := r.srv.SDK(r.srv.AdminToken).Dbfs.GetStatusByPath(ctx, p)
	return err == nil
}

func (r restorePoints) restore(p string, ts int64) int {
	r.t.Helper()
	resp := r.srv.Do(r.srv.AdminToken, http.MethodPost, "/api/2.0/tandem/dbfs/restore", map[string]any{"path": p, "timestamp": ts})
	if resp.Status != 200 {
		r.t.Fatalf("restore %s to %d: %d %s", p, ts, resp.Status, resp.Body)
	}
	n, _ := resp.JSON(r.t)["restored_paths"].(float64)
	return int(n)
}

// mark returns a restore point strictly between what came before and what
// comes after (times are in milliseconds).
func mark() int64 {
	time.Sleep(5 * time.Millisecond)
	t := time.Now().UnixMilli()
	time.Sleep(5 * time.Millisecond)
	return t
}

func TestRestorePointsBringBackFilesAndFolders(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	r := restorePoints{t, srv}
	r.put("/data/a.txt", "a1")
	r.put("/data/b.txt", "b1")
	r.put("/data/keep.txt", "k1")
	r.put("/other/x.txt", "x1")
	t1 := mark()
	r.put("/data/a.txt", "a2")                            // overwritten
	w.Dbfs.Delete(ctx, files.Delete{Path: "/data/b.txt"}) // deleted
	r.put("/data/c.txt", "c2")                            // created later
	r.put("/data/new/deep/d.txt", "d2")                   // created later, in new folders
	r.put("/other/x.txt", "x2")                           // outside the folder restored
	t2 := mark()

	// One file first.
	if n := r.restore("/data/a.txt", t1); n != 1 {
		t.Errorf("restoring one file changed %d paths", n)
	}
	if got := r.read("/data/a.txt"); got != "a1" {
		t.Errorf("a.txt after restoring the file = %q", got)
	}
	// Then the whole folder: b comes back, c and the new folders go, what
	// did not change stays, and nothing outside the folder moves.
	r.restore("/data", t1)
	for p, want := range map[string]string{"/data/a.txt": "a1", "/data/b.txt": "b1", "/data/keep.txt": "k1", "/data/c.txt": "-", "/data/new/deep/d.txt": "-", "/other/x.txt": "x2"} {
		if got := r.read(p); got != want {
			t.Errorf("after restoring the folder, %s = %q, want %q", p, got, want)
		}
	}
	if r.exists("/data/new") {
		t.Errorf("/data/new, made after the restore point, is still there")
	}
	// A restore is itself undone by a restore: back to t2.
	r.restore("/data", t2)
	for p, want := range map[string]string{"/data/a.txt": "a2", "/data/b.txt": "-", "/data/c.txt": "c2", "/data/new/deep/d.txt": "d2"} {
		if got := r.read(p); got != want {
			t.Errorf("after restoring to t2, %s = %q, want %q", p, got, want)
		}
	}
	// Restoring to now changes nothing.
	if n := r.restore("/data", time.Now().UnixMilli()); n != 0 {
		t.Errorf("restoring to now changed %d paths", n)
	}

	// The versions of a.txt, newest first: current a2 (from the restore to
	// t2), the a1 the first restore put back, a2, and the first a1. The
	// folder restore found a1 already there and made no version.
	resp := srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/tandem/dbfs/versions?path=dbfs:/data/a.txt", nil)
	if resp.Status != 200 {
		t.Fatalf("versions: %d %s", resp.Status, resp.Body)
	}
	vs := resp.JSON(t)["versions"].([]any)
	if len(vs) != 4 || vs[0].(map[string]any)["current"] != true {
		t.Errorf("versions of a.txt = %s", resp.Body)
	}
	for i := 1; i < len(vs); i++ {
		v := vs[i].(map[string]any)
		if v["file_size"] != float64(2) || v["replaced_time"] == nil || v["current"] != nil {
			t.Errorf("version %d of a.txt = %v", i, v)
		}
	}
	resp = srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/tandem/dbfs/versions?path=/data/b.txt", nil)
	if vs := resp.JSON(t)["versions"].([]any); len(vs) != 2 || vs[0].(map[string]any)["deleted"] != true {
		t.Errorf("versions of the deleted b.txt = %s", resp.Body)
	}
	resp = srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/tandem/dbfs/versions?path=/never", nil)
	if resp.Status != 404 {
		t.Errorf("versions of a path that never was: %d %s", resp.Status, resp.Body)
	}
}

func TestARestoreUndoesAMove(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	r := restorePoints{t, srv}
	r.put("/src/a.txt", "a")
	r.put("/src/sub/b.txt", "b")
	t1 := mark()
	if err := w.Dbfs.Move(ctx, files.Move{SourcePath: "/src", DestinationPath: "/dst/moved"}); err != nil {
		t.Fatal(err)
	}
	// A move keeps the files' modification time, as a rename does.
	st, _ := w.Dbfs.GetStatusByPath(ctx, "/dst/moved/a.txt")
	if st.ModificationTime >= t1 {
		t.Errorf("the move changed the modification time to %d", st.ModificationTime)
	}
	resp := srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/tandem/dbfs/versions?path=/src/a.txt", nil)
	if vs := resp.JSON(t)["versions"].([]any); len(vs) != 1 || vs[0].(map[string]any)["moved_to"] != "/dst/moved/a.txt" {
		t.Errorf("versions of a moved file = %s", resp.Body)
	}
	// Restoring the common parent puts everything back where it was.
	r.restore("/", t1)
	for p, want := range map[string]string{"/src/a.txt": "a", "/src/sub/b.txt": "b", "/dst/moved/a.txt": "-", "/dst/moved/sub/b.txt": "-"} {
		if got := r.read(p); got != want {
			t.Errorf("after restoring /, %s = %q, want %q", p, got, want)
		}
	}
	if r.exists("/dst") {
		t.Errorf("/dst, made by the move, is still there")
	}
}

// A path that changed kind since the restore point gets its old kind back,
// whichever way round.
func TestARestoreSwapsFilesAndFoldersBack(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	r := restorePoints{t, srv}
	r.put("/kind/was-file", "f")
	r.put("/kind/was-dir/a", "a")
	t1 := mark()
	w.Dbfs.Delete(ctx, files.Delete{Path: "/kind/was-file"})
	r.put("/kind/was-file/inside", "new") // now a folder
	w.Dbfs.Delete(ctx, files.Delete{Path: "/kind/was-dir", Recursive: true})
	r.put("/kind/was-dir", "new") // now a file
	r.restore("/kind", t1)
	for p, want := range map[string]string{"/kind/was-file": "f", "/kind/was-file/inside": "-", "/kind/was-dir/a": "a"} {
		if got := r.read(p); got != want {
			t.Errorf("after the restore, %s = %q, want %q", p, got, want)
		}
	}
}

func TestRestoreRefusesTimesOutsideTheRetention(t *testing.T) {
	srv := servertest.Start(t)
	r := restorePoints{t, srv}
	r.put("/ret/f", "x")
	now := time.Now()
	for name, ts := range map[string]int64{
		"older than the retention": now.Add(-srv.DBFS.Retention - time.Hour).UnixMilli(),
		"in the future":            now.Add(time.Hour).UnixMilli(),
		"missing":                  0,
	} {
		resp := srv.Do(srv.AdminToken, http.MethodPost, "/api/2.0/tandem/dbfs/restore", map[string]any{"path": "/ret", "timestamp": ts})
		if resp.Status != 400 || resp.JSON(t)["error_code"] != "INVALID_PARAMETER_VALUE" {
			t.Errorf("restore to a time %s: %d %s", name, resp.Status, resp.Body)
		}
	}
	if r.read("/ret/f") != "x" {
		t.Errorf("a refused restore changed the file")
	}
	// The oldest time within the retention is accepted.
	// The oldest time within the retention is accepted: then, neither the
	// file nor its folder existed.
	if n := r.restore("/ret", now.Add(-srv.DBFS.Retention+time.Minute).UnixMilli()); n != 2 || r.exists("/ret") {
		t.Errorf("restore to the start of the retention changed %d paths; folder there: %v", n, r.exists("/ret"))
	}
	// An existing empty folder restores to itself; a path that never was is
	// RESOURCE_DOES_NOT_EXIST.
	srv.SDK(srv.AdminToken).Dbfs.Mkdirs(ctx, files.MkDirs{Path: "/empty"})
	if n := r.restore("/empty", mark()); n != 0 || !r.exists("/empty") {
		t.Errorf("restoring an empty folder to now changed %d paths", n)
	}
	resp := srv.Do(srv.AdminToken, http.MethodPost, "/api/2.0/tandem/dbfs/restore", map[string]any{"path": "/never", "timestamp": now.UnixMilli()})
	if resp.Status != 404 {
		t.Errorf("restore of a path that never was: %d %s", resp.Status, resp.Body)
	}
}

// startWithClock starts a region whose DBFS clock runs ahead by what the
// returned function sets (the background loop reads it too, so it is atomic).
func startWithClock(t *testing.T, opts ...servertest.Option) (*servertest.Server, func(time.Duration)) {
	var ahead atomic.Int64
	srv := servertest.Start(t, append(opts, servertest.WithSetup(func(s *server.Server) {
		s.DBFS.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	}))...)
	return srv, func(d time.Duration) { ahead.Store(int64(d)) }
}

func TestExpiredVersionsAndUploadsArePurgedWithTheirBlocks(t *testing.T) {
	srv, skip := startWithClock(t)
	w := srv.SDK(srv.AdminToken)
	for _, s := range []string{"one", "two", "three"} {
		if err := w.Dbfs.WriteFile(ctx, "/v/f", []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	w.Dbfs.WriteFile(ctx, "/v/gone", []byte("deleted"))
	w.Dbfs.Delete(ctx, files.Delete{Path: "/v/gone"})
	h, _ := w.Dbfs.Create(ctx, files.Create{Path: "/v/abandoned"})
	w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: "eA=="})
	if n := blobCount(srv); n != 5 {
		t.Fatalf("%d blobs before the purge, want 5", n)
	}
	// Within the retention nothing goes, even with no sweep grace.
	if err := srv.DBFS.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.DBFS.Sweep(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := blobCount(srv); n != 5 {
		t.Fatalf("%d blobs after a purge within the retention, want 5", n)
	}
	// Later than the retention, the upload's idle time and the sweep's grace.
	skip(srv.DBFS.Retention + time.Hour)
	if err := srv.DBFS.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if n := blobCount(srv); n != 1 {
		t.Errorf("%d blobs after the purge, want only the current file's", n)
	}
	if b, err := w.Dbfs.ReadFile(ctx, "/v/f"); err != nil || string(b) != "three" {
		t.Errorf("current file after the purge: %q %v", b, err)
	}
	resp := srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/tandem/dbfs/versions?path=/v/f", nil)
	if vs := resp.JSON(t)["versions"].([]any); len(vs) != 1 {
		t.Errorf("versions after the purge: %s", resp.Body)
	}
	if n := len(uploads(t, srv)); n != 0 {
		t.Errorf("%d uploads after the purge", n)
	}
}

// The purge deletes in bounded batches; more versions than one batch all go.
func TestThePurgeRemovesMoreVersionsThanOneBatch(t *testing.T) {
	t.Cleanup(dbfs.SetPurgeBatch(10)) // runs after the server has stopped
	srv, skip := startWithClock(t)
	for i := 0; i < 25; i++ {
		resp := srv.Do(srv.AdminToken, http.MethodPost, "/api/2.0/dbfs/put", map[string]any{"path": "/many/f", "contents": "", "overwrite": true})
		if resp.Status != 200 {
			t.Fatalf("put %d: %d %s", i, resp.Status, resp.Body)
		}
	}
	skip(srv.DBFS.Retention + time.Hour)
	if err := srv.DBFS.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	resp := srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/tandem/dbfs/versions?path=/many/f", nil)
	if vs := resp.JSON(t)["versions"].([]any); len(vs) != 1 {
		t.Errorf("%d versions after the purge, want only the current one", len(vs))
	}
}
