// Command convert turns a SWIM workload (the Statistical Workload Injector
// for MapReduce, github.com/SWIMProjectUCB/SWIM, New BSD licence) into a
// Tandem autoscaling trace:
//
//	go run ./bench/traces/swim/convert \
//	    -in bench/traces/swim/FB-2009_samples_24_times_1hr_0.tsv \
//	    -o bench/traces/swim-fb2009.trace
//
// A SWIM line is: job id, submit time (s), inter-arrival time (s), map input
// bytes, shuffle bytes, reduce output bytes. Each job becomes a Spark-like
// job of one or two stages, the way Spark would read and shuffle those bytes:
//
//   - the map stage reads the input in 128 MiB splits (Spark's
//     spark.sql.files.maxPartitionBytes): one task per split, at least one;
//     a map-only job has one task per 128 MiB of input or of output,
//     whichever is larger (SWIM has writer jobs that read kilobytes and
//     write hundreds of gigabytes: Spark would not write that from one task);
//   - if the job shuffles, a reduce stage with one task per 256 MiB of
//     shuffle data or of output, whichever is larger; each map task writes
//     its share of the shuffle;
//   - a task takes a fixed 0.2 s (launch, commit) plus its bytes over a
//     per-task throughput: 64 MiB/s to read and process input and to write
//     output, 32 MiB/s to fetch, merge and reduce shuffle data; a map-only
//     job's output is written by its maps.
//
// The bytes are not scaled: the day replays at its original size on the
// cluster the trace's cluster line names. The throughputs are assumptions
// of this converter (bench/traces/README.md), not measurements.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/autoscale/sim"
)

const (
	mib            = 1 << 20
	splitBytes     = 128 * mib
	reduceBytes    = 256 * mib
	scanPerSecond  = 64 * mib
	mergePerSecond = 32 * mib
	taskOverhead   = 0.2
)

func main() {
	in := flag.String("in", "", "SWIM workload file (.tsv)")
	out := flag.String("o", "", "output trace (default standard output)")
	minW := flag.Int("min", 2, "the trace's suggested minimum workers")
	maxW := flag.Int("max", 32, "the trace's suggested maximum workers")
	slots := flag.Int("slots", 8, "the trace's suggested task slots per worker")
	flag.Parse()
	if *in == "" {
		fmt.Fprintln(os.Stderr, "convert: -in is required")
		os.Exit(2)
	}
	var w io.Writer = os.Stdout
	if *out != "" {
		o, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "convert:", err)
			os.Exit(1)
		}
		defer o.Close()
		w = o
	}
	if err := run(w, *in, sim.ClusterHint{Type: "all-purpose", Min: *minW, Max: *maxW, Slots: *slots}); err != nil {
		fmt.Fprintln(os.Stderr, "convert:", err)
		os.Exit(1)
	}
}

// run converts the SWIM file at path and writes the trace to w.
func run(w io.Writer, path string, cluster sim.ClusterHint) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	t, err := convert(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	t.Cluster = cluster
	header := fmt.Sprintf("Converted from SWIM's %s (github.com/SWIMProjectUCB/SWIM, New BSD licence: bench/traces/swim/LICENSE)\nby go run ./bench/traces/swim/convert; %d jobs, %d tasks, %.0f task-seconds over %s",
		filepath.Base(path), len(t.Jobs), t.Tasks(), t.Work(), t.Span().Round(time.Second))
	return sim.WriteTrace(w, t, header)
}

func convert(r io.Reader) (sim.Trace, error) {
	var t sim.Trace
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 6 {
			return t, fmt.Errorf("line %d: want 6 fields (id, submit, gap, input, shuffle, output), got %d", n, len(fields))
		}
		var v [4]float64
		for i, s := range []string{fields[1], fields[3], fields[4], fields[5]} {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil || x < 0 {
				return t, fmt.Errorf("line %d: field %q is not a non-negative number", n, s)
			}
			v[i] = x
		}
		submit, input, shuffle, output := v[0], v[1], v[2], v[3]
		t.Jobs = append(t.Jobs, sim.Job{ID: fields[0], Submit: time.Duration(submit * float64(time.Second)), Stages: stages(input, shuffle, output)})
	}
	if err := sc.Err(); err != nil {
		return t, err
	}
	if len(t.Jobs) == 0 {
		return t, fmt.Errorf("no jobs")
	}
	return t, nil
}

// stages maps a MapReduce job's bytes to Spark-like stages.
func stages(input, shuffle, output float64) []sim.Stage {
	if shuffle == 0 {
		maps := max(1, int(math.Ceil(math.Max(input, output)/splitBytes)))
		secs := taskOverhead + (input+output)/float64(maps)/scanPerSecond
		return []sim.Stage{{Tasks: maps, TaskSeconds: round3(secs)}}
	}
	maps := max(1, int(math.Ceil(input/splitBytes)))
	mapSecs := taskOverhead + input/float64(maps)/scanPerSecond
	reduces := max(1, int(math.Ceil(math.Max(shuffle, output)/reduceBytes)))
	redSecs := taskOverhead + shuffle/float64(reduces)/mergePerSecond + output/float64(reduces)/scanPerSecond
	return []sim.Stage{
		{Tasks: maps, TaskSeconds: round3(mapSecs), ShuffleMiB: round3(shuffle / float64(maps) / mib)},
		{Tasks: reduces, TaskSeconds: round3(redSecs)},
	}
}

func round3(x float64) float64 { return math.Max(0.001, math.Round(x*1000)/1000) }
