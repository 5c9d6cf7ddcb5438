package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/pyruntime"
)

// The shared driver. A runtime task that starts a Spark application of its
// own pays for Python, the driver's JVM and the SparkContext's registration
// with the master: about 9 s on two cores (bench/jobs-real), where
// Databricks starts a notebook on a running cluster at once because the
// cluster's driver is already up and every notebook attaches to it. So the
// driver node of every running cluster runs one shared driver: a runtime
// process (`tandem_runtime.task --serve`) that starts the cluster's
// SparkContext and hands its JVM's gateway to the agent. A runtime task
// whose Spark configuration is the cluster's own then starts as a Python
// process of its own that attaches to that JVM: its code runs about 0.1 s
// after the process starts, tasks run side by side on the cluster's
// executors, and a task's end, failure or kill is its process's alone. Its
// Spark jobs carry the tag tandem-task-<id>, cancelled when its process ends,
// so a killed task leaves no job behind on the executors.
//
// A job cluster has one too: it starts as soon as the cluster's master is
// up, while the workers join, so the run's first task waits for less than a
// cold start would take and the tasks after it start at once. On a
// single-node cluster it runs Spark in local mode, as its tasks do.
//
// Tasks that need a configuration of their own (task spark_conf, jars) and
// spark-submit tasks start cold, as their own application. Standalone Spark
// gives an application every free core, so the shared driver, which holds
// them all, stops as soon as no attached task runs while a cold task runs,
// and no task attaches meanwhile; it starts again when the cold tasks end.

// SharedDriverConf turns the shared driver off for a cluster (spark_conf
// "spark.tandem.driver.shared": "false"): every task is then its own Spark
// application.
const SharedDriverConf = "spark.tandem.driver.shared"

// driverStarter is a Spark that can start the shared driver (the real one;
// test doubles cannot, and their tasks all start cold).
type driverStarter interface {
	StartDriver(ctx context.Context, l TaskLaunch, dir string) (Process, error)
}

// Files of the shared driver's directory.
const (
	driverConfFile    = "standby.json" // what the driver starts its SparkContext with
	driverGatewayFile = "gateway.json" // its JVM gateway, written once it is up
	driverCancelDir   = "cancel"       // a file per job tag to cancel
)

type sharedDriver struct {
	dir    string
	gen    int64
	master string
	p      Process
	// port and secret are the JVM gateway's, once the SparkContext is up;
	// the secret lives in memory only (the file is removed once read).
	port   int
	secret string
	// attached counts the running tasks attached to this driver.
	attached int
	// stopped: the agent stopped it (its end is no failure).
	stopped bool
}

func (d *sharedDriver) ready() bool { return d.port != 0 }

// driverAction is what the loop does about the shared driver.
type driverAction int

const (
	driverKeep driverAction = iota
	driverStart
	driverStop
)

// driverState is what planDriver decides from.
type driverState struct {
	backoff  bool // the last one ended before it was ready, not long ago
	want     bool // a running driver node, shared driver on, no cold task running
	have     bool // a driver process exists and is alive
	current  bool // it runs against this assignment's master and generation
	attached int  // tasks attached to it are running
}

// driverBackoff is the wait after the n-th shared driver in a row that
// ended before it was ready: 5 s, doubling, at most 2 minutes.
func driverBackoff(n int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < 2*time.Minute; i++ {
		d *= 2
	}
	return min(d, 2*time.Minute)
}

// planDriver decides the shared driver's fate. Pure.
func planDriver(s driverState) driverAction {
	switch {
	case !s.have && s.want && !s.backoff:
		return driverStart
	case !s.have:
		return driverKeep
	case !s.current:
		// Another cluster or a restarted one: its tasks are gone with it.
		return driverStop
	case !s.want && s.attached == 0:
		return driverStop
	}
	// Wanted, or draining: the tasks still attached need its JVM.
	return driverKeep
}

// attachable reports whether a runtime spec (as the agent completes it) can
// attach to the shared driver started against master: its Spark
// configuration is only the master and the application name, and it adds no
// jars.
func attachable(spec map[string]any, master string) bool {
	if jars, _ := spec["jars"].([]any); len(jars) > 0 {
		return false
	}
	conf, _ := spec["spark_conf"].(map[string]any)
	for k, v := range conf {
		switch k {
		case "spark.master":
			if v != master {
				return false
			}
		case "spark.app.name":
		default:
			return false
		}
	}
	return true
}

