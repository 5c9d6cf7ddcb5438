package compute

import (
	"reflect"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/autoscale"
)

func TestBuildSnapshot(t *testing.T) {
	t0 := time.UnixMilli(1_000_000)
	now := t0.Add(time.Minute)
	apps := []wire.AppLoad{{ID: "app-1", PendingTasks: 5, StageBacklog: 8, ShuffleWriteBytes: 100, ShuffleReadBytes: 40,
		Executors: []wire.ExecutorLoad{
			{ID: "0", ActiveTasks: 2, LiveShuffleBytes: 60},
			{ID: "1", LiveShuffleBytes: 40, IdleSinceMillis: t0.Add(30 * time.Second).UnixMilli()},
		}}}
	cases := []struct {
		name    string
		workers []workerObs
		missing int
		decom   map[string]time.Time
		want    []autoscale.Worker
	}{
		{
			name: "executors map to their workers",
			workers: []workerObs{
				{ID: "w1", Ready: true, Executors: []string{"app-1/0"}, Assigned: t0},
				{ID: "w2", Ready: true, Executors: []string{"app-1/1"}, Assigned: t0},
			},
			want: []autoscale.Worker{
				{ID: "w1", State: autoscale.Running, Slots: 4, ActiveTasks: 2, ShuffleBytes: 60},
				{ID: "w2", State: autoscale.Running, Slots: 4, ShuffleBytes: 40, IdleSince: t0.Add(30 * time.Second)},
			},
		},
		{
			name: "starting, decommissioning, and wanted without an instance",
			workers: []workerObs{
				{ID: "w1", Ready: false, Assigned: t0},
				{ID: "w2", Ready: true, Executors: []string{"app-1/1"}, Assigned: t0},
			},
			missing: 1,
			decom:   map[string]time.Time{"w2": now},
			want: []autoscale.Worker{
				{ID: "w1", State: autoscale.Starting, Slots: 4, IdleSince: t0},
				{ID: "w2", State: autoscale.Decommissioning, Slots: 4, ShuffleBytes: 40, IdleSince: t0.Add(30 * time.Second)},
				{ID: "pending-1", State: autoscale.Starting, Slots: 4},
			},
		},
		{
			name: "a worker without executors is idle since it was last busy",
			workers: []workerObs{
				{ID: "w1", Ready: true, Assigned: t0, LastBusy: t0.Add(45 * time.Second)},
			},
			want: []autoscale.Worker{
				{ID: "w1", State: autoscale.Running, Slots: 4, IdleSince: t0.Add(45 * time.Second)},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := buildSnapshot(now, 4, tc.workers, tc.missing, tc.decom, apps)
			if !reflect.DeepEqual(s.Workers, tc.want) {
				t.Errorf("workers\n got %+v\nwant %+v", s.Workers, tc.want)
			}
			if s.PendingTasks != 5 || s.StageBacklog != 8 || s.ShuffleWrittenBytes != 100 || s.ShuffleReadBytes != 40 {
				t.Errorf("cluster signals %+v", s)
			}
		})
	}
}

func TestDecommissionFinished(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	decom := map[string]time.Time{"a": now.Add(-time.Minute), "b": now.Add(-time.Second), "c": now.Add(-decommissionDeadline),
		"busy": now.Add(-2 * decommissionDeadline), "drained": now.Add(-2 * decommissionDeadline), "gone": now}
	// The deadline counts from the last task: "busy" ran one a minute ago,
	// "drained" a whole deadline ago.
	lastBusy := map[string]time.Time{"busy": now.Add(-time.Minute), "drained": now.Add(-decommissionDeadline)}
	progress := map[string]string{"a": wire.DecommissionDone, "b": wire.DecommissionStarted, "c": wire.DecommissionStarted,
		"busy": wire.DecommissionStarted, "drained": wire.DecommissionStarted}
	got := decommissionFinished(now, decom, lastBusy, progress)
	if want := []string{"a", "c", "drained", "gone"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestDecommissionConf(t *testing.T) {
	conf := map[string]string{}
	withDecommission(conf, ClusterSpec{NumWorkers: 2})
	if len(conf) != 0 {
		t.Errorf("a fixed-size cluster got %v", conf)
	}
	spec := ClusterSpec{Autoscale: &AutoScale{MinWorkers: 1, MaxWorkers: 4},
		SparkConf: map[string]string{"spark.storage.decommission.rddBlocks.enabled": "false"}}
	conf = map[string]string{}
	withDecommission(conf, spec)
	if conf["spark.decommission.enabled"] != "true" || conf["spark.storage.decommission.shuffleBlocks.enabled"] != "true" {
		t.Errorf("conf %v", conf)
	}
	if _, ok := conf["spark.storage.decommission.rddBlocks.enabled"]; ok {
		t.Errorf("the user's setting was overridden: %v", conf)
	}
}

func TestNextDecommissions(t *testing.T) {
	progress := map[string]string{"a": "", "b": "", "c": wire.DecommissionStarted, "d": "", "e": ""}
	wrote := map[string]bool{"a": true, "b": true, "e": true}
	cases := []struct {
		name      string
		queue     []string
		underWay  int
		batch     []string
		wantQueue []string
	}{
		{"nothing queued", nil, 0, nil, nil},
		{"none while a decommission is under way", []string{"a", "b"}, 1, nil, []string{"a", "b"}},
		{"workers that wrote shuffle data go together", []string{"a", "d", "b"}, 0, []string{"a", "b"}, []string{"d"}},
		{"a worker that wrote none goes alone", []string{"d", "a", "b"}, 0, []string{"d"}, []string{"a", "b"}},
		{"gone workers leave the queue", []string{"x", "b", "e"}, 0, []string{"b", "e"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			batch, q := nextDecommissions(tc.queue, tc.underWay, progress, wrote)
			if !reflect.DeepEqual(batch, tc.batch) || len(q) != len(tc.wantQueue) || (len(q) > 0 && !reflect.DeepEqual(q, tc.wantQueue)) {
				t.Errorf("got %v %v, want %v %v", batch, q, tc.batch, tc.wantQueue)
			}
		})
	}
}

func TestWroteShuffle(t *testing.T) {
	apps := []wire.AppLoad{{ID: "app-1", Executors: []wire.ExecutorLoad{{ID: "0", ShuffleWriteBytes: 10}, {ID: "1"}}}}
	cases := []struct {
		executors []string
		want      bool
	}{{[]string{"app-1/0"}, true}, {[]string{"app-1/1"}, false}, {nil, false}, {[]string{"app-2/0"}, false}}
	for _, tc := range cases {
		if got := wroteShuffle(tc.executors, apps); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.executors, got, tc.want)
		}
	}
}
