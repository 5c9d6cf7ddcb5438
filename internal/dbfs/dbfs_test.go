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
	"net/http"
	"testing"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/files"

	"github.com/tandemdata/tandem/internal/dbfs"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

var ctx = context.Background()

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: got %d bytes that differ from the %d expected", what, len(got), len(want))
	}
}

// apiCode returns the HTTP status and error code of an SDK error.
func apiCode(err error) (int, string) {
	var ae *apierr.APIError
	if !errors.As(err, &ae) {
		return 0, fmt.Sprint(err)
	}
	return ae.StatusCode, ae.ErrorCode
}

// blobCount counts the DBFS blobs in the storage account.
func blobCount(srv *servertest.Server) int {
	n := 0
	srv.Storage.List(ctx, "dbfs/", func(storage.ObjectInfo) error { n++; return nil })
	return n
}

// uploads returns the uploads in progress.
func uploads(t *testing.T, srv *servertest.Server) []dbfs.Handle {
	t.Helper()
	var hs []dbfs.Handle
	err := srv.Store.View(ctx, func(tx store.Tx) error {
		var err error
		hs, err = store.List[dbfs.Handle](tx, "dbfs.handle", "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hs
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
	sameBytes(t, "ReadFile", got, data)
	st, err := w.Dbfs.GetStatusByPath(ctx, "/tmp/big.bin")
	if err != nil || st.FileSize != int64(len(data)) || st.IsDir || st.Path != "/tmp/big.bin" || st.ModificationTime == 0 {
		t.Fatalf("status = %+v, %v", st, err)
	}
	// Reads at an offset return exactly what was asked for, across blocks.
	r, err := w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/tmp/big.bin", Offset: 3<<20 - 7, Length: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	chunk, _ := base64.StdEncoding.DecodeString(r.Data)
	if r.BytesRead != 1<<20 || !bytes.Equal(chunk, data[3<<20-7:4<<20-7]) {
		t.Errorf("ranged read: %d bytes, equal %v", r.BytesRead, bytes.Equal(chunk, data[3<<20-7:4<<20-7]))
	}
	def, _ := w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/tmp/big.bin", Offset: 1})
	if def.BytesRead != 512<<10 {
		t.Errorf("read without a length: %d bytes, want the 0.5 MB default", def.BytesRead)
	}
	end, _ := w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/tmp/big.bin", Offset: int64(len(data)) - 10, Length: 100})
	if end.BytesRead != 10 {
		t.Errorf("read past the end: %d bytes", end.BytesRead)
	}
	eof, _ := w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/tmp/big.bin", Offset: int64(len(data)), Length: 100})
	if eof.BytesRead != 0 || eof.Data != "" {
		t.Errorf("read at EOF: %d bytes", eof.BytesRead)
	}
	list, err := w.Dbfs.ListAll(ctx, files.ListDbfsRequest{Path: "/tmp"})
	if err != nil || len(list) != 1 || list[0].Path != "/tmp/big.bin" || list[0].FileSize != int64(len(data)) {
		t.Errorf("list = %+v, %v", list, err)
	}
	// A file lists as itself, under the path asked for: that is how clients
	// tell a file from a directory.
	self, err := w.Dbfs.ListAll(ctx, files.ListDbfsRequest{Path: "/tmp/big.bin"})
	if err != nil || len(self) != 1 || self[0].Path != "/tmp/big.bin" || self[0].IsDir {
		t.Errorf("list of a file = %+v, %v", self, err)
	}
	// Every entry carries file_size, 0 for a directory: the legacy CLI
	// reads it on each one.
	raw := srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/dbfs/list?path=/", nil)
	if !bytes.Contains(raw.Body, []byte(`{"path":"/tmp","is_dir":true,"file_size":0,`)) {
		t.Errorf("list of / = %s", raw.Body)
	}
	if err := w.Dbfs.Move(ctx, files.Move{SourcePath: "/tmp", DestinationPath: "/moved/tmp"}); err != nil {
		t.Fatal(err)
	}
	got, err = w.Dbfs.ReadFile(ctx, "/moved/tmp/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "after moving the folder", got, data)
	if _, err := w.Dbfs.GetStatusByPath(ctx, "/tmp/big.bin"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("old path after move: %v", err)
	}
	if err := w.Dbfs.Delete(ctx, files.Delete{Path: "/moved", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Dbfs.GetStatusByPath(ctx, "/moved/tmp"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("after a recursive delete: %v", err)
	}
}

func TestSDKOpenStreamsFilesBothWaysAndOverwritesOnlyWhenAsked(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	data := random(5<<20 + 3)
	h, err := w.Dbfs.Open(ctx, "/open/f.bin", files.FileModeWrite)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(h, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	rh, err := w.Dbfs.Open(ctx, "/open/f.bin", files.FileModeRead)
	if err != nil {
		t.Fatal(err)
	}
	var back bytes.Buffer
	if _, err := io.Copy(&back, rh); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "Open for reading", back.Bytes(), data)

	// Without the overwrite flag an existing file is refused up front, with
	// the 400 the CLIs recognise; with it the file is replaced.
	_, err = w.Dbfs.Open(ctx, "/open/f.bin", files.FileModeWrite)
	if st, code := apiCode(err); !errors.Is(err, apierr.ErrResourceAlreadyExists) || st != 400 {
		t.Errorf("open an existing file without overwrite: %d %s", st, code)
	}
	if err := w.Dbfs.WriteFile(ctx, "/open/f.bin", []byte("small")); err != nil {
		t.Fatal(err)
	}
	if got, _ := w.Dbfs.ReadFile(ctx, "/open/f.bin"); string(got) != "small" {
		t.Errorf("after WriteFile over it: %q", got)
	}
	// A directory is never overwritten by a file.
	w.Dbfs.Mkdirs(ctx, files.MkDirs{Path: "/open/dir"})
	if _, err := w.Dbfs.Create(ctx, files.Create{Path: "/open/dir", Overwrite: true}); !errors.Is(err, apierr.ErrResourceAlreadyExists) {
		t.Errorf("create over a directory: %v", err)
	}
	// An empty file is a file of size 0.
	if err := w.Dbfs.WriteFile(ctx, "/open/empty", nil); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Dbfs.GetStatusByPath(ctx, "/open/empty"); err != nil || st.FileSize != 0 || st.IsDir {
		t.Errorf("empty file: %+v %v", st, err)
	}
}

func TestAnOverwriteAppearsAtCloseAndTheFirstCloseWins(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	if err := w.Dbfs.WriteFile(ctx, "/ow/f", []byte("old")); err != nil {
		t.Fatal(err)
	}
	h, err := w.Dbfs.Create(ctx, files.Create{Path: "/ow/f", Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: base64.StdEncoding.EncodeToString([]byte("new"))})
	if got, _ := w.Dbfs.ReadFile(ctx, "/ow/f"); string(got) != "old" {
		t.Errorf("before close: %q, want the old contents", got)
	}
	if err := w.Dbfs.Close(ctx, files.Close{Handle: h.Handle}); err != nil {
		t.Fatal(err)
	}
	if got, _ := w.Dbfs.ReadFile(ctx, "/ow/f"); string(got) != "new" {
		t.Errorf("after close: %q", got)
	}

	// Two uploads to a new path without overwrite: both may start, the
	// first to close makes the file, the second is refused and leaves it.
	a, err := w.Dbfs.Create(ctx, files.Create{Path: "/ow/race"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.Dbfs.Create(ctx, files.Create{Path: "/ow/race"})
	if err != nil {
		t.Fatal(err)
	}
	w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: a.Handle, Data: base64.StdEncoding.EncodeToString([]byte("a"))})
	w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: b.Handle, Data: base64.StdEncoding.EncodeToString([]byte("b"))})
	if err := w.Dbfs.Close(ctx, files.Close{Handle: b.Handle}); err != nil {
		t.Fatal(err)
	}
	err = w.Dbfs.Close(ctx, files.Close{Handle: a.Handle})
	if st, _ := apiCode(err); !errors.Is(err, apierr.ErrResourceAlreadyExists) || st != 400 {
		t.Errorf("second close: %v", err)
	}
	if got, _ := w.Dbfs.ReadFile(ctx, "/ow/race"); string(got) != "b" {
		t.Errorf("race winner: %q", got)
	}
}

func TestDBFSErrorsAreWhatClientsExpect(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	if err := w.Dbfs.WriteFile(ctx, "/a/f.txt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, is error, status int, code string) {
		t.Helper()
		st, c := apiCode(err)
		if !errors.Is(err, is) || st != status || c != code {
			t.Errorf("%s: %d %s (%v); want %d %s", what, st, c, err, status, code)
		}
	}
	const rae, rdne, ipv = "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"

	_, err := w.Dbfs.Create(ctx, files.Create{Path: "/a/f.txt"})
	check("create over a file", err, apierr.ErrResourceAlreadyExists, 400, rae)
	_, err = w.Dbfs.Create(ctx, files.Create{Path: "/a/f.txt/under", Overwrite: true})
	check("create under a file", err, apierr.ErrResourceAlreadyExists, 400, rae)
	err = w.Dbfs.Put(ctx, files.Put{Path: "/a/f.txt", Contents: "eQ=="})
	check("put over a file", err, apierr.ErrResourceAlreadyExists, 400, rae)
	err = w.Dbfs.Mkdirs(ctx, files.MkDirs{Path: "/a/f.txt/sub"})
	check("mkdirs across a file", err, apierr.ErrResourceAlreadyExists, 400, rae)
	w.Dbfs.WriteFile(ctx, "/a/g.txt", []byte("g"))
	err = w.Dbfs.Move(ctx, files.Move{SourcePath: "/a/g.txt", DestinationPath: "/a/f.txt"})
	check("move onto a file", err, apierr.ErrResourceAlreadyExists, 400, rae)
	err = w.Dbfs.Move(ctx, files.Move{SourcePath: "/a/g.txt", DestinationPath: "/a"})
	check("move onto a directory", err, apierr.ErrResourceAlreadyExists, 400, rae)

	_, err = w.Dbfs.GetStatusByPath(ctx, "/nope")
	check("get-status of a missing path", err, apierr.ErrResourceDoesNotExist, 404, rdne)
	_, err = w.Dbfs.ListAll(ctx, files.ListDbfsRequest{Path: "/nope"})
	check("list of a missing path", err, apierr.ErrResourceDoesNotExist, 404, rdne)
	_, err = w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/nope"})
	check("read of a missing path", err, apierr.ErrResourceDoesNotExist, 404, rdne)
	err = w.Dbfs.Delete(ctx, files.Delete{Path: "/nope"})
	check("delete of a missing path", err, apierr.ErrResourceDoesNotExist, 404, rdne)
	err = w.Dbfs.Move(ctx, files.Move{SourcePath: "/nope", DestinationPath: "/nope2"})
	check("move of a missing path", err, apierr.ErrResourceDoesNotExist, 404, rdne)
	err = w.Dbfs.Move(ctx, files.Move{SourcePath: "/nope", DestinationPath: "/nope"})
	check("move of a missing path onto itself", err, apierr.ErrResourceDoesNotExist, 404, rdne)

	err = w.Dbfs.Delete(ctx, files.Delete{Path: "/a"})
	check("non-recursive delete of a directory", err, apierr.ErrBadRequest, 400, "IO_ERROR")
	if _, err := w.Dbfs.GetStatusByPath(ctx, "/a/f.txt"); err != nil {
		t.Errorf("a refused delete removed something: %v", err)
	}
	err = w.Dbfs.Move(ctx, files.Move{SourcePath: "/a", DestinationPath: "/a/inside"})
	check("move into itself", err, apierr.ErrInvalidParameterValue, 400, ipv)

	_, err = w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/a/f.txt", Length: 1<<20 + 1})
	check("oversized read", err, apierr.ErrBadRequest, 400, "MAX_READ_SIZE_EXCEEDED")
	_, err = w.Dbfs.Read(ctx, files.ReadDbfsRequest{Path: "/a"})
	check("read of a directory", err, apierr.ErrInvalidParameterValue, 400, ipv)
	for _, q := range []string{"offset=-1", "length=-1"} {
		r := srv.Do(srv.AdminToken, http.MethodGet, "/api/2.0/dbfs/read?path=/a/f.txt&"+q, nil)
		if r.Status != 400 || r.JSON(t)["error_code"] != ipv {
			t.Errorf("read with %s: %d %s", q, r.Status, r.Body)
		}
	}

	h, _ := w.Dbfs.Create(ctx, files.Create{Path: "/a/h.txt"})
	err = w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: base64.StdEncoding.EncodeToString(random(1<<20 + 1))})
	check("oversized block", err, apierr.ErrBadRequest, 400, "MAX_BLOCK_SIZE_EXCEEDED")
	err = w.Dbfs.Put(ctx, files.Put{Path: "/a/big", Contents: base64.StdEncoding.EncodeToString(random(1<<20 + 1))})
	check("oversized JSON put", err, apierr.ErrBadRequest, 400, "MAX_BLOCK_SIZE_EXCEEDED")
	err = w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: 987654, Data: "eA=="})
	check("unknown handle", err, apierr.ErrResourceDoesNotExist, 404, rdne)
	err = w.Dbfs.Close(ctx, files.Close{Handle: 987654})
	check("close of an unknown handle", err, apierr.ErrResourceDoesNotExist, 404, rdne)

	for bad, why := range map[string]string{"relative/x": "absolute", "/a/../b": "'..'", "/a\x00b": "control character", "/a\nb": "control character"} {
		r := srv.Do(srv.AdminToken, http.MethodPost, "/api/2.0/dbfs/mkdirs", map[string]string{"path": bad})
		if r.Status != 400 || r.JSON(t)["error_code"] != ipv || !bytes.Contains(r.Body, []byte(why)) {
			t.Errorf("mkdirs %q: %d %s; want 400 %s naming %q", bad, r.Status, r.Body, ipv, why)
		}
	}
}

