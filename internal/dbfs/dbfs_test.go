package dbfs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/files"

	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/storage"
)

var ctx = context.Background()

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestLargeFilesThroughTheSDK(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	data := random(5<<20 + 12345)
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/tmp/big.bin", data); err != nil {
		t.Fatal(err)
	}
	got, err := w.Dbfs.ReadFile(ctx, "/tmp/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back %d bytes that differ from the %d written", len(got), len(data))
	}
	st, err := w.Dbfs.GetStatusByPath(ctx, "/tmp/big.bin")
	if err != nil || st.FileSize != int64(len(data)) || st.IsDir {
		t.Fatalf("status = %+v, %v", st, err)
	}
	// Reads at an offset return exactly what was asked for.
	r, err := w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/tmp/big.bin", Offset: 3<<20 - 7, Length: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	chunk, _ := base64.StdEncoding.DecodeString(r.Data)
	if r.BytesRead != 1<<20 || !bytes.Equal(chunk, data[3<<20-7:4<<20-7]) {
		t.Errorf("ranged read: %d bytes, equal %v", r.BytesRead, bytes.Equal(chunk, data[3<<20-7:4<<20-7]))
	}
	end, _ := w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/tmp/big.bin", Offset: int64(len(data)) - 10, Length: 100})
	if end.BytesRead != 10 {
		t.Errorf("read past the end: %d bytes", end.BytesRead)
	}
	eof, _ := w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/tmp/big.bin", Offset: int64(len(data)), Length: 100})
	if eof.BytesRead != 0 {
		t.Errorf("read at EOF: %d bytes", eof.BytesRead)
	}
	list, err := w.Dbfs.ListAll(ctx, files.ListDbfsRequest{Path: "/tmp"})
	if err != nil || len(list) != 1 || list[0].Path != "/tmp/big.bin" {
		t.Errorf("list = %+v, %v", list, err)
	}
	if err := w.Dbfs.Move(ctx, files.Move{SourcePath: "/tmp", DestinationPath: "/moved/tmp"}); err != nil {
		t.Fatal(err)
	}
	if got, err := w.Dbfs.ReadFile(ctx, "/moved/tmp/big.bin"); err != nil || len(got) != len(data) {
		t.Errorf("after moving the folder: %d bytes, %v", len(got), err)
	}
	if _, err := w.Dbfs.GetStatusByPath(ctx, "/tmp/big.bin"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("old path after move: %v", err)
	}
}

func TestDBFSErrorsAreWhatClientsExpect(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	w.Dbfs.WriteFile(ctx, "/a/f.txt", []byte("x"))
	code := func(err error) (int, string) {
		var ae *apierr.APIError
		if !errors.As(err, &ae) {
			return 0, fmt.Sprint(err)
		}
		return ae.StatusCode, ae.ErrorCode
	}
	_, err := w.Dbfs.Create(ctx, files.Create{Path: "/a/f.txt"})
	if st, c := code(err); st != 400 || c != "RESOURCE_ALREADY_EXISTS" {
		t.Errorf("create over a file = %d %s", st, c)
	}
	err = w.Dbfs.Delete(ctx, files.Delete{Path: "/a"})
	if st, c := code(err); st != 400 || c != "IO_ERROR" {
		t.Errorf("non-recursive delete of a directory = %d %s", st, c)
	}
	_, err = w.Dbfs.GetStatusByPath(ctx, "/nope")
	if st, c := code(err); st != 404 || c != "RESOURCE_DOES_NOT_EXIST" {
		t.Errorf("missing path = %d %s", st, c)
	}
	err = w.Dbfs.Mkdirs(ctx, files.MkDirs{Path: "/a/f.txt/sub"})
	if st, c := code(err); st != 400 || c != "RESOURCE_ALREADY_EXISTS" {
		t.Errorf("mkdirs across a file = %d %s", st, c)
	}
	_, err = w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/a/f.txt", Length: 2 << 20})
	if _, c := code(err); c != "MAX_READ_SIZE_EXCEEDED" {
		t.Errorf("oversized read = %s", c)
	}
	_, err = w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/a"})
	if _, c := code(err); c != "INVALID_PARAMETER_VALUE" {
		t.Errorf("read of a directory = %s", c)
	}
	r := srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/dbfs/read?path=/a/f.txt&offset=-1", nil)
	if r.Status != 400 || r.JSON(t)["error_code"] != "INVALID_PARAMETER_VALUE" {
		t.Errorf("negative offset: %d %s", r.Status, r.Body)
	}
	h, _ := w.Dbfs.Create(ctx, files.Create{Path: "/a/g.txt"})
	err = w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: base64.StdEncoding.EncodeToString(random(1<<20 + 1))})
	if _, c := code(err); c != "MAX_BLOCK_SIZE_EXCEEDED" {
		t.Errorf("oversized block = %s", c)
	}
	err = w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: 987654, Data: "eA=="})
	if st, c := code(err); st != 404 || c != "RESOURCE_DOES_NOT_EXIST" {
		t.Errorf("unknown handle = %d %s", st, c)
	}
	for _, bad := range []string{"relative/x", "/a/../b", "/a\x00b"} {
		r := srv.Do(srv.AdminToken, http.MethodPost, "/api/2.0/dbfs/mkdirs", map[string]string{"path": bad})
		if r.Status != 400 || r.JSON(t)["error_code"] != "INVALID_PARAMETER_VALUE" {
			t.Errorf("mkdirs %q: %d %s", bad, r.Status, r.Body)
		}
	}
	// Another user cannot use someone else's handle.
	other := srv.NewUser("other@example.com", false)
	err = srv.SDK(other.Token).Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: "eA=="})
	if st, _ := code(err); st != 404 {
		t.Errorf("another user's handle: %v", err)
	}
}

