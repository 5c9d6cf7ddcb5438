package storage_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/local"
)

func TestFSViewOfABackendPassesFstest(t *testing.T) {
	b, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"logs/a/PT1H.json", "logs/b/PT1H.json", "logs/top.txt", "root.txt"} {
		if err := b.Put(ctx, n, strings.NewReader("contents of "+n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fstest.TestFS(storage.FS(ctx, b), "logs/a/PT1H.json", "logs/b/PT1H.json", "logs/top.txt", "root.txt"); err != nil {
		t.Fatal(err)
	}
}
