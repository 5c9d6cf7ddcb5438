package agent

import (
	"reflect"
	"testing"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

func TestAppLoad(t *testing.T) {
	tr := newLoadTracker()
	r := appRest{
		stages: []restStage{
			{StageID: 1, Status: "ACTIVE", NumTasks: 10, NumActiveTasks: 4, NumCompleteTasks: 3},
			{StageID: 2, Status: "PENDING", NumTasks: 6},
			{StageID: 0, Status: "COMPLETE", NumTasks: 2, NumCompleteTasks: 2, NumFailedTasks: 1, AttemptID: 1},
		},
		executors: []restExecutor{
			{ID: "driver", IsActive: true},
			{ID: "1", IsActive: true, TotalCores: 2, ActiveTasks: 0, TotalShuffleWrite: 500},
			{ID: "0", IsActive: true, TotalCores: 2, ActiveTasks: 2, TotalShuffleWrite: 300, TotalShuffleRead: 50},
			{ID: "2", IsActive: false, TotalShuffleWrite: 999},
		},
	}
	// No job runs: the shuffle written so far is no longer live.
	l := tr.appLoad("app-1", r, 1000)
	want := wire.AppLoad{ID: "app-1", PendingTasks: 3, StageBacklog: 6, FailedTasks: 1, StageRetries: 1,
		ShuffleWriteBytes: 800, ShuffleReadBytes: 50, Executors: []wire.ExecutorLoad{
			{ID: "0", Cores: 2, ActiveTasks: 2, ShuffleWriteBytes: 300, ShuffleReadBytes: 50},
			{ID: "1", Cores: 2, ShuffleWriteBytes: 500, IdleSinceMillis: 1000},
		}}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("got %+v\nwant %+v", l, want)
	}
	// A job runs and writes shuffle data: that is live; executor 1 is
	// still idle since the first read.
	r.jobs = []restJob{{JobID: 3, Status: "RUNNING"}}
	r.executors[1].TotalShuffleWrite = 700
	r.executors[2].TotalShuffleWrite = 400
	r.executors[2].ActiveTasks = 0
	l = tr.appLoad("app-1", r, 2000)
	got := map[string]wire.ExecutorLoad{}
	for _, e := range l.Executors {
		got[e.ID] = e
	}
	if got["1"].LiveShuffleBytes != 200 || got["0"].LiveShuffleBytes != 100 || got["1"].IdleSinceMillis != 1000 || got["0"].IdleSinceMillis != 2000 {
		t.Errorf("second read %+v", l.Executors)
	}
	tr.forget(nil)
	if len(tr.base) != 0 || len(tr.idleSince) != 0 {
		t.Errorf("forget kept %v %v", tr.base, tr.idleSince)
	}
}
