package sim

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseTrace(t *testing.T) {
	in := `# a comment
cluster type=all-purpose min=2 max=16 slots=8

job late 30.5 4x2.5   # trailing comment
job early 0 100x10:32.5 8x60:128 1x1
`
	got, err := ParseTrace(strings.NewReader(in), "t")
	if err != nil {
		t.Fatal(err)
	}
	want := Trace{Name: "t", Cluster: ClusterHint{Type: "all-purpose", Min: 2, Max: 16, Slots: 8}, Jobs: []Job{
		{ID: "early", Submit: 0, Stages: []Stage{{Tasks: 100, TaskSeconds: 10, ShuffleMiB: 32.5}, {Tasks: 8, TaskSeconds: 60, ShuffleMiB: 128}, {Tasks: 1, TaskSeconds: 1}}},
		{ID: "late", Submit: 30500 * time.Millisecond, Stages: []Stage{{Tasks: 4, TaskSeconds: 2.5}}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("trace (-want +got):\n%s", diff)
	}
	if got.Tasks() != 113 || got.Work() != 100*10+8*60+1+4*2.5 || got.Span() != 30500*time.Millisecond {
		t.Errorf("tasks %d, work %v, span %s", got.Tasks(), got.Work(), got.Span())
	}
	var buf bytes.Buffer
	if err := WriteTrace(&buf, got, "header"); err != nil {
		t.Fatal(err)
	}
	again, err := ParseTrace(&buf, "t")
	if err != nil {
		t.Fatalf("reading what WriteTrace wrote: %v\n%s", err, buf.String())
	}
	if diff := cmp.Diff(got, again); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestParseTraceRejects(t *testing.T) {
	cases := map[string]string{
		"no jobs":             "# nothing\n",
		"unknown line":        "task a 1 1x1\n",
		"short job":           "job a 1\n",
		"bad submit":          "job a soon 1x1\n",
		"negative submit":     "job a -1 1x1\n",
		"bad stage":           "job a 1 10\n",
		"zero tasks":          "job a 1 0x1\n",
		"zero seconds":        "job a 1 1x0\n",
		"negative shuffle":    "job a 1 1x1:-3\n",
		"NaN seconds":         "job a 1 1xNaN\n",
		"duplicate id":        "job a 1 1x1\njob a 2 1x1\n",
		"cluster after jobs":  "job a 1 1x1\ncluster min=1 max=2\n",
		"bad cluster type":    "cluster type=gpu\njob a 1 1x1\n",
		"unknown cluster key": "cluster size=3\njob a 1 1x1\n",
		"huge stage":          "job a 1 99999999999x1\n",
	}
	for name, in := range cases {
		if _, err := ParseTrace(strings.NewReader(in), "bad.trace"); err == nil {
			t.Errorf("%s: accepted %q", name, in)
		} else if !strings.HasPrefix(err.Error(), "bad.trace") {
			t.Errorf("%s: error %q does not name the trace", name, err)
		}
	}
}

func FuzzParseTrace(f *testing.F) {
	f.Add("cluster type=job min=1 max=4 slots=2\njob a 0 3x1.5:2 1x9\n")
	f.Add("job b 12.25 1x0.001\n# c\n")
	f.Fuzz(func(t *testing.T, in string) {
		tr, err := ParseTrace(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteTrace(&buf, tr); err != nil {
			t.Fatal(err)
		}
		again, err := ParseTrace(&buf, "fuzz")
		if err != nil {
			t.Fatalf("cannot read back %q: %v", buf.String(), err)
		}
		if len(again.Jobs) != len(tr.Jobs) || again.Tasks() != tr.Tasks() {
			t.Fatalf("round trip changed the trace: %d/%d jobs, %d/%d tasks", len(again.Jobs), len(tr.Jobs), again.Tasks(), tr.Tasks())
		}
	})
}
