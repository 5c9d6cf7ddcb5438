package storageaccount

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/audit/destination"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/account"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

// readCounter counts the bytes read from the account it wraps, keeping
// its Append.
type readCounter struct {
	*account.Account
	read atomic.Int64
}

func (c *readCounter) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	r, err := c.Account.Get(ctx, name, off, n)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(r)
	r.Close()
	c.read.Add(int64(len(b)))
	return io.NopCloser(bytes.NewReader(b)), err
}

func openAccount(t *testing.T, set account.Settings) *account.Account {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(context.Background(), filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ring, err := keys.OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	acc, err := account.Open(context.Background(), account.Options{Name: "root", Dir: filepath.Join(dir, "storage"), Store: st, Keys: ring, Defaults: set})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acc.Close() })
	return acc
}

// TestDeliverToTheStorageAccountAppends delivers to the real storage
// account (double encryption, ZRS): it takes the account's Append, so a
// batch reads nothing of the hour's blob, and the torn-tail repair still
// works through the account.
func TestDeliverToTheStorageAccountAppends(t *testing.T) {
	acc := openAccount(t, account.Settings{Redundancy: account.ZRS,
		Encryption: account.Encryption{KeySource: account.KeySourcePlatform, InfrastructureEncryption: true}})
	ctx := context.Background()
	rc := &readCounter{Account: acc}
	var _ Appender = rc
	at := time.Date(2026, 5, 6, 7, 10, 0, 0, time.UTC)
	rec := func() *audit.Record { return audit.New("/SUBSCRIPTIONS/S/W", "jobs", "x", at) }
	d := &Destination{Account: rc, ResourceID: "/SUBSCRIPTIONS/S/W"}
	blob := BlobName("/SUBSCRIPTIONS/S/W", "jobs", at)
	for i := 0; i < 200; i++ {
		batch := make([]*audit.Record, 5)
		for k := range batch {
			batch[k] = rec()
		}
		if err := d.Deliver(ctx, batch, at); err != nil {
			t.Fatal(err)
		}
	}
	if n := rc.read.Load(); n > 0 {
		t.Errorf("200 deliveries read %d bytes of the account: the blob is re-read", n)
	}
	if n := countLines(t, acc, blob); n != 1000 {
		t.Fatalf("%d lines in the blob, want 1000", n)
	}
	// A torn tail (a crash of an account without whole appends, or a
	// copy in from elsewhere) is cut by the next process before it appends.
	info, _ := acc.Stat(ctx, blob)
	if err := acc.Append(ctx, blob, strings.NewReader(`{"resourceId":"/SUBSCRIPTIONS/S/W","operationVers`)); err != nil {
		t.Fatal(err)
	}
	d = &Destination{Account: rc, ResourceID: "/SUBSCRIPTIONS/S/W"}
	rc.read.Store(0)
	if err := d.Deliver(ctx, []*audit.Record{rec()}, at); err != nil {
		t.Fatal(err)
	}
	if n := countLines(t, acc, blob); n != 1001 {
		t.Fatalf("%d lines after the repair, want 1001", n)
	}
	if read := rc.read.Load(); read < info.Size {
		t.Errorf("the repair read %d bytes of %d", read, info.Size)
	}
	// The next batches append again without reading.
	rc.read.Store(0)
	for i := 0; i < 10; i++ {
		if err := d.Deliver(ctx, []*audit.Record{rec()}, at); err != nil {
			t.Fatal(err)
		}
	}
	if n := rc.read.Load(); n > 0 {
		t.Errorf("after the repair, deliveries read %d bytes", n)
	}
	if n := countLines(t, acc, blob); n != 1011 {
		t.Fatalf("%d lines, want 1011", n)
	}
}

func countLines(t *testing.T, b storage.Backend, name string) int {
	t.Helper()
	r, err := b.Get(context.Background(), name, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	all, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range bytes.Split(bytes.TrimSuffix(all, []byte("\n")), []byte("\n")) {
		if _, err := destination.FromWire(line); err != nil {
			t.Fatalf("line %d is not a record: %v", n+1, err)
		}
		n++
	}
	return n
}
