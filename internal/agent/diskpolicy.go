package agent

import (
	"fmt"
	"math"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// diskState is what the elastic disk watcher knows of a node's scratch
// space at one moment.
type diskState struct {
	Volumes int   // attached so far, the first included
	Size    int64 // capacity of the scratch filesystem
	Free    int64 // space left in it
	// Refused: DID_NOT_EXPAND_DISK was reported since the free space was
	// last above the threshold (it is reported once per shortage).
	Refused bool
	// LastFailure is when an expansion last failed (zero: never).
	LastFailure time.Time
	// Rate is how fast the space has been filling lately, in bytes per
	// second: the fastest recent sample, decaying with diskRateDecay.
	Rate float64
	// SampleAt and SampleUsed are the last sample the rate was taken
	// from.
	SampleAt   time.Time
	SampleUsed int64
}

type diskAction int

const (
	diskKeep   diskAction = iota // enough free space, or nothing to do yet
	diskExpand                   // attach another volume
	diskRefuse                   // report DID_NOT_EXPAND_DISK with the reason
)

// diskRetryAfter spaces attempts after a failed expansion.
const diskRetryAfter = 10 * time.Second

// The watcher keeps, beyond the threshold, as much free space as the
// recent filling rate would use in diskLookahead: a shuffle writing
// hundreds of MB/s fills a fixed margin between two looks. The rate is
// sampled at most every diskMinSample and a burst is remembered for about
// diskRateDecay, so a job that pauses between stages finds the space it
// last needed.
const (
	diskLookahead = 500 * time.Millisecond
	diskMinSample = 50 * time.Millisecond
	diskRateDecay = time.Second
)

// observeDisk takes a look at the scratch filesystem into the state: its
// size and free space, and the filling rate.
func observeDisk(st diskState, size, free int64, now time.Time) diskState {
	st.Size, st.Free = size, free
	used := size - free
	switch dt := now.Sub(st.SampleAt); {
	case st.SampleAt.IsZero():
		st.SampleAt, st.SampleUsed = now, used
	case dt >= diskMinSample:
		r := max(0, float64(used-st.SampleUsed)) / dt.Seconds()
		st.Rate = max(r, st.Rate*math.Exp(-dt.Seconds()/diskRateDecay.Seconds()))
		if st.Rate < 1 {
			st.Rate = 0
		}
		st.SampleAt, st.SampleUsed = now, used
	}
	return st
}

// decideDisk says what to do about a node's scratch space, and how many
// volumes to attach: enough that the free space is back above the
// threshold plus what the recent filling rate would use in
// diskLookahead, as far as the maximum allows. At the maximum, a free
// space below the threshold is reported (once per shortage); after a
// failed attempt, the next waits diskRetryAfter.
func decideDisk(cfg wire.ElasticDisk, st diskState, now time.Time) (diskAction, int, string) {
	want := cfg.FreeBelowBytes + int64(st.Rate*diskLookahead.Seconds())
	if st.Free >= want {
		return diskKeep, 0, ""
	}
	if st.Volumes >= cfg.MaxVolumes {
		if st.Refused || st.Free >= cfg.FreeBelowBytes {
			return diskKeep, 0, ""
		}
		return diskRefuse, 0, fmt.Sprintf("The node has its maximum of %d volumes (%s); %s free is below the %s threshold.",
			cfg.MaxVolumes, bytesText(st.Size), bytesText(st.Free), bytesText(cfg.FreeBelowBytes))
	}
	if !st.LastFailure.IsZero() && now.Sub(st.LastFailure) < diskRetryAfter {
		return diskKeep, 0, ""
	}
	n := int((want - st.Free + cfg.VolumeBytes - 1) / cfg.VolumeBytes)
	return diskExpand, min(max(n, 1), cfg.MaxVolumes-st.Volumes), ""
}

// withDiskDefaults fills an elastic disk configuration's zero fields.
func withDiskDefaults(c wire.ElasticDisk) wire.ElasticDisk {
	if c.VolumeBytes <= 0 {
		c.VolumeBytes = 256 << 20
	}
	if c.FirstVolumeBytes <= 0 {
		c.FirstVolumeBytes = c.VolumeBytes
	}
	if c.MaxVolumes <= 0 {
		c.MaxVolumes = 8
	}
	if c.FreeBelowBytes <= 0 {
		c.FreeBelowBytes = c.VolumeBytes / 2
	}
	return c
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// volumesText says "a 64 MiB volume" or "3 volumes of 64 MiB".
func volumesText(n int, size int64) string {
	if n == 1 {
		return "a " + bytesText(size) + " volume"
	}
	return fmt.Sprintf("%d volumes of %s", n, bytesText(size))
}
