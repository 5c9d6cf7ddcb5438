package audit

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

type memAppender struct{ recs []*Record }

func (m *memAppender) Append(_ context.Context, r *Record) error {
	m.recs = append(m.recs, r)
	return nil
}

func TestEmitWritesAResultRecordSharingTheRequestID(t *testing.T) {
	mem := &memAppender{}
	em := &Emitter{Appender: mem, ResourceID: "/R", Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}
	err := em.Emit(context.Background(), Event{Category: "clusters", Action: "createResult", RequestID: "req-1",
		Params: map[string]any{"cluster_id": "c1", "spark_env_vars": map[string]any{"password": "pw"}},
		Result: map[string]any{"cluster_id": "c1", "token": "dapi1"}})
	if err != nil {
		t.Fatal(err)
	}
	r := mem.recs[0]
	if r.OperationName != "Microsoft.Databricks/clusters/createResult" || r.Properties.RequestID != "req-1" ||
		r.Identity.Email != SystemUser || r.Properties.Response.StatusCode != 200 || r.Time != "2026-01-01T00:00:00.000Z" {
		t.Errorf("record = %+v", r)
	}
	if strings.Contains(r.Properties.RequestParams["spark_env_vars"], "pw") || strings.Contains(r.Properties.Response.Result, "dapi1") {
		t.Errorf("a secret reached the record: %+v", r.Properties)
	}
	// Without a request, the record gets its own id; a nil emitter drops events.
	em.Emit(context.Background(), Event{Category: "clusters", Action: "resize", Identity: "ada@example.com"})
	if r := mem.recs[1]; r.Properties.RequestID == "" || r.Identity.Email != "ada@example.com" {
		t.Errorf("record = %+v", r)
	}
	var none *Emitter
	if err := none.Emit(context.Background(), Event{}); err != nil {
		t.Error(err)
	}
}

func TestJournalRemovesOnlyFinishedSegments(t *testing.T) {
	dir := t.TempDir()
	j, _ := OpenJournal(dir)
	defer func() { j.Close() }()
	j.Append(context.Background(), rec(0))
	if err := j.RemoveSegment(1); err == nil {
		t.Error("removed the segment being written")
	}
	// Start a second segment by hand, as a roll-over would.
	j.Close()
	os.WriteFile(segmentName(dir, 2), nil, 0o600)
	j, _ = OpenJournal(dir)
	j.Append(context.Background(), rec(1))
	if n, _ := j.Count(Position{}); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
	if err := j.RemoveSegment(1); err != nil {
		t.Fatal(err)
	}
	recs, _, err := j.Read(Position{Segment: 1}, 10)
	if err != nil || len(recs) != 1 || recs[0].Properties.RequestParams["i"] != "1" {
		t.Errorf("read after removal: %d records, %v", len(recs), err)
	}
}
