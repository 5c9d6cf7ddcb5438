package initscripts

import (
	"fmt"
	"testing"
)

func TestPlaceKeepsPositionsContiguous(t *testing.T) {
	cases := []struct {
		order []string
		id    string
		pos   int
		want  string
	}{
		{nil, "a", -1, "[a]"},
		{[]string{"a", "b"}, "c", -1, "[a b c]"},
		{[]string{"a", "b"}, "c", 0, "[c a b]"},
		{[]string{"a", "b"}, "c", 1, "[a c b]"},
		{[]string{"a", "b"}, "c", 99, "[a b c]"},
		{[]string{"a", "b", "c"}, "a", 2, "[b c a]"},
		{[]string{"a", "b", "c"}, "c", 0, "[c a b]"},
		{[]string{"a", "b", "c"}, "b", 1, "[a b c]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(place(c.order, c.id, c.pos)); got != c.want {
			t.Errorf("place(%v, %s, %d) = %s, want %s", c.order, c.id, c.pos, got, c.want)
		}
	}
}
