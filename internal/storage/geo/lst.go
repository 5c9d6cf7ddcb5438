package geo

import "time"

// LastSyncTime is the time up to which every change is in the secondary:
// the oldest change not yet shipped (in flight or waiting) bounds it, and
// with none waiting the secondary is in sync now. While the initial sync of
// a newly geo-replicated account runs there is no Last Sync Time yet
// (Azure reports none either).
func LastSyncTime(oldestPending time.Time, pending int, initialSync bool, now time.Time) (time.Time, bool) {
	if initialSync {
		return time.Time{}, false
	}
	if pending == 0 {
		return now, true
	}
	return oldestPending, true
}

// Backoff is the wait before retry n (0-based) of a failed shipment:
// doubling from min, capped at max.
func Backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
