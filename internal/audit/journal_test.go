package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func rec(i int) *Record {
	r := New("/R", "workspace", "mkdirs", time.Now())
	r.Properties.RequestParams["i"] = fmt.Sprint(i)
	return r
}

func TestJournalAppendsConcurrentlyAndReadsBackInOrder(t *testing.T) {
	j, err := OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := j.Append(context.Background(), rec(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	recs, next, err := j.Read(Position{}, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 800 {
		t.Fatalf("read %d records, want 800", len(recs))
	}
	if next != j.End() {
		t.Errorf("next %+v, end %+v", next, j.End())
	}
	more, _, _ := j.Read(next, 10)
	if len(more) != 0 {
		t.Errorf("read past the end: %d", len(more))
	}
	// Reading in small pages visits each record once.
	seen := map[string]bool{}
	pos := Position{}
	for {
		page, n, err := j.Read(pos, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if seen[r.Properties.LogID] {
				t.Fatalf("record %s read twice", r.Properties.LogID)
			}
			seen[r.Properties.LogID] = true
		}
		pos = n
	}
	if len(seen) != 800 {
		t.Errorf("paged read saw %d records", len(seen))
	}
}

func TestJournalCutsATornRecordOnOpen(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := j.Append(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	// A crash in the middle of a write leaves half a line.
	f, _ := os.OpenFile(segmentName(dir, 1), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"resourceId":"/R","operationVers`)
	f.Close()

	j, err = OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Append(context.Background(), rec(3)); err != nil {
		t.Fatal(err)
	}
	recs, _, err := j.Read(Position{}, 100)
	if err != nil {
		t.Fatalf("read after recovery: %v", err)
	}
	if len(recs) != 4 || recs[3].Properties.RequestParams["i"] != "3" {
		t.Errorf("after recovery read %d records", len(recs))
	}
}

func TestJournalRollsSegmentsAndReadsAcrossThem(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	// Force small segments by writing past SegmentSize with big records.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 'a'
	}
	n := SegmentSize/(1<<20) + 3
	for i := 0; i < n; i++ {
		r := rec(i)
		r.Properties.RequestParams["pad"] = string(big)
		if err := j.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := segments(dir)
	if len(segs) < 2 {
		t.Fatalf("%d segments, want a roll-over", len(segs))
	}
	recs, _, err := j.Read(Position{}, 1000)
	if err != nil || len(recs) != n {
		t.Fatalf("read %d records across segments, %v; want %d", len(recs), err, n)
	}
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%016d.jsonl", 2))); err != nil {
		t.Error(err)
	}
}

func TestJournalAppendAfterCloseFails(t *testing.T) {
	j, _ := OpenJournal(t.TempDir())
	j.Close()
	if err := j.Append(context.Background(), rec(0)); err != ErrClosed {
		t.Errorf("Append after Close = %v", err)
	}
}

func TestJournalSegmentsStayPlainJSONLinesWhileOpen(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := 0; i < 10; i++ {
		if err := j.Append(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(segmentName(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != j.End().Offset || b[len(b)-1] != '\n' {
		t.Fatalf("segment holds %d bytes, journal end is %d: preallocation must not show", len(b), j.End().Offset)
	}
}
