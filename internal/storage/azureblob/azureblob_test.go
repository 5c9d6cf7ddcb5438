package azureblob_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/azureblob"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
	"github.com/tandemdata/tandem/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var containers atomic.Int64

// New returns a backend on a fresh container of the test Azurite.
func newBackend(t *testing.T) storage.Backend {
	az := testenv.Azurite(t)
	b, err := azureblob.New(context.Background(), azureblob.Config{ServiceURL: az.URL, Account: az.Account, Key: az.Key,
		Container: fmt.Sprintf("test-%d", containers.Add(1)), BlockSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAzureBlobBackendBehaviour(t *testing.T) {
	storagetest.Run(t, newBackend, storagetest.Options{Writers: 4})
}
