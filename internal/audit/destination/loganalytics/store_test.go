package loganalytics

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/audit"
)

func TestStoreDeduplicatesByLogIDAndFilters(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var batch []*audit.Record
	for i := 0; i < 10; i++ {
		cat, user := "jobs", "ada@example.com"
		if i%2 == 1 {
			cat, user = "clusters", "grace@example.com"
		}
		r := audit.New("/R", cat, "create", t0.Add(time.Duration(i)*time.Second))
		r.Identity.Email = user
		r.Properties.RequestID = "req-" + string(rune('a'+i))
		r.Properties.RequestParams["name"] = "Nightly ETL " + string(rune('A'+i))
		batch = append(batch, r)
	}
	// The same batch twice (a redelivery after a crash) stores each record once.
	for k := 0; k < 2; k++ {
		if err := s.Deliver(ctx, batch, t0); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		q    Query
		want int
	}{
		{"all", Query{}, 10},
		{"category", Query{Category: "jobs"}, 5},
		{"user", Query{User: "grace@example.com"}, 5},
		{"operation name", Query{OperationName: "Microsoft.Databricks/clusters/create"}, 5},
		{"action name", Query{OperationName: "create"}, 10},
		{"request id", Query{RequestID: "req-c"}, 1},
		{"free text ignores case", Query{Text: "nightly etl c"}, 1},
		{"time window", Query{StartTime: t0.Add(2 * time.Second).UnixMilli(), EndTime: t0.Add(5 * time.Second).UnixMilli()}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n int
			q := c.q
			q.Limit = 3
			for {
				page, err := s.Find(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				n += len(page.Records)
				if page.NextPageToken == "" {
					break
				}
				q.PageToken = page.NextPageToken
			}
			if n != c.want {
				t.Errorf("%d records, want %d", n, c.want)
			}
		})
	}
	if _, err := s.Find(ctx, Query{PageToken: "garbage"}); err != ErrBadPageToken {
		t.Errorf("bad token: %v", err)
	}
	if n, _ := s.Prune(ctx, t0.Add(5*time.Second)); n != 5 {
		t.Errorf("pruned %d records, want 5", n)
	}
}
