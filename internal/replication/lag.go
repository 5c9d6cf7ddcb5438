package replication

import "time"

// Link is what the follower knows about its link to the leader at a moment.
type Link struct {
	// Started is when the follower started following.
	Started time.Time
	// Applied is the local store's last sequence number and AppliedTime the
	// commit time of that change on the leader.
	Applied     int64
	AppliedTime time.Time
	// LeaderSeq is the leader's newest sequence number at LastContact, the
	// end of the last successful call.
	LeaderSeq   int64
	LastContact time.Time
	// PollStarted is when the call in flight began (zero when none is).
	PollStarted time.Time
	// Wait is how long the leader may hold a call when it has nothing new.
	Wait time.Duration
	// Failing is set when the last call failed.
	Failing bool
}

// Lag is how far a follower is behind its leader: the changes committed on
// the leader and not applied here, and the age of the oldest of them, which
// is what a failover at this moment would lose (the recovery point).
type Lag struct {
	Changes int64   `json:"changes"`
	Seconds float64 `json:"seconds"`
	// LinkUp is false when the leader has not answered as it should: the
	// figures are then bounds (no news since LastContact).
	LinkUp bool `json:"link_up"`
}

// slack is how late an answer may be before the link counts as down.
const slack = 3 * time.Second

// ComputeLag works out the lag at now. It is pure.
//
// While the link is up, the follower holds a long poll that the leader
// answers at once when it commits, so the only changes it does not know of
// are those in flight: the lag is the age of the oldest known unapplied
// change (bounded by the newest applied one's commit time), or zero. When
// the link is down (the last call failed, or the call in flight is overdue:
// a cut link often hangs rather than fails), anything committed since the
// last contact may be missing: the lag is at least the time since then.
func ComputeLag(l Link, now time.Time) Lag {
	lag := Lag{Changes: max(l.LeaderSeq-l.Applied, 0)}
	if l.LastContact.IsZero() {
		lag.Seconds = now.Sub(l.Started).Seconds()
		return lag
	}
	overdue := !l.PollStarted.IsZero() && now.Sub(l.PollStarted) > l.Wait+slack
	lag.LinkUp = !l.Failing && !overdue
	behind := 0.0
	if lag.Changes > 0 {
		since := l.AppliedTime
		if since.IsZero() || since.After(l.LastContact) {
			since = l.LastContact
		}
		behind = now.Sub(since).Seconds()
	}
	if !lag.LinkUp {
		behind = max(behind, now.Sub(l.LastContact).Seconds())
	}
	lag.Seconds = max(behind, 0)
	return lag
}
