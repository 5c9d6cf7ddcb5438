package dbfs

import (
	"testing"
)

func TestUsableHandlesBelongToTheirCreatorUntilIdle(t *testing.T) {
	idle := HandleIdle.Milliseconds()
	h := Handle{ID: 7, Owner: "u1", LastUsed: 1_000}
	stream := Handle{ID: 8, Owner: "u1", Stream: true, LastUsed: 1_000}
	cases := []struct {
		name   string
		h      Handle
		owner  string
		stream bool
		now    int64
		want   bool
	}{
		{"creator, fresh", h, "u1", false, 1_000, true},
		{"creator, just before the idle limit", h, "u1", false, 1_000 + idle, true},
		{"creator, idle too long", h, "u1", false, 1_000 + idle + 1, false},
		{"another principal", h, "u2", false, 1_000, false},
		{"a multipart put's upload through add-block", stream, "u1", false, 1_000, false},
		{"a multipart put's upload by its put", stream, "u1", true, 1_000, true},
		{"an API handle taken for a put", h, "u1", true, 1_000, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := usable(tc.h, tc.owner, tc.stream, tc.now); got != tc.want {
				t.Fatalf("usable = %v, want %v", got, tc.want)
			}
		})
	}
}
