package redundancy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlanObject(t *testing.T) {
	a, b := [32]byte{1}, [32]byte{2}
	h := func(s Status, gen uint64, sum [32]byte) View {
		return View{Healthy: true, Status: s, Gen: gen, Sum: sum}
	}
	d := func(s Status, gen uint64, sum [32]byte) View { return View{Status: s, Gen: gen, Sum: sum} }
	cases := []struct {
		name  string
		views []View
		want  Plan
	}{
		{"all in line", []View{h(OK, 5, a), h(OK, 5, a), h(OK, 5, a)}, Plan{Source: 0}},
		{"bit flip in one copy", []View{h(Corrupt, 0, b), h(OK, 5, a), h(OK, 5, a)}, Plan{Source: 1, Repair: []int{0}}},
		{"copy deleted", []View{h(OK, 5, a), h(Missing, 0, b), h(OK, 5, a)}, Plan{Source: 0, Repair: []int{1}}},
		{"stale healthy copy after a crash mid-write", []View{h(OK, 4, b), h(OK, 5, a), h(OK, 5, a)}, Plan{Source: 1, Repair: []int{0}}},
		{"degraded copy behind", []View{h(OK, 5, a), h(OK, 5, a), d(OK, 3, b)}, Plan{Source: 0, Repair: []int{2}}},
		{"degraded copy ahead of a failed write", []View{h(OK, 5, a), h(OK, 5, a), d(OK, 9, b)}, Plan{Source: 0, Repair: []int{2}}},
		{"deleted while a copy was degraded", []View{h(Missing, 0, a), h(Missing, 0, a), d(OK, 3, b)}, Plan{Source: -1, Delete: []int{2}}},
		{"lost zone being rebuilt", []View{h(OK, 5, a), h(OK, 5, a), d(Missing, 0, a)}, Plan{Source: 0, Repair: []int{2}}},
		{"every healthy copy corrupt, degraded copy good", []View{h(Corrupt, 0, b), h(Corrupt, 0, b), d(OK, 5, a)}, Plan{Source: 2, Repair: []int{0, 1}}},
		{"corrupt everywhere", []View{h(Corrupt, 0, a), h(Corrupt, 0, b), h(Missing, 0, a)}, Plan{Source: -1, Lost: true}},
		{"one copy only has a corrupt leftover", []View{h(Missing, 0, a), d(Corrupt, 0, b)}, Plan{Source: -1, Delete: []int{1}}},
	}
	for _, c := range cases {
		if got := PlanObject(c.views); !cmp.Equal(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestWriteOutcome(t *testing.T) {
	cases := []struct {
		name        string
		healthy, ok []bool
		quorum      int
		success     bool
		degrade     []int
	}{
		{"all copies", []bool{true, true, true}, []bool{true, true, true}, 2, true, nil},
		{"one copy failed", []bool{true, true, true}, []bool{true, false, true}, 2, true, []int{1}},
		{"two copies failed", []bool{true, true, true}, []bool{false, true, false}, 2, false, []int{1}},
		{"every copy failed", []bool{true, true, true}, []bool{false, false, false}, 2, false, nil},
		{"a degraded copy does not count", []bool{true, true, false}, []bool{true, false, true}, 2, false, []int{0}},
		{"two healthy copies left", []bool{true, false, true}, []bool{true, false, true}, 2, true, nil},
	}
	for _, c := range cases {
		s, d := WriteOutcome(c.healthy, c.ok, c.quorum)
		if s != c.success || !cmp.Equal(d, c.degrade) {
			t.Errorf("%s: success %v degrade %v, want %v %v", c.name, s, d, c.success, c.degrade)
		}
	}
}
