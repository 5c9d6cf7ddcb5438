package compute

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

func TestDiskEventsToRecord(t *testing.T) {
	ev := func(seq int64, cluster string) wire.DiskEvent {
		return wire.DiskEvent{Seq: seq, ClusterID: cluster, Type: wire.DiskExpanded}
	}
	cases := []struct {
		name     string
		evs      []wire.DiskEvent
		last     int64
		clusters []string
		want     []wire.DiskEvent
		wantLast int64
	}{
		{"new events of the cluster", []wire.DiskEvent{ev(5, "c"), ev(6, "c")}, 4, []string{"c", ""}, []wire.DiskEvent{ev(5, "c"), ev(6, "c")}, 6},
		{"a resent event is recorded once", []wire.DiskEvent{ev(5, "c"), ev(6, "c")}, 5, []string{"c", ""}, []wire.DiskEvent{ev(6, "c")}, 6},
		{"all seen", []wire.DiskEvent{ev(5, "c")}, 5, []string{"c", ""}, nil, 5},
		{"a late event of the cluster the instance left", []wire.DiskEvent{ev(7, "old")}, 5, []string{"", "old"}, []wire.DiskEvent{ev(7, "old")}, 7},
		{"another cluster's event is acknowledged, not recorded", []wire.DiskEvent{ev(7, "x")}, 5, []string{"c", "old"}, nil, 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, last := diskEventsToRecord(c.evs, c.last, c.clusters...)
			if diff := cmp.Diff(c.want, got); diff != "" || last != c.wantLast {
				t.Fatalf("last %d (want %d), events (-want +got):\n%s", last, c.wantLast, diff)
			}
		})
	}
}

func TestDiskEventDetails(t *testing.T) {
	got := diskEventDetails("i-1", wire.DiskEvent{Type: wire.DiskDidNotExpand, Reason: "max", DiskSize: 3, FreeSpace: 1})
	want := EventDetails{InstanceID: "i-1", DiskSize: 3, FreeSpace: 1, DidNotExpandReason: "max"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatal(diff)
	}
	if d := diskEventDetails("i-1", wire.DiskEvent{Type: wire.DiskExpanded, Reason: "x", DiskSize: 4, PreviousDiskSize: 2}); d.DidNotExpandReason != "" || d.PreviousDiskSize != 2 {
		t.Fatalf("EXPANDED_DISK details %+v", d)
	}
}
