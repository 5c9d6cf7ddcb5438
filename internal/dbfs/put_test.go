package dbfs_test

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"

	"github.com/tandemdata/tandem/internal/server/servertest"
)

// streamingPut sends a multipart put whose file part the test writes as it
// goes, as the legacy CLI's `fs cp` streams a file.
type streamingPut struct {
	form *multipart.Writer
	file io.Writer
	pw   *io.PipeWriter
	done chan putResult
}

type putResult struct {
	status int
	body   []byte
	err    error
}

func startPut(t *testing.T, srv *servertest.Server, path string, overwrite string) *streamingPut {
	t.Helper()
	pr, pw := io.Pipe()
	form := multipart.NewWriter(pw)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/2.0/dbfs/put", pr)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
	req.Header.Set("Content-Type", form.FormDataContentType())
	sp := &streamingPut{form: form, pw: pw, done: make(chan putResult, 1)}
	go func() {
		resp, err := (&http.Client{Transport: srv.Transport()}).Do(req)
		if err != nil {
			pr.CloseWithError(err)
			sp.done <- putResult{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sp.done <- putResult{status: resp.StatusCode, body: b}
	}()
	form.WriteField("path", path)
	if overwrite != "" {
		form.WriteField("overwrite", overwrite)
	}
	var err error
	if sp.file, err = form.CreateFormFile("file", "f.bin"); err != nil {
		t.Fatal(err)
	}
	return sp
}

func (sp *streamingPut) finish() putResult {
	sp.form.Close()
	sp.pw.Close()
	return <-sp.done
}

// eventually waits for cond, failing after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMultipartPutStreamsLargeFilesInBlocks(t *testing.T) {
	srv := servertest.Start(t)
	data := random(20<<20 + 3)
	sp := startPut(t, srv, "dbfs:/stream/f.bin", "True") // Python's str(True), as the legacy CLI sends it
	sp.file.Write(data)
	if r := sp.finish(); r.err != nil || r.status != 200 {
		t.Fatalf("multipart put: %d %s %v", r.status, r.body, r.err)
	}
	w := srv.SDK(srv.AdminToken)
	got, err := w.Dbfs.ReadFile(ctx, "/stream/f.bin")
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "read back", got, data)
	if n := blobCount(srv); n != 3 {
		t.Errorf("%d blocks for a 20 MB stream, want 3 of at most 8 MB", n)
	}
	if n := len(uploads(t, srv)); n != 0 {
		t.Errorf("%d uploads left after the put", n)
	}
	// Without overwrite an existing file is refused and kept.
	sp = startPut(t, srv, "/stream/f.bin", "False")
	sp.file.Write([]byte("other"))
	if r := sp.finish(); r.status != 400 || !bytes.Contains(r.body, []byte("RESOURCE_ALREADY_EXISTS")) {
		t.Errorf("put over a file without overwrite: %d %s", r.status, r.body)
	}
	got, _ = w.Dbfs.ReadFile(ctx, "/stream/f.bin")
	sameBytes(t, "after a refused put", got, data)
	if _, err := srv.DBFS.Sweep(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := blobCount(srv); n != 3 {
		t.Errorf("%d blobs after a refused put, want the file's 3", n)
	}
}

// A slow upload is not swept from under itself: its blocks are registered
// as they are written, so even a sweep with no grace at all keeps them.
func TestAStreamedPutKeepsItsBlocksThroughASweep(t *testing.T) {
	srv := servertest.Start(t)
	first, rest := random(17<<20), random(5<<20)
	sp := startPut(t, srv, "/slow/f.bin", "")
	sp.file.Write(first)
	eventually(t, "two blocks registered", func() bool {
		hs := uploads(t, srv)
		return len(hs) == 1 && hs[0].Blocks == 2
	})
	if _, err := srv.DBFS.Sweep(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := blobCount(srv); n < 2 {
		t.Fatalf("the sweep removed an upload's blocks: %d left", n)
	}
	sp.file.Write(rest)
	if r := sp.finish(); r.err != nil || r.status != 200 {
		t.Fatalf("multipart put: %d %s %v", r.status, r.body, r.err)
	}
	got, err := srv.SDK(srv.AdminToken).Dbfs.ReadFile(ctx, "/slow/f.bin")
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "read back", got, append(first, rest...))
}

func TestAnInterruptedStreamedPutLeavesNothing(t *testing.T) {
	srv := servertest.Start(t)
	sp := startPut(t, srv, "/cut/f.bin", "")
	sp.file.Write(random(9 << 20))
	eventually(t, "a block registered", func() bool {
		hs := uploads(t, srv)
		return len(hs) == 1 && hs[0].Blocks >= 1
	})
	sp.pw.CloseWithError(errors.New("the client gave up"))
	<-sp.done
	eventually(t, "the upload and its blocks removed", func() bool {
		return len(uploads(t, srv)) == 0 && blobCount(srv) == 0
	})
	if _, err := srv.SDK(srv.AdminToken).Dbfs.GetStatusByPath(ctx, "/cut/f.bin"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("an interrupted put left a file: %v", err)
	}
}

func TestAMultipartPutNeedsAGoodPath(t *testing.T) {
	srv := servertest.Start(t)
	for path, code := range map[string]string{"": "INVALID_PARAMETER_VALUE", "../x": "INVALID_PARAMETER_VALUE"} {
		sp := startPut(t, srv, path, "")
		sp.file.Write([]byte("data"))
		if r := sp.finish(); r.status != 400 || !bytes.Contains(r.body, []byte(code)) {
			t.Errorf("put to %q: %d %s", path, r.status, r.body)
		}
	}
	eventually(t, "nothing left", func() bool { return len(uploads(t, srv)) == 0 && blobCount(srv) == 0 })
}
