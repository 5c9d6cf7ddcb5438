package dbfs_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/tandemdata/tandem/internal/dbfs"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// TestAppendAtIsIdempotentAndKeepsFewBlocks appends a log in small pieces,
// repeats appends as a writer that crashed before recording them would, and
// reads the file back whole through the API.
func TestAppendAtIsIdempotentAndKeepsFewBlocks(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	var want []byte
	at := int64(0)
	for i := 0; i < 50; i++ {
		piece := random(1000 + i)
		size, err := srv.DBFS.AppendAt(ctx, "dbfs:/logs/c1/driver/stdout", at, piece)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		want = append(want, piece...)
		if size != int64(len(want)) {
			t.Fatalf("append %d: size %d, want %d", i, size, len(want))
		}
		if i%7 == 3 {
			// The writer crashed after the append and before its cursor
			// moved; meanwhile its source grew.
			more := random(10)
			again, err := srv.DBFS.AppendAt(ctx, "dbfs:/logs/c1/driver/stdout", at, append(append([]byte(nil), piece...), more...))
			if err != nil {
				t.Fatalf("repeat append %d: %v", i, err)
			}
			want = append(want, more...)
			if again != int64(len(want)) {
				t.Fatalf("repeat append %d: size %d, want %d", i, again, len(want))
			}
		}
		at = int64(len(want))
	}
	r, err := w.Dbfs.Open(ctx, "/logs/c1/driver/stdout", 1) // files.FileModeRead
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "appended file", got, want)

	// A writer whose cursor is ahead of or far behind the file conflicts.
	if _, err := srv.DBFS.AppendAt(ctx, "/logs/c1/driver/stdout", at+5, []byte("x")); !errors.Is(err, dbfs.ErrAppendConflict) {
		t.Errorf("append past the end: %v", err)
	}
	if _, err := srv.DBFS.AppendAt(ctx, "/logs/c1/driver/stdout", 1, []byte("x")); !errors.Is(err, dbfs.ErrAppendConflict) {
		t.Errorf("append far behind: %v", err)
	}
	if _, err := srv.DBFS.AppendAt(ctx, "/logs/none", 3, []byte("x")); !errors.Is(err, dbfs.ErrAppendConflict) {
		t.Errorf("append to a missing file: %v", err)
	}
	// At 0 the file is replaced.
	if n, err := srv.DBFS.AppendAt(ctx, "/logs/c1/driver/stdout", 0, []byte("fresh")); err != nil || n != 5 {
		t.Fatalf("replace: %d, %v", n, err)
	}
	b, err := srv.DBFS.ReadFile(ctx, "dbfs:/logs/c1/driver/stdout", 1<<20)
	if err != nil || !bytes.Equal(b, []byte("fresh")) {
		t.Fatalf("after replace: %q, %v", b, err)
	}
	// Small appends were merged: the sweep reclaims what they replaced.
	if _, err := srv.DBFS.Sweep(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := blobCount(srv); n > 2 {
		t.Errorf("%d blobs left after the sweep; want the replaced file's one and the new one", n)
	}
}

var _ = servertest.Start
