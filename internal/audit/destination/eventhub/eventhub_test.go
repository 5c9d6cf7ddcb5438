package eventhub

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEnvelopesPackRecordsUnderTheLimit(t *testing.T) {
	rec := func(n int) []byte { return []byte(`{"logId":"` + strings.Repeat("x", n) + `"}`) }
	cases := []struct {
		name   string
		lines  [][]byte
		limit  int
		bodies int
	}{
		{"none", nil, 100, 0},
		{"one", [][]byte{rec(1)}, 100, 1},
		{"three fit", [][]byte{rec(1), rec(1), rec(1)}, 100, 1},
		{"split", [][]byte{rec(32), rec(32), rec(32)}, 100, 3},
		{"two fit exactly", [][]byte{rec(30), rec(30)}, 99, 1},
		{"oversized alone", [][]byte{rec(500), rec(1)}, 100, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bodies := Envelopes(c.lines, c.limit)
			if len(bodies) != c.bodies {
				t.Fatalf("%d bodies, want %d", len(bodies), c.bodies)
			}
			n := 0
			for _, b := range bodies {
				var env struct{ Records []json.RawMessage }
				if err := json.Unmarshal(b, &env); err != nil {
					t.Fatalf("body is not JSON: %s", b)
				}
				if len(env.Records) > 1 && len(b) > c.limit {
					t.Errorf("body of %d records is %d bytes, over %d", len(env.Records), len(b), c.limit)
				}
				n += len(env.Records)
			}
			if n != len(c.lines) {
				t.Errorf("%d records in bodies, want %d", n, len(c.lines))
			}
		})
	}
}