func TestOnlyTheCreatorMayUseAHandle(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	h, err := w.Dbfs.Create(ctx, files.Create{Path: "/mine/f"})
	if err != nil {
		t.Fatal(err)
	}
	other := srv.SDK(srv.NewUser("other@example.com", false).Token)
	// Another user, even one allowed everything else in DBFS, sees no such
	// handle: neither adding to it nor closing it works or reveals it.
	if err := other.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: "eA=="}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("another user's add-block: %v", err)
	}
	if err := other.Dbfs.Close(ctx, files.Close{Handle: h.Handle}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("another user's close: %v", err)
	}
	if err := other.Dbfs.WriteFile(ctx, "/theirs/f", []byte("ok")); err != nil {
		t.Errorf("a non-admin user cannot use DBFS: %v", err)
	}
	if err := w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: "eA=="}); err != nil {
		t.Fatal(err)
	}
	if err := w.Dbfs.Close(ctx, files.Close{Handle: h.Handle}); err != nil {
		t.Fatal(err)
	}
	if got, _ := other.Dbfs.ReadFile(ctx, "/mine/f"); string(got) != "x" {
		t.Errorf("another user reads %q; DBFS has no per-file access control", got)
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
	if _, err := w.Dbfs.GetStatusByPath(ctx, "/up"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("parent of an unclosed upload visible: %v", err)
	}
	srv.Close()
	srv = servertest.Start(t, servertest.WithDataDir(dir))
	w = srv.SDK(srv.AdminToken)
	if _, err := w.Dbfs.GetStatusByPath(ctx, "/up/file.bin"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("file visible after a restart, before close: %v", err)
	}
	// The upload was kept: it goes on where it stopped.
	if err := w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: base64.StdEncoding.EncodeToString(part2)}); err != nil {
		t.Fatalf("add-block after a restart: %v", err)
	}
	if err := w.Dbfs.Close(ctx, files.Close{Handle: h.Handle}); err != nil {
		t.Fatal(err)
	}
	got, err := w.Dbfs.ReadFile(ctx, "/up/file.bin")
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "after close", got, append(part1, part2...))
	if err := w.Dbfs.Close(ctx, files.Close{Handle: h.Handle}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("closing twice: %v", err)
	}
	if n := len(uploads(t, srv)); n != 0 {
		t.Errorf("%d uploads left after close", n)
	}
}

