package main

import (
	"bytes"
	"os"
	"testing"
)

// TestShippedTracesAreReproducible regenerates the committed traces: a
// change to the generator that changes them must regenerate them too.
func TestShippedTracesAreReproducible(t *testing.T) {
	for shape, file := range map[string]string{"bursty": "../bursty.trace", "etl": "../etl-job.trace"} {
		var buf bytes.Buffer
		if err := generate(&buf, shape, 1); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s differs from go run ./bench/traces/synth -shape %s -seed 1", file, shape)
		}
	}
	if err := generate(&bytes.Buffer{}, "spiky", 1); err == nil {
		t.Error("an unknown shape was accepted")
	}
}
