package replication

import (
	"testing"
	"time"
)

func TestComputeLag(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	cases := []struct {
		name string
		link Link
		now  time.Time
		want Lag
	}{
		{"never reached the leader", Link{Started: t0}, at(12), Lag{Seconds: 12}},
		{"caught up, poll in flight", Link{Started: t0, Applied: 50, AppliedTime: at(1), LeaderSeq: 50, LastContact: at(10), PollStarted: at(10), Wait: 5 * time.Second},
			at(13), Lag{LinkUp: true}},
		{"caught up and idle for an hour: the long poll keeps it current", Link{Started: t0, Applied: 50, AppliedTime: at(1), LeaderSeq: 50, LastContact: at(3600), PollStarted: at(3600), Wait: 5 * time.Second},
			at(3601), Lag{LinkUp: true}},
		{"behind: age of the newest applied change", Link{Started: t0, Applied: 40, AppliedTime: at(9.5), LeaderSeq: 50, LastContact: at(10), Wait: 5 * time.Second},
			at(10.25), Lag{Changes: 10, Seconds: 0.75, LinkUp: true}},
		{"last call failed: at least the time since the last answer", Link{Started: t0, Applied: 50, AppliedTime: at(9), LeaderSeq: 50, LastContact: at(10), Failing: true, Wait: 5 * time.Second},
			at(25), Lag{Seconds: 15}},
		{"poll overdue (a blocked port hangs): the link counts as down", Link{Started: t0, Applied: 50, AppliedTime: at(9), LeaderSeq: 50, LastContact: at(10), PollStarted: at(10), Wait: 5 * time.Second},
			at(19), Lag{Seconds: 9}},
		{"poll late but within slack", Link{Started: t0, Applied: 50, AppliedTime: at(9), LeaderSeq: 50, LastContact: at(10), PollStarted: at(10), Wait: 5 * time.Second},
			at(17.5), Lag{LinkUp: true}},
		{"behind and down: the larger bound", Link{Started: t0, Applied: 40, AppliedTime: at(2), LeaderSeq: 50, LastContact: at(10), Failing: true, Wait: 5 * time.Second},
			at(12), Lag{Changes: 10, Seconds: 10}},
		{"leader rewound below us (never negative)", Link{Started: t0, Applied: 60, LeaderSeq: 50, LastContact: at(10), Wait: 5 * time.Second},
			at(11), Lag{LinkUp: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ComputeLag(c.link, c.now); got != c.want {
				t.Errorf("ComputeLag = %+v, want %+v", got, c.want)
			}
		})
	}
}
