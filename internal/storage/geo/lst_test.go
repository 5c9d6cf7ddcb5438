package geo

import (
	"testing"
	"time"
)

func TestLastSyncTime(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	old := now.Add(-3 * time.Second)
	cases := []struct {
		name        string
		oldest      time.Time
		pending     int
		initialSync bool
		want        time.Time
		ok          bool
	}{
		{"nothing waiting: in sync now", time.Time{}, 0, false, now, true},
		{"backlog: the oldest waiting change", old, 12, false, old, true},
		{"one change in flight", now.Add(-time.Millisecond), 1, false, now.Add(-time.Millisecond), true},
		{"initial sync: none yet", old, 100, true, time.Time{}, false},
		{"initial sync done but nothing waiting", time.Time{}, 0, true, time.Time{}, false},
	}
	for _, c := range cases {
		got, ok := LastSyncTime(c.oldest, c.pending, c.initialSync, now)
		if !got.Equal(c.want) || ok != c.ok {
			t.Errorf("%s: %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms, 1000 * ms}
	for n, w := range want {
		if got := Backoff(n, 100*ms, time.Second); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, w)
		}
	}
}
