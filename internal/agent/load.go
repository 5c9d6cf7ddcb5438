package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// The autoscaler's signals, read on the node itself: the driver reads its
// running applications' monitoring REST API (through the master's reverse
// proxy, so no application UI port has to be known), and a worker reads
// its own worker's JSON (which executors it runs, so that the control
// plane can tie executors to instances; all nodes of a machine share one
// host address, so host:port of an executor does not name its worker).

// loadEvery is how often the driver reads its applications' load.
const loadEvery = time.Second

// REST documents of Spark's monitoring API, the fields read.
type restStage struct {
	StageID          int    `json:"stageId"`
	AttemptID        int    `json:"attemptId"`
	Status           string `json:"status"`
	NumTasks         int    `json:"numTasks"`
	NumActiveTasks   int    `json:"numActiveTasks"`
	NumCompleteTasks int    `json:"numCompleteTasks"`
	NumFailedTasks   int    `json:"numFailedTasks"`
}

type restExecutor struct {
	ID                string `json:"id"`
	HostPort          string `json:"hostPort"`
	IsActive          bool   `json:"isActive"`
	TotalCores        int    `json:"totalCores"`
	ActiveTasks       int    `json:"activeTasks"`
	TotalShuffleWrite int64  `json:"totalShuffleWrite"`
	TotalShuffleRead  int64  `json:"totalShuffleRead"`
}

type restJob struct {
	JobID  int    `json:"jobId"`
	Status string `json:"status"`
}

// appRest is what one read of an application's REST API returned.
type appRest struct {
	stages    []restStage // every stage the API lists (all statuses)
	executors []restExecutor
	jobs      []restJob
}

// loadTracker keeps what the load needs across reads: when each executor
// went idle, and each executor's shuffle written when its application last
// had no running job (the base of its live shuffle estimate).
type loadTracker struct {
	idleSince map[string]int64
	base      map[string]int64
}

func newLoadTracker() *loadTracker {
	return &loadTracker{idleSince: map[string]int64{}, base: map[string]int64{}}
}

// appLoad turns one read of an application's REST API into its load, at
// now (epoch ms). Pure but for the tracker it updates.
//
// Live shuffle: Spark's REST API only has cumulative shuffle figures. Map
// outputs stay live until the job that needs them ends (Spark cleans a
// shuffle when its dependency is garbage-collected, after the job), so the
// estimate is what the executor wrote since its application last had no
// running job; it resets when the application goes quiet. It only orders
// which idle worker goes first: correctness comes from decommissioning with
// block migration, which moves whatever the worker holds.
func (t *loadTracker) appLoad(appID string, r appRest, now int64) wire.AppLoad {
	l := wire.AppLoad{ID: appID}
	for _, s := range r.stages {
		switch s.Status {
		case "ACTIVE":
			l.PendingTasks += max(0, s.NumTasks-s.NumActiveTasks-s.NumCompleteTasks)
		case "PENDING":
			l.StageBacklog += s.NumTasks
		}
		l.FailedTasks += s.NumFailedTasks
		if s.AttemptID > 0 {
			l.StageRetries++
		}
	}
	for _, j := range r.jobs {
		if j.Status == "RUNNING" || j.Status == "UNKNOWN" {
			l.RunningJobs++
		}
	}
	seen := map[string]bool{}
	for _, e := range r.executors {
		if e.ID == "driver" || !e.IsActive {
			continue
		}
		key := appID + "/" + e.ID
		seen[key] = true
		if l.RunningJobs == 0 {
			t.base[key] = e.TotalShuffleWrite
		}
		el := wire.ExecutorLoad{ID: e.ID, HostPort: e.HostPort, Cores: e.TotalCores, ActiveTasks: e.ActiveTasks,
			ShuffleWriteBytes: e.TotalShuffleWrite, ShuffleReadBytes: e.TotalShuffleRead,
			LiveShuffleBytes: max(0, e.TotalShuffleWrite-t.base[key])}
		if e.ActiveTasks > 0 {
			delete(t.idleSince, key)
		} else {
			if _, ok := t.idleSince[key]; !ok {
				t.idleSince[key] = now
			}
			el.IdleSinceMillis = t.idleSince[key]
		}
		l.ShuffleWriteBytes += e.TotalShuffleWrite
		l.ShuffleReadBytes += e.TotalShuffleRead
		l.Executors = append(l.Executors, el)
	}
	sort.Slice(l.Executors, func(i, j int) bool { return l.Executors[i].ID < l.Executors[j].ID })
	return l
}

// forget drops what the tracker keeps of executors of applications no
// longer running.
func (t *loadTracker) forget(apps []string) {
	for _, m := range []map[string]int64{t.idleSince, t.base} {
		for k := range m {
			app := k
			if i := strings.IndexByte(k, '/'); i >= 0 {
				app = k[:i]
			}
			if !slices.Contains(apps, app) {
				delete(m, k)
			}
		}
	}
}

// getJSON reads a JSON document from a local Spark UI.
func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := uiClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 32<<20)).Decode(v)
}

