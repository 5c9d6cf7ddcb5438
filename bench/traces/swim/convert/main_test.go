package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/autoscale/sim"
)

func TestStages(t *testing.T) {
	const mb = 1 << 20
	cases := []struct {
		name                   string
		input, shuffle, output float64
		want                   []sim.Stage
	}{
		{"a tiny map-only job", 1000, 0, 0, []sim.Stage{{Tasks: 1, TaskSeconds: 0.2}}},
		{"a map-only writer is split by its output", 1000, 0, 1280 * mb, []sim.Stage{{Tasks: 10, TaskSeconds: 2.2}}},
		{"map and reduce", 256 * mb, 512 * mb, 0, []sim.Stage{{Tasks: 2, TaskSeconds: 2.2, ShuffleMiB: 256}, {Tasks: 2, TaskSeconds: 8.2}}},
		{"reduces follow a larger output", 128 * mb, 1 * mb, 512 * mb, []sim.Stage{{Tasks: 1, TaskSeconds: 2.2, ShuffleMiB: 1}, {Tasks: 2, TaskSeconds: 4.216}}},
	}
	for _, c := range cases {
		if diff := cmp.Diff(c.want, stages(c.input, c.shuffle, c.output)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestConvertRejectsBadLines(t *testing.T) {
	for _, in := range []string{"", "job0\t1\t1\t5\n", "job0\t1\t1\t-5\t0\t0\n", "job0\tx\t1\t5\t0\t0\n"} {
		if _, err := convert(strings.NewReader(in)); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
}

func TestShippedTraceIsReproducible(t *testing.T) {
	var buf bytes.Buffer
	if err := run(&buf, "../FB-2009_samples_24_times_1hr_0.tsv", sim.ClusterHint{Type: "all-purpose", Min: 2, Max: 32, Slots: 8}); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../swim-fb2009.trace")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Error("swim-fb2009.trace differs from what the converter writes")
	}
}
