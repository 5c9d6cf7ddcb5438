package storageaccount

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/audit/destination"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/local"
)

// putOnly hides local's Append, as an account without append blobs.
type putOnly struct{ storage.Backend }

func TestDeliverAppendsWholeLinesAndRepairsATornTail(t *testing.T) {
	for name, wrap := range map[string]func(*local.Backend) storage.Backend{
		"append blobs": func(b *local.Backend) storage.Backend { return b },
		"put only":     func(b *local.Backend) storage.Backend { return putOnly{b} },
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			lb, _ := local.New(root)
			ctx := context.Background()
			at := time.Date(2026, 5, 6, 7, 59, 0, 0, time.UTC)
			rec := func(cat string) *audit.Record { return audit.New("/SUBSCRIPTIONS/S/W", cat, "x", at) }
			d := &Destination{Account: wrap(lb), ResourceID: "/SUBSCRIPTIONS/S/W"}
			if err := d.Deliver(ctx, []*audit.Record{rec("jobs"), rec("clusters"), rec("jobs")}, at); err != nil {
				t.Fatal(err)
			}
			blob := filepath.Join(root, "insights-logs-jobs/resourceId=/SUBSCRIPTIONS/S/W/y=2026/m=05/d=06/h=07/m=00/PT1H.json")
			if n := lines(t, blob); n != 2 {
				t.Fatalf("%d lines in the jobs blob, want 2", n)
			}
			// A crash in the middle of an append leaves half a line; a new
			// process (a new Destination) cuts it before appending.
			f, _ := os.OpenFile(blob, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(`{"resourceId":"/SUBSCRIPTIONS/S/W","operationVers`)
			f.Close()
			d = &Destination{Account: wrap(lb), ResourceID: "/SUBSCRIPTIONS/S/W"}
			if err := d.Deliver(ctx, []*audit.Record{rec("jobs")}, at); err != nil {
				t.Fatal(err)
			}
			if n := lines(t, blob); n != 3 {
				t.Errorf("%d lines after repair, want 3", n)
			}
			// The next hour goes to the next blob.
			d.Deliver(ctx, []*audit.Record{rec("jobs")}, at.Add(time.Minute))
			if n := lines(t, strings.Replace(blob, "h=07", "h=08", 1)); n != 1 {
				t.Errorf("%d lines in the next hour's blob", n)
			}
		})
	}
}

func lines(t *testing.T, p string) int {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if _, err := destination.FromWire(sc.Bytes()); err != nil {
			t.Fatalf("line %d of %s is not a record: %v", n+1, p, err)
		}
		n++
	}
	return n
}
