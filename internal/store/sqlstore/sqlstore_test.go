package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
	"github.com/tandemdata/tandem/internal/store/storetest"
	"github.com/tandemdata/tandem/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func open(t *testing.T, dsn string) store.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open(%s): %v", dsn, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLite(t *testing.T) {
	paths := map[store.Store]string{}
	storetest.Run(t,
		func(t *testing.T) store.Store {
			p := filepath.Join(t.TempDir(), "meta.db")
			s := open(t, p)
			paths[s] = p
			return s
		},
		func(t *testing.T, s store.Store) store.Store {
			s.Close()
			return open(t, paths[s])
		})
}

func TestPostgres(t *testing.T) {
	urls := map[store.Store]string{}
	storetest.Run(t,
		func(t *testing.T) store.Store {
			u := testenv.Postgres(t)
			s := open(t, u)
			urls[s] = u
			return s
		},
		func(t *testing.T, s store.Store) store.Store {
			s.Close()
			return open(t, urls[s])
		})
}