func TestAnUploadIsInvisibleUntilCloseAndSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	srv := servertest.Start(t, servertest.WithDataDir(dir))
	w := srv.SDK(srv.AdminToken)
	h, err := w.Dbfs.Create(ctx, files.Create{Path: "/up/file.bin"})
	if err != nil {
		t.Fatal(err)
	}
	part1, part2 := random(1<<20), random(700_000)
	if err := w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: base64.StdEncoding.EncodeToString(part1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Dbfs.GetStatusByPath(ctx, "/up/file.bin"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("file visible before close: %v", err)
	}
	srv.Close()
	srv = servertest.Start(t, servertest.WithDataDir(dir))
	w = srv.SDK(srv.AdminToken)
	if err := w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: base64.StdEncoding.EncodeToString(part2)}); err != nil {
		t.Fatalf("add-block after a restart: %v", err)
	}
	if err := w.Dbfs.Close(ctx, files.Close{Handle: h.Handle}); err != nil {
		t.Fatal(err)
	}
	got, err := w.Dbfs.ReadFile(ctx, "/up/file.bin")
	if err != nil || !bytes.Equal(got, append(part1, part2...)) {
		t.Fatalf("after close: %d bytes, %v", len(got), err)
	}
	if err := w.Dbfs.Close(ctx, files.Close{Handle: h.Handle}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("closing twice: %v", err)
	}
}

func TestMultipartPutStreamsLargeFiles(t *testing.T) {
	srv := servertest.Start(t)
	data := random(20<<20 + 3)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("path", "/stream/f.bin")
	fw, _ := mw.CreateFormFile("contents", "f.bin")
	fw.Write(data)
	mw.WriteField("overwrite", "true")
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/2.0/dbfs/put", &body)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := (&http.Client{Transport: srv.Transport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("multipart put: %d %s", resp.StatusCode, b)
	}
	got, err := srv.SDK(srv.AdminToken).Dbfs.ReadFile(ctx, "/stream/f.bin")
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	n := 0
	srv.Storage.List(ctx, "dbfs/", func(storage.ObjectInfo) error { n++; return nil })
	if n != 3 {
		t.Errorf("%d blocks for a 20 MB stream, want 3 of at most 8 MB", n)
	}
}

func TestRestorePointsBringBackFilesAndFolders(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	put := func(p, s string) {
		t.Helper()
		if err := w.Dbfs.WriteFile(ctx, p, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		b, err := w.Dbfs.ReadFile(ctx, p)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	put("/data/a.txt", "a1")
	put("/data/b.txt", "b1")
	time.Sleep(20 * time.Millisecond)
	t1 := time.Now().UnixMilli()
	time.Sleep(20 * time.Millisecond)
	put("/data/a.txt", "a2")                              // overwritten
	w.Dbfs.Delete(ctx, files.Delete{Path: "/data/b.txt"}) // deleted
	put("/data/c.txt", "c2")                              // created later
	restore := func(p string, ts int64) {
		t.Helper()
		r := srv.Do(srv.AdminToken, http.MethodPost, "/api/2.0/tandem/dbfs/restore", map[string]any{"path": p, "timestamp": ts})
		if r.Status != 200 {
			t.Fatalf("restore %s: %d %s", p, r.Status, r.Body)
		}
	}
	// One file first.
	restore("/data/a.txt", t1)
	if got := read("/data/a.txt"); got != "a1" {
		t.Errorf("a.txt after restoring the file = %q", got)
	}
	// Then the whole folder: b comes back, c goes.
	restore("/data", t1)
	if read("/data/a.txt") != "a1" || read("/data/b.txt") != "b1" {
		t.Errorf("after restoring the folder: a=%q b=%q", read("/data/a.txt"), read("/data/b.txt"))
	}
	if _, err := w.Dbfs.GetStatusByPath(ctx, "/data/c.txt"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("c.txt, created after the restore point, is still there: %v", err)
	}
	// A restore can be undone: back to now-ish brings c back.
	restore("/data", time.Now().UnixMilli())
	r := srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/tandem/dbfs/versions?path=/data/a.txt", nil)
	if r.Status != 200 {
		t.Fatalf("versions: %d %s", r.Status, r.Body)
	}
}

func TestExpiredVersionsAndHandlesArePurgedWithTheirBlocks(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	blocks := func() int {
		n := 0
		srv.Storage.List(ctx, "dbfs/", func(storage.ObjectInfo) error { n++; return nil })
		return n
	}
	w.Dbfs.WriteFile(ctx, "/v/f", []byte("one"))
	w.Dbfs.WriteFile(ctx, "/v/f", []byte("two"))
	w.Dbfs.WriteFile(ctx, "/v/f", []byte("three"))
	h, _ := w.Dbfs.Create(ctx, files.Create{Path: "/v/abandoned"})
	w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: "eA=="})
	if n := blocks(); n != 4 {
		t.Fatalf("%d blocks before the purge, want 4", n)
	}
	// Within the retention nothing goes.
	if err := srv.DBFS.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if n := blocks(); n != 4 {
		t.Fatalf("%d blocks after a purge within the retention, want 4", n)
	}
	// Later than the retention, the handle's idle time and the sweep's grace.
	srv.DBFS.Now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
	if err := srv.DBFS.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if n := blocks(); n != 1 {
		t.Errorf("%d blocks after the purge, want only the current file's", n)
	}
	if b, err := w.Dbfs.ReadFile(ctx, "/v/f"); err != nil || string(b) != "three" {
		t.Errorf("current file after the purge: %q %v", b, err)
	}
}
