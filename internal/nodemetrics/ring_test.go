package nodemetrics

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func times(r *ring) []int64 {
	var out []int64
	r.each(func(e entry) { out = append(out, e.at) })
	return out
}

func TestRingKeepsTheNewestEntriesAtLeastAStepApart(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		step     int64
		add      []int64
		want     []int64
	}{
		{"empty", 3, 10, nil, nil},
		{"below capacity", 3, 10, []int64{0, 10, 20}, []int64{0, 10, 20}},
		{"overwrites the oldest", 3, 10, []int64{0, 10, 20, 30, 40}, []int64{20, 30, 40}},
		{"wraps many times", 2, 10, []int64{0, 10, 20, 30, 40, 50, 60}, []int64{50, 60}},
		{"a report within half a step replaces the newest", 3, 10, []int64{0, 4, 10, 14}, []int64{4, 14}},
		{"half a step or more apart is a new entry", 3, 10, []int64{0, 5, 10}, []int64{0, 5, 10}},
		{"older than the newest is dropped", 3, 10, []int64{0, 20, 10}, []int64{0, 20}},
		{"zero capacity keeps nothing", 0, 10, []int64{0, 10}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(tt.capacity, tt.step)
			for _, at := range tt.add {
				r.add(entry{at: at})
			}
			if d := cmp.Diff(tt.want, times(r)); d != "" {
				t.Fatalf("entries (-want +got):\n%s", d)
			}
			want := int64(0)
			if len(tt.want) > 0 {
				want = tt.want[len(tt.want)-1]
			}
			if r.newest() != want {
				t.Fatalf("newest = %d, want %d", r.newest(), want)
			}
		})
	}
}
