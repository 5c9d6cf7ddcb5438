package delivery

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/audit"
)

// flaky is a destination that refuses its first failures batches.
type flaky struct {
	mu       sync.Mutex
	failures int
	got      map[string]int
}

func (f *flaky) Deliver(ctx context.Context, recs []*audit.Record, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		return errors.New("destination is down")
	}
	for _, r := range recs {
		f.got[r.Properties.LogID]++
	}
	return nil
}

func (f *flaky) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func appendN(t *testing.T, j *audit.Journal, category string, n int) []string {
	var ids []string
	for i := 0; i < n; i++ {
		r := audit.New("/R", category, "x", time.Now())
		if err := j.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.Properties.LogID)
	}
	return ids
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoopRetriesAFailingDestinationAndResumesFromItsCursor(t *testing.T) {
	dir := t.TempDir()
	j, err := audit.OpenJournal(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	dest := &flaky{failures: 3, got: map[string]int{}}
	cursor := filepath.Join(dir, "cursor")
	newLoop := func() *Loop {
		return &Loop{ID: "s/k", Setting: "s", Kind: "k", Journal: j, Dest: dest, CursorFile: cursor,
			Accept: func(r *audit.Record) bool { return r.Category == "jobs" }, MaxBackoff: 20 * time.Millisecond, Tick: 10 * time.Millisecond}
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := newLoop()
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	jobs := appendN(t, j, "jobs", 20)
	appendN(t, j, "clusters", 5)
	waitFor(t, func() bool { return dest.count() == 20 })
	// The loop records a delivery after the destination acknowledged it.
	waitFor(t, func() bool { return l.Status().Delivered == 20 })
	st := l.Status()
	if st.LastError != "destination is down" || st.LastSuccessTime == 0 || st.Delivered != 20 {
		t.Errorf("status = %+v", st)
	}
	waitFor(t, func() bool { return l.Position() == j.End() })
	cancel()
	<-done

	// A new loop (a restarted server) resumes after what was delivered.
	more := appendN(t, j, "jobs", 5)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	l = newLoop()
	go l.Run(ctx)
	waitFor(t, func() bool { return dest.count() == 25 })
	for _, id := range append(jobs, more...) {
		if dest.got[id] != 1 {
			t.Errorf("record %s delivered %d times", id, dest.got[id])
		}
	}
	if n, _ := j.Count(audit.Position{}); n != 30 {
		t.Errorf("journal counts %d records, want 30", n)
	}
}