// driverLoop keeps the shared driver on the driver node of a running
// cluster, and none elsewhere, until ctx ends.
func (ts *taskSet) driverLoop(ctx context.Context) {
	starter, ok := ts.a.spark.(driverStarter)
	if !ok {
		return
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		ts.tendDriver(ctx, starter)
		select {
		case <-ctx.Done():
			ts.stopDriver(true)
			return
		case <-t.C:
		case <-ts.kick:
		}
	}
}

// sharedMaster is the master of the shared driver on this node: the
// cluster's standalone master, or local mode on a single-node cluster; ok
// is false unless the node is a running driver.
func (ts *taskSet) sharedMaster() (asg wire.Assignment, master string, ok bool) {
	asg = ts.a.node.assignment()
	master, ok = ts.a.node.driverMaster()
	if asg.SharedDriverMaster != "" {
		master = asg.SharedDriverMaster
	}
	return asg, master, ok
}

func (ts *taskSet) tendDriver(ctx context.Context, starter driverStarter) {
	ts.tendMu.Lock()
	defer ts.tendMu.Unlock()
	asg, master, running := ts.sharedMaster()
	now := time.Now()
	ts.mu.Lock()
	d := ts.drv
	if d != nil {
		select {
		case <-d.p.Done():
			// Died, or was stopped. One that never came up waits before
			// the next try, longer each time, rather than start a JVM
			// four times a second.
			if !d.ready() && !d.stopped {
				ts.drvFailures++
				ts.drvRetry = now.Add(driverBackoff(ts.drvFailures))
				ts.a.log.Warn("shared driver ended before it was ready", "failures", ts.drvFailures)
			}
			ts.drv, d = nil, nil
		default:
		}
	}
	s := driverState{
		want:    running && asg.SparkConf[SharedDriverConf] != "false" && !ts.coldRunningLocked(),
		have:    d != nil,
		backoff: now.Before(ts.drvRetry),
	}
	if d != nil {
		s.current = d.gen == asg.Generation && d.master == master
		s.attached = d.attached
	}
	ts.mu.Unlock()
	switch planDriver(s) {
	case driverStop:
		ts.stopDriver(true)
		return
	case driverStart:
		d, err := ts.startDriver(ctx, starter, asg, master)
		if err != nil {
			ts.a.log.Warn("shared driver did not start", "err", err)
			return
		}
		ts.mu.Lock()
		ts.drv = d
		ts.mu.Unlock()
		return
	}
	if d != nil {
		ts.readGateway(d)
	}
}

// readGateway takes the driver's gateway once its SparkContext is up.
func (ts *taskSet) readGateway(d *sharedDriver) {
	ts.mu.Lock()
	ready := d.ready()
	ts.mu.Unlock()
	if ready {
		return
	}
	f := filepath.Join(d.dir, driverGatewayFile)
	b, err := os.ReadFile(f)
	if err != nil {
		return
	}
	var gw struct {
		Port   int    `json:"port"`
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(b, &gw); err != nil || gw.Port == 0 || gw.Secret == "" {
		return // not whole yet; it is written by rename, so this is unexpected
	}
	os.Remove(f)
	ts.mu.Lock()
	d.port, d.secret = gw.Port, gw.Secret
	ts.drvFailures, ts.drvRetry = 0, time.Time{}
	ts.mu.Unlock()
	ts.a.log.Info("shared driver ready", "master", d.master)
}

func (ts *taskSet) startDriver(ctx context.Context, starter driverStarter, asg wire.Assignment, master string) (*sharedDriver, error) {
	dir, err := os.MkdirTemp(ts.a.node.sparkDir(), "driver-")
	if err != nil {
		return nil, err
	}
	conf, err := json.Marshal(map[string]any{"app_name": "tandem-driver",
		"spark_conf": map[string]string{"spark.master": master}})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, driverConfFile), conf, 0o600); err != nil {
		return nil, err
	}
	rt, err := pyruntime.Extract(filepath.Join(ts.a.dir, "runtime"))
	if err != nil {
		return nil, err
	}
	// The driver's own output (Spark's driver log) is the cluster's driver
	// log, as on Databricks; each task's output is its own.
	l := TaskLaunch{Dir: dir, SparkDir: ts.a.node.sparkDir(), Host: ts.a.cfg.Host,
		Stdout: ts.a.logs.writer(wire.StreamStdout), Stderr: ts.a.logs.writer(wire.StreamStderr),
		Python: true, PythonPath: rt}
	if asg.AuthSecret != "" {
		l.Env = append(l.Env, "_SPARK_AUTH_SECRET="+asg.AuthSecret)
	}
	p, err := starter.StartDriver(ctx, l, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &sharedDriver{dir: dir, gen: asg.Generation, master: master, p: p}, nil
}

