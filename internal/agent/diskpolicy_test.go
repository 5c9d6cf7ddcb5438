package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

func TestDecideDisk(t *testing.T) {
	const mb = 1 << 20
	cfg := wire.ElasticDisk{FirstVolumeBytes: 100 * mb, VolumeBytes: 100 * mb, MaxVolumes: 3, FreeBelowBytes: 40 * mb}
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		st     diskState
		want   diskAction
		reason string
	}{
		{"plenty of free space", diskState{Volumes: 1, Size: 100 * mb, Free: 90 * mb}, diskKeep, ""},
		{"exactly at the threshold is enough", diskState{Volumes: 1, Size: 100 * mb, Free: 40 * mb}, diskKeep, ""},
		{"below the threshold: attach", diskState{Volumes: 1, Size: 100 * mb, Free: 39 * mb}, diskExpand, ""},
		{"full second volume: attach a third", diskState{Volumes: 2, Size: 200 * mb, Free: 0}, diskExpand, ""},
		{"at the maximum: say so", diskState{Volumes: 3, Size: 300 * mb, Free: 10 * mb}, diskRefuse, "maximum of 3 volumes"},
		{"at the maximum, already said", diskState{Volumes: 3, Size: 300 * mb, Free: 10 * mb, Refused: true}, diskKeep, ""},
		{"a failure moments ago: wait", diskState{Volumes: 1, Size: 100 * mb, Free: 1 * mb, LastFailure: now.Add(-2 * time.Second)}, diskKeep, ""},
		{"a failure a while ago: try again", diskState{Volumes: 1, Size: 100 * mb, Free: 1 * mb, LastFailure: now.Add(-diskRetryAfter)}, diskExpand, ""},
		{"free space back above: nothing, even at the maximum", diskState{Volumes: 3, Size: 300 * mb, Free: 200 * mb}, diskKeep, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, reason := decideDisk(cfg, c.st, now)
			if got != c.want || !strings.Contains(reason, c.reason) || (c.reason == "" && reason != "") {
				t.Fatalf("decideDisk = %v %q, want %v %q", got, reason, c.want, c.reason)
			}
		})
	}
}

func TestDiskDefaults(t *testing.T) {
	got := withDiskDefaults(wire.ElasticDisk{})
	want := wire.ElasticDisk{FirstVolumeBytes: 256 << 20, VolumeBytes: 256 << 20, MaxVolumes: 8, FreeBelowBytes: 128 << 20}
	if got != want {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
	set := wire.ElasticDisk{FirstVolumeBytes: 5, VolumeBytes: 7, MaxVolumes: 2, FreeBelowBytes: 1}
	if withDiskDefaults(set) != set {
		t.Fatal("set fields must stay")
	}
}
