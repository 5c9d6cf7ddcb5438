package agent

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

func TestDecideDisk(t *testing.T) {
	const mb = 1 << 20
	cfg := wire.ElasticDisk{FirstVolumeBytes: 100 * mb, VolumeBytes: 100 * mb, MaxVolumes: 3, FreeBelowBytes: 40 * mb}
	big := cfg
	big.MaxVolumes = 8
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		cfg     wire.ElasticDisk
		st      diskState
		want    diskAction
		volumes int
		reason  string
	}{
		{"plenty of free space", cfg, diskState{Volumes: 1, Size: 100 * mb, Free: 90 * mb}, diskKeep, 0, ""},
		{"exactly at the threshold is enough", cfg, diskState{Volumes: 1, Size: 100 * mb, Free: 40 * mb}, diskKeep, 0, ""},
		{"below the threshold: attach", cfg, diskState{Volumes: 1, Size: 100 * mb, Free: 39 * mb}, diskExpand, 1, ""},
		{"full second volume: attach a third", cfg, diskState{Volumes: 2, Size: 200 * mb, Free: 0}, diskExpand, 1, ""},
		{"at the maximum: say so", cfg, diskState{Volumes: 3, Size: 300 * mb, Free: 10 * mb}, diskRefuse, 0, "maximum of 3 volumes"},
		{"at the maximum, already said", cfg, diskState{Volumes: 3, Size: 300 * mb, Free: 10 * mb, Refused: true}, diskKeep, 0, ""},
		{"a failure moments ago: wait", cfg, diskState{Volumes: 1, Size: 100 * mb, Free: 1 * mb, LastFailure: now.Add(-2 * time.Second)}, diskKeep, 0, ""},
		{"a failure a while ago: try again", cfg, diskState{Volumes: 1, Size: 100 * mb, Free: 1 * mb, LastFailure: now.Add(-diskRetryAfter)}, diskExpand, 1, ""},
		{"free space back above: nothing, even at the maximum", cfg, diskState{Volumes: 3, Size: 300 * mb, Free: 200 * mb}, diskKeep, 0, ""},

		// The filling rate raises the margin: half a second of writes ahead.
		{"filling fast, above the threshold: attach ahead", big,
			diskState{Volumes: 1, Size: 100 * mb, Free: 60 * mb, Rate: 300 * mb}, diskExpand, 2, ""},
		{"filling fast, margin already there", big,
			diskState{Volumes: 3, Size: 300 * mb, Free: 200 * mb, Rate: 150 * mb}, diskKeep, 0, ""},
		{"a burst needs several volumes at once", big,
			diskState{Volumes: 1, Size: 100 * mb, Free: 5 * mb, Rate: 800 * mb}, diskExpand, 5, ""},
		{"several wanted, capped by the maximum", cfg,
			diskState{Volumes: 2, Size: 200 * mb, Free: 5 * mb, Rate: 400 * mb}, diskExpand, 1, ""},
		{"at the maximum, short only of the look-ahead: no refusal", cfg,
			diskState{Volumes: 3, Size: 300 * mb, Free: 80 * mb, Rate: 100 * mb}, diskKeep, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, n, reason := decideDisk(c.cfg, c.st, now)
			if got != c.want || n != c.volumes || !strings.Contains(reason, c.reason) || (c.reason == "" && reason != "") {
				t.Fatalf("decideDisk = %v %d %q, want %v %d %q", got, n, reason, c.want, c.volumes, c.reason)
			}
		})
	}
}

func TestObserveDiskRate(t *testing.T) {
	const mb = 1 << 20
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	type look struct {
		after      time.Duration // since t0
		size, free int64
	}
	cases := []struct {
		name  string
		looks []look
		rate  float64 // bytes/s after the last look, ±1%
	}{
		{"first look: no rate", []look{{0, 100 * mb, 60 * mb}}, 0},
		{"40 MiB in 200 ms: 200 MiB/s", []look{{0, 100 * mb, 90 * mb}, {200 * time.Millisecond, 100 * mb, 50 * mb}}, 200 * mb},
		{"looks closer than the minimum sample wait for the next",
			[]look{{0, 100 * mb, 90 * mb}, {10 * time.Millisecond, 100 * mb, 80 * mb}, {100 * time.Millisecond, 100 * mb, 70 * mb}}, 200 * mb},
		{"a volume attached is not use", []look{{0, 100 * mb, 10 * mb}, {100 * time.Millisecond, 200 * mb, 110 * mb}}, 0},
		{"files deleted: no negative rate", []look{{0, 100 * mb, 10 * mb}, {100 * time.Millisecond, 100 * mb, 90 * mb}}, 0},
		{"a burst decays: one decay time later, 1/e of it", []look{{0, 100 * mb, 90 * mb}, {100 * time.Millisecond, 100 * mb, 80 * mb},
			{100*time.Millisecond + diskRateDecay, 100 * mb, 80 * mb}}, 100 * mb / math.E},
		{"a faster sample replaces the remembered one", []look{{0, 400 * mb, 390 * mb}, {100 * time.Millisecond, 400 * mb, 380 * mb},
			{200 * time.Millisecond, 400 * mb, 330 * mb}}, 500 * mb},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := diskState{Volumes: 1}
			for _, l := range c.looks {
				st = observeDisk(st, l.size, l.free, t0.Add(l.after))
			}
			last := c.looks[len(c.looks)-1]
			if st.Size != last.size || st.Free != last.free {
				t.Fatalf("size/free %d/%d, want the last look's", st.Size, st.Free)
			}
			if math.Abs(st.Rate-c.rate) > c.rate/100+1 {
				t.Fatalf("rate %.0f MiB/s, want %.0f", st.Rate/mb, c.rate/mb)
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
