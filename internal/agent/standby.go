package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/pyruntime"
)

// A task of the runtime is its own Spark application: starting Python, the
// driver's JVM and the SparkContext takes seconds (bench/jobs-real: about
// 9 s on two cores), where Databricks starts a task on a running cluster at
// once because its driver is already up. So the driver of an all-purpose
// cluster keeps one standby: a runtime process that has started its
// SparkContext against the cluster's master and waits to be given a task.
// A runtime task whose Spark configuration the standby already has claims
// it (the agent writes the claim file the standby watches, and hands it the
// task's output streams); a new standby starts behind it. Every task still
// has a process and an application of its own: the standby is only started
// earlier. Tasks that need a configuration of their own (spark_conf, jars)
// start cold as before, and so do job clusters' tasks, whose cluster starts
// with the run.

// StandbyConf turns the standby runtime on for a cluster (spark_conf
// "spark.tandem.driver.standby": "true"). It is off by default: with it on,
// one run of the full Spark test group saw a wheel task that claimed a
// standby never finish, and the cause is not found yet.
const StandbyConf = "spark.tandem.driver.standby"

// standbyStarter is a Spark that can start standby runtime processes (the
// real one; test doubles cannot, and their tasks all start cold).
type standbyStarter interface {
	StartStandby(ctx context.Context, l TaskLaunch, dir string) (Process, error)
}

// Files of a standby's directory.
const (
	standbyConfFile  = "standby.json" // what the standby starts its SparkContext with
	standbyClaimFile = "claim.json"   // written by the agent to give it a task
)

// standbyBuffer bounds what a standby's output keeps before it has a task
// (Spark's start-up lines); the task's streams then begin with it.
const standbyBuffer = 64 << 10

type standby struct {
	dir       string
	gen       int64
	master    string
	p         Process
	out, errw *handoffWriter
}

// handoffWriter keeps a bounded prefix of what is written until it is
// attached to its real destination, then writes there.
type handoffWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf bytes.Buffer
}

func (h *handoffWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w != nil {
		return h.w.Write(p)
	}
	if room := standbyBuffer - h.buf.Len(); room > 0 {
		h.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (h *handoffWriter) attach(w io.Writer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.Write(h.buf.Bytes())
	h.buf = bytes.Buffer{}
	h.w = w
}

// standbyEligible reports whether a runtime spec (as the agent completes
// it) can run in a standby started against master: its Spark configuration
// is only the master and the application name, and it adds no jars.
func standbyEligible(spec map[string]any, master string) bool {
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

// standbyLoop keeps one standby on the driver of a running all-purpose
// cluster, and none elsewhere, until ctx ends.
func (ts *taskSet) standbyLoop(ctx context.Context) {
	starter, ok := ts.a.spark.(standbyStarter)
	if !ok {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		ts.tendStandby(ctx, starter)
		select {
		case <-ctx.Done():
			ts.dropStandby()
			return
		case <-t.C:
		case <-ts.kick:
		}
	}
}

func (ts *taskSet) tendStandby(ctx context.Context, starter standbyStarter) {
	asg := ts.a.node.assignment()
	master, running := ts.a.node.driverMaster()
	ts.mu.Lock()
	// No standby while a task that started cold runs: one that registered
	// before it would take the cores it waits for.
	want := running && !asg.JobCluster && asg.SparkConf[StandbyConf] == "true" && !ts.coldRunningLocked()
	sb := ts.sb
	if sb != nil {
		select {
		case <-sb.p.Done():
			ts.sb, sb = nil, nil // died (or was stopped): start another
		default:
		}
	}
	if sb != nil && (!want || sb.gen != asg.Generation || sb.master != master) {
		ts.sb = nil
		ts.mu.Unlock()
		sb.p.Stop(5 * time.Second)
		os.RemoveAll(sb.dir)
		return
	}
	ts.mu.Unlock()
	if sb != nil || !want {
		return
	}
	sb, err := ts.startStandby(ctx, starter, asg, master)
	if err != nil {
		ts.a.log.Warn("standby driver did not start", "err", err)
		return
	}
	ts.mu.Lock()
	ts.sb = sb
	ts.mu.Unlock()
}

func (ts *taskSet) startStandby(ctx context.Context, starter standbyStarter, asg wire.Assignment, master string) (*standby, error) {
	dir, err := os.MkdirTemp(ts.a.node.sparkDir(), "standby-")
	if err != nil {
		return nil, err
	}
	conf, err := json.Marshal(map[string]any{"app_name": "tandem-standby",
		"spark_conf": map[string]string{"spark.master": master}})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, standbyConfFile), conf, 0o600); err != nil {
		return nil, err
	}
	rt, err := pyruntime.Extract(filepath.Join(ts.a.dir, "runtime"))
	if err != nil {
		return nil, err
	}
	sb := &standby{dir: dir, gen: asg.Generation, master: master, out: &handoffWriter{}, errw: &handoffWriter{}}
	l := TaskLaunch{Dir: dir, SparkDir: ts.a.node.sparkDir(), Host: ts.a.cfg.Host, Stdout: sb.out, Stderr: sb.errw,
		Python: true, PythonPath: rt}
	if asg.AuthSecret != "" {
		l.Env = append(l.Env, "_SPARK_AUTH_SECRET="+asg.AuthSecret)
	}
	p, err := starter.StartStandby(ctx, l, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sb.p = p
	return sb, nil
}

// claimStandby gives the task the standby, if there is one for master: it
// writes the claim (the task's directory, spec file and environment) and
// attaches the standby's output to the task's streams. It returns the
// standby's process, or nil when the task must start cold.
func (ts *taskSet) claimStandby(master, dir, specFile string, env []string, out, errw io.Writer) Process {
	ts.mu.Lock()
	sb := ts.sb
	if sb == nil || sb.master != master {
		ts.mu.Unlock()
		return nil
	}
	select {
	case <-sb.p.Done():
		ts.sb = nil
		ts.mu.Unlock()
		return nil
	default:
	}
	ts.sb = nil
	ts.mu.Unlock()
	envMap := map[string]string{}
	for _, kv := range env {
		if k, v, ok := cutEnv(kv); ok {
			envMap[k] = v
		}
	}
	claim, err := json.Marshal(map[string]any{"dir": dir, "spec_file": specFile, "env": envMap})
	if err == nil {
		err = atomicfile.Write(filepath.Join(sb.dir, standbyClaimFile), claim, 0o600)
	}
	if err != nil {
		ts.a.log.Warn("standby driver not claimed", "err", err)
		sb.p.Stop(5 * time.Second)
		return nil
	}
	sb.out.attach(out)
	sb.errw.attach(errw)
	go func() {
		<-sb.p.Done()
		os.RemoveAll(sb.dir)
	}()
	select { // the next standby starts now
	case ts.kick <- struct{}{}:
	default:
	}
	return sb.p
}

// coldRunningLocked reports a running task that did not start in a
// standby. ts.mu is held.
func (ts *taskSet) coldRunningLocked() bool {
	for _, t := range ts.m {
		if t.cold && t.st.State == wire.TaskRunning {
			return true
		}
	}
	return false
}

// dropStandby stops the standby, if any.
func (ts *taskSet) dropStandby() {
	ts.mu.Lock()
	sb := ts.sb
	ts.sb = nil
	ts.mu.Unlock()
	if sb != nil {
		sb.p.Stop(5 * time.Second)
		os.RemoveAll(sb.dir)
	}
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], i > 0
		}
	}
	return "", "", false
}
