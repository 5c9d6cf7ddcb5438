package agent

import (
	"fmt"
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
}

type diskAction int

const (
	diskKeep   diskAction = iota // enough free space, or nothing to do yet
	diskExpand                   // attach another volume
	diskRefuse                   // report DID_NOT_EXPAND_DISK with the reason
)

// diskRetryAfter spaces attempts after a failed expansion.
const diskRetryAfter = 10 * time.Second

// decideDisk says what to do about a node's scratch space: attach another
// volume when the free space falls below the threshold, unless the node
// has its maximum of volumes (then say so, once per shortage) or an
// attempt failed moments ago.
func decideDisk(cfg wire.ElasticDisk, st diskState, now time.Time) (diskAction, string) {
	if st.Free >= cfg.FreeBelowBytes {
		return diskKeep, ""
	}
	if st.Volumes >= cfg.MaxVolumes {
		if st.Refused {
			return diskKeep, ""
		}
		return diskRefuse, fmt.Sprintf("The node has its maximum of %d volumes (%s); %s free is below the %s threshold.",
			cfg.MaxVolumes, bytesText(st.Size), bytesText(st.Free), bytesText(cfg.FreeBelowBytes))
	}
	if !st.LastFailure.IsZero() && now.Sub(st.LastFailure) < diskRetryAfter {
		return diskKeep, ""
	}
	return diskExpand, ""
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
