package local_test

import (
	"testing"

	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/local"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
)

func TestLocalBackendBehaviour(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, err := local.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