// driverStartWait bounds how long a task waits for a shared driver that is
// starting (its JVM and SparkContext: seconds) before it starts cold.
const driverStartWait = 60 * time.Second

// startingDriver returns the shared driver if it runs against master and
// is still starting.
func (ts *taskSet) startingDriver(master string) *sharedDriver {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	d := ts.drv
	if d == nil || d.ready() || d.master != master || ts.coldRunningLocked() {
		return nil
	}
	return d
}

// waitReady waits until d is ready, dies or is replaced, max passes or
// stop is closed.
func (ts *taskSet) waitReady(d *sharedDriver, max time.Duration, stop <-chan struct{}) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		ts.readGateway(d)
		ts.mu.Lock()
		ready, current := d.ready(), ts.drv == d
		ts.mu.Unlock()
		if ready || !current {
			return
		}
		select {
		case <-d.p.Done():
			return
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// attach returns the shared driver for a task and the environment that
// attaches the task's process to it, or nil when the task must start cold.
func (ts *taskSet) attach(t *task, master string) (*sharedDriver, []string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	d := ts.drv
	if d == nil || !d.ready() || d.master != master || ts.coldRunningLocked() {
		return nil, nil
	}
	select {
	case <-d.p.Done():
		return nil, nil
	default:
	}
	d.attached++
	t.drv = d
	return d, []string{
		"PYSPARK_GATEWAY_PORT=" + strconv.Itoa(d.port),
		"PYSPARK_GATEWAY_SECRET=" + d.secret,
		"TANDEM_DRIVER_SHARED=" + d.dir,
		"TANDEM_JOB_TAG=" + jobTag(t.spec.ID),
		"TANDEM_TASK_ID=" + t.spec.ID,
	}
}

// jobTag is the Spark job tag of an attached task's jobs.
func jobTag(taskID string) string { return "tandem-task-" + taskID }

// detach ends a task's attachment: its jobs still running (a killed task's,
// or ones it left behind) are cancelled.
func (ts *taskSet) detach(t *task) {
	ts.mu.Lock()
	d := t.drv
	t.drv = nil
	if d != nil {
		d.attached--
	}
	ts.mu.Unlock()
	if d == nil {
		return
	}
	cancel := filepath.Join(d.dir, driverCancelDir)
	if err := os.MkdirAll(cancel, 0o700); err == nil {
		if err := os.WriteFile(filepath.Join(cancel, jobTag(t.spec.ID)), nil, 0o600); err != nil {
			ts.a.log.Warn("task's jobs not cancelled", "task", t.spec.ID, "err", err)
		}
	}
	select { // a draining driver may stop now
	case ts.kick <- struct{}{}:
	default:
	}
}

// coldRunningLocked reports a running task that started as its own Spark
// application. ts.mu is held.
func (ts *taskSet) coldRunningLocked() bool {
	for _, t := range ts.m {
		if t.cold && t.st.State == wire.TaskRunning {
			return true
		}
	}
	return false
}

// stopDriver stops the shared driver; unless force, only when no task is
// attached to it.
func (ts *taskSet) stopDriver(force bool) {
	ts.mu.Lock()
	d := ts.drv
	if d == nil || (!force && d.attached > 0) {
		ts.mu.Unlock()
		return
	}
	ts.drv = nil
	d.stopped = true
	ts.mu.Unlock()
	d.p.Stop(5 * time.Second)
	os.RemoveAll(d.dir)
}