func TestAnIdleHandleExpires(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	h, err := w.Dbfs.Create(ctx, files.Create{Path: "/idle/f"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: "eA=="}); err != nil {
		t.Fatal(err)
	}
	// Make the handle's last use eleven minutes old.
	_, err = srv.Store.Update(ctx, func(tx store.Tx) error {
		key := fmt.Sprint(h.Handle)
		hd, err := store.Get[dbfs.Handle](tx, "dbfs.handle", key)
		if err != nil {
			return err
		}
		hd.LastUsed = tx.Now().Add(-dbfs.HandleIdle).UnixMilli() - 60_000
		return store.Put(tx, "dbfs.handle", key, hd)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Dbfs.AddBlock(ctx, files.AddBlock{Handle: h.Handle, Data: "eA=="}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("add-block to an idle handle: %v", err)
	}
	if err := w.Dbfs.Close(ctx, files.Close{Handle: h.Handle}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("close of an idle handle: %v", err)
	}
	// The purge removes it with its block.
	if err := srv.DBFS.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(uploads(t, srv)); n != 0 {
		t.Errorf("%d uploads left after the purge", n)
	}
	if _, err := srv.DBFS.Sweep(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := blobCount(srv); n != 0 {
		t.Errorf("%d blobs left of an expired upload", n)
	}
	if _, err := w.Dbfs.GetStatusByPath(ctx, "/idle/f"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("an expired upload became a file: %v", err)
	}
}