// readApp reads one application's REST API through the master's reverse
// proxy at base (http://host:uiport).
func readApp(ctx context.Context, base, appID string) (appRest, error) {
	var r appRest
	app := url.PathEscape(appID)
	api := fmt.Sprintf("%s/proxy/%s/api/v1/applications/%s", base, app, app)
	if err := getJSON(ctx, api+"/executors", &r.executors); err != nil {
		return r, err
	}
	for _, st := range []string{"active", "pending"} {
		var ss []restStage
		if err := getJSON(ctx, api+"/stages?status="+st, &ss); err != nil {
			return r, err
		}
		r.stages = append(r.stages, ss...)
	}
	// Failed and retried stages count in the figures the tests check.
	var done []restStage
	if err := getJSON(ctx, api+"/stages?status=complete&status=failed", &done); err == nil {
		r.stages = append(r.stages, done...)
	}
	if err := getJSON(ctx, api+"/jobs?status=running", &r.jobs); err != nil {
		return r, err
	}
	return r, nil
}

// collectLoad reads the load of the master's active applications; an
// application whose API does not answer is left out.
func (t *loadTracker) collectLoad(ctx context.Context, host string, uiPort int, apps []string) []wire.AppLoad {
	base := "http://" + net.JoinHostPort(host, strconv.Itoa(uiPort))
	var out []wire.AppLoad
	for _, id := range apps {
		r, err := readApp(ctx, base, id)
		if err != nil {
			continue
		}
		out = append(out, t.appLoad(id, r, time.Now().UnixMilli()))
	}
	t.forget(apps)
	return out
}

// workerState is the part of a worker's /json/ document read.
type workerState struct {
	Executors []struct {
		ID    int    `json:"id"`
		AppID string `json:"appid"`
	} `json:"executors"`
}

// workerExecutors reads which executors a worker runs.
func workerExecutors(ctx context.Context, host string, uiPort int) ([]string, error) {
	var st workerState
	if err := getJSON(ctx, "http://"+net.JoinHostPort(host, strconv.Itoa(uiPort))+"/json/", &st); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(st.Executors))
	for _, e := range st.Executors {
		out = append(out, fmt.Sprintf("%s/%d", e.AppID, e.ID))
	}
	sort.Strings(out)
	return out, nil
}

// decommissioner is a daemon that can be decommissioned gracefully.
type decommissioner interface {
	Decommission() error
}

// Decommission asks a Spark worker to decommission itself: with
// spark.decommission.enabled the worker handles SIGPWR by telling the
// master, which stops giving it executors and tells each application to
// decommission its executors there; with spark.storage.decommission.* they
// migrate their shuffle and cached blocks to peers, finish their tasks and
// exit. The worker process itself stays (Spark does not stop it): the
// control plane releases the instance once no executor is left.
func (d *daemon) Decommission() error {
	if d.master {
		return fmt.Errorf("a master is not decommissioned")
	}
	// Executors first, each alone (not the process group: the executors'
	// Python workers would die of SIGPWR): an executor that decommissions
	// itself tells its driver with no worker host, so its driver forgets
	// only the map outputs still on it once it has gone, which after
	// migration are none. Decommissioned through the worker, the driver
	// hears "worker decommissioned" with the worker's host and forgets
	// every map output of that host: on instances sharing one address
	// (the local provider), those of every executor, migrated or not.
	// The worker follows a moment later, so that the master gives it no
	// new executor once these have gone; the driver, already told, keeps
	// the executors' own reason.
	execs := executorPids(d.p.Pid())
	for _, pid := range execs {
		syscall.Kill(pid, syscall.SIGPWR)
	}
	if len(execs) > 0 {
		time.Sleep(time.Second)
	}
	err := syscall.Kill(d.p.Pid(), syscall.SIGPWR)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// decommission decommissions the node's Spark worker (idempotent).
func (n *node) decommission() error {
	n.mu.Lock()
	d, role, started := n.daemon, n.asg.Role, n.st.Decommission != ""
	n.mu.Unlock()
	if role != wire.RoleWorker || d == nil {
		return fmt.Errorf("no Spark worker runs on this node")
	}
	if started {
		return nil
	}
	dc, ok := d.(decommissioner)
	if !ok {
		return fmt.Errorf("this node's Spark cannot decommission")
	}
	if err := dc.Decommission(); err != nil {
		return err
	}
	n.a.log.Info("decommissioning the spark worker")
	n.setStatus(func(st *wire.NodeStatus) { st.Decommission = wire.DecommissionStarted })
	return nil
}

// watchWorker reports, while the worker runs, which executors it runs, and
// when a decommissioning worker has none left (its blocks migrated and
// its executors exited).
func (n *node) watchWorker(ctx context.Context, d Daemon) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		execs, err := workerExecutors(rctx, n.a.cfg.Host, d.UIPort())
		cancel()
		if err != nil {
			continue
		}
		n.mu.Lock()
		changed := !slices.Equal(execs, n.st.Executors)
		done := n.st.Decommission == wire.DecommissionStarted && len(execs) == 0
		n.mu.Unlock()
		if !changed && !done {
			continue
		}
		n.setStatus(func(st *wire.NodeStatus) {
			st.Executors = execs
			if done {
				st.Decommission = wire.DecommissionDone
			}
		})
		if done {
			n.a.log.Info("the decommissioned spark worker runs no executor")
		}
	}
}

// executorPids are the executor JVMs a worker process started (its
// children running CoarseGrainedExecutorBackend).
func executorPids(worker int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		st := string(stat)
		f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(worker) {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmd), "CoarseGrainedExecutorBackend") {
			out = append(out, pid)
		}
	}
	return out
}
