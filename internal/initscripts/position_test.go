package initscripts

import (
	"slices"
	"testing"
)

func TestPlaceKeepsPositionsContiguous(t *testing.T) {
	abc := []string{"a", "b", "c"}
	cases := []struct {
		name  string
		order []string
		id    string
		pos   int
		want  []string
	}{
		{"the first script", nil, "a", -1, []string{"a"}},
		{"the first script, at a position past the end", nil, "a", 5, []string{"a"}},
		{"omitted position goes last", abc, "d", -1, []string{"a", "b", "c", "d"}},
		{"at 0 shifts every script", abc, "d", 0, []string{"d", "a", "b", "c"}},
		{"at a taken position shifts it and the later ones", abc, "d", 1, []string{"a", "d", "b", "c"}},
		{"right after the last", abc, "d", 3, []string{"a", "b", "c", "d"}},
		{"past the end is last", abc, "d", 99, []string{"a", "b", "c", "d"}},
		{"move the first to the last position", abc, "a", 2, []string{"b", "c", "a"}},
		{"move past the end is last", abc, "a", 7, []string{"b", "c", "a"}},
		{"move the last to the front", abc, "c", 0, []string{"c", "a", "b"}},
		{"move one step down", abc, "a", 1, []string{"b", "a", "c"}},
		{"move one step up", abc, "c", 1, []string{"a", "c", "b"}},
		{"stay in place", abc, "b", 1, []string{"a", "b", "c"}},
		{"move with the position omitted goes last", abc, "a", -1, []string{"b", "c", "a"}},
	}
	for _, c := range cases {
		in := slices.Clone(c.order)
		if got := place(c.order, c.id, c.pos); !slices.Equal(got, c.want) {
			t.Errorf("%s: place(%v, %s, %d) = %v, want %v", c.name, c.order, c.id, c.pos, got, c.want)
		}
		if !slices.Equal(in, c.order) {
			t.Errorf("%s: place changed its input to %v", c.name, c.order)
		}
	}
}

func TestWithoutClosesTheGap(t *testing.T) {
	cases := []struct {
		order []string
		id    string
		want  []string
	}{
		{[]string{"a", "b", "c"}, "a", []string{"b", "c"}},
		{[]string{"a", "b", "c"}, "b", []string{"a", "c"}},
		{[]string{"a", "b", "c"}, "c", []string{"a", "b"}},
		{[]string{"a"}, "a", []string{}},
		{[]string{"a", "b"}, "z", []string{"a", "b"}},
	}
	for _, c := range cases {
		if got := without(c.order, c.id); !slices.Equal(got, c.want) {
			t.Errorf("without(%v, %s) = %v, want %v", c.order, c.id, got, c.want)
		}
	}
}
