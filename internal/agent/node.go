package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/proc"
)

// node carries out the instance's assignment: one goroutine per
// generation, which cleans the node, runs the init scripts, starts the
// Spark master or worker and watches it. A newer generation stops the
// older one first.
type node struct {
	a *Agent

	mu        sync.Mutex
	asg       wire.Assignment
	st        wire.NodeStatus
	masterURL string // the driver's master, for a worker
	masterCh  chan struct{}
	daemon    Daemon
	snap      *wire.SparkSnapshot // the driver's latest view of its master
	cancel    context.CancelFunc
	done      chan struct{}
	cluster   string // the cluster the node's files belong to

	// spark is the driver's latest Spark figures (see watchSpark).
	spark []wire.Sample
}

func newNode(a *Agent) *node {
	n := &node{a: a, masterCh: make(chan struct{}, 1)}
	n.st = wire.NodeStatus{Phase: wire.PhaseIdle, Host: a.cfg.Host}
	return n
}

func (n *node) generation() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.asg.Generation
}

func (n *node) master() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.masterURL
}

func (n *node) status() wire.NodeStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.st
	st.InitScripts = append([]wire.ScriptResult(nil), n.st.InitScripts...)
	st.ScratchEncrypted = n.a.logs.encrypted()
	return st
}

// driverMaster returns the master URL of a running driver node.
func (n *node) driverMaster() (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.asg.Role != wire.RoleDriver || n.st.Phase != wire.PhaseRunning {
		return "", false
	}
	return n.st.MasterURL, true
}

func (n *node) assignment() wire.Assignment {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.asg
}

func (n *node) uiPort() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.daemon == nil {
		return 0
	}
	return n.daemon.UIPort()
}

func (n *node) setStatus(fn func(st *wire.NodeStatus)) {
	n.mu.Lock()
	fn(&n.st)
	n.mu.Unlock()
	n.a.notify()
}

// setMaster records the driver's master URL (workers).
func (n *node) setMaster(url string) {
	n.mu.Lock()
	changed := url != n.masterURL
	n.masterURL = url
	n.mu.Unlock()
	if changed {
		select {
		case n.masterCh <- struct{}{}:
		default:
		}
	}
}

// assign starts carrying out a newer assignment.
func (n *node) assign(asg wire.Assignment) {
	n.mu.Lock()
	if asg.Generation <= n.asg.Generation {
		n.mu.Unlock()
		return
	}
	cancel, done := n.cancel, n.done
	n.mu.Unlock()
	n.a.log.Info("new assignment", "generation", asg.Generation, "cluster_id", asg.ClusterID, "role", asg.Role)
	if cancel != nil {
		cancel()
		<-done
	}
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	n.mu.Lock()
	n.asg = asg
	n.masterURL = ""
	n.cancel, n.done = cancel, done
	n.st = wire.NodeStatus{Generation: asg.Generation, Phase: wire.PhaseStarting, Host: n.a.cfg.Host,
		Message: "Preparing the node."}
	n.mu.Unlock()
	n.a.notify()
	go func() {
		defer close(done)
		n.run(ctx, asg)
	}()
}

// stop stops whatever the current generation runs (the agent exits).
func (n *node) stop() {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	n.mu.Lock()
	d := n.daemon
	n.daemon, n.snap = nil, nil
	n.mu.Unlock()
	if d != nil {
		d.Stop()
	}
}

func (n *node) sparkDir() string { return filepath.Join(n.a.dir, "spark") }

// clean stops the node's processes and removes what the previous
// assignment left: Spark's work and local directories always, and the log
// spool when the node changes cluster (a pooled instance goes back clean).
func (n *node) clean(asg wire.Assignment) {
	n.mu.Lock()
	d := n.daemon
	n.daemon, n.snap = nil, nil
	prev := n.cluster
	n.mu.Unlock()
	if d != nil {
		d.Stop()
	}
	n.a.tasks.stopAll()
	n.a.files.last()
	os.RemoveAll(n.sparkDir())
	if prev != asg.ClusterID {
		if prev != "" {
			// The previous cluster's logs reach the control plane before
			// the spool is forgotten.
			n.a.drainLogs(10 * time.Second)
		}
		n.a.tasks.clear()
		n.a.logs.reset()
		n.a.files.reset()
		os.RemoveAll(filepath.Join(n.a.dir, "tasks"))
		os.RemoveAll(filepath.Join(n.a.dir, "scripts"))
		n.mu.Lock()
		n.cluster = asg.ClusterID
		n.mu.Unlock()
	}
}

func (n *node) fail(code, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	n.a.log.Warn("assignment failed", "code", code, "message", msg)
	n.setStatus(func(st *wire.NodeStatus) {
		st.Phase, st.FailureCode, st.Message = wire.PhaseFailed, code, msg
	})
}

func (n *node) run(ctx context.Context, asg wire.Assignment) {
	n.clean(asg)
	if asg.ClusterID == "" {
		n.a.disk.release()
		// A pooled instance is idle (ready for a cluster) once it has
		// preloaded its pool's runtime; until then its pool counts it as
		// pending.
		if asg.Preload != "" {
			n.setStatus(func(st *wire.NodeStatus) { st.Message = "Preloading " + asg.Preload + "." })
			n.preload(ctx)
			if ctx.Err() != nil {
				return
			}
		}
		n.setStatus(func(st *wire.NodeStatus) { st.Phase, st.Message = wire.PhaseIdle, "Idle." })
		return
	}
	if asg.LocalDiskEncryption && !n.a.logs.encrypted() {
		if err := n.a.logs.encrypt(); err != nil {
			n.fail("LOCAL_DISK_ENCRYPTION_FAILURE", "Could not make the node's encryption key: %v", err)
			return
		}
	}
	if len(asg.InitScripts) > 0 {
		if !n.runInitScripts(ctx, asg) {
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	l := Launch{Dir: n.sparkDir(), Host: n.a.cfg.Host, Cores: n.a.cfg.Cores, MemoryMB: n.a.cfg.MemoryMB,
		Conf: asg.SparkConf, Env: envList(asg.SparkEnv), Archive: n.archive(asg.Role)}
	if asg.LogDelivery && asg.Role == wire.RoleDriver {
		l.Conf = withEventLog(asg.SparkConf, filepath.Join(n.sparkDir(), eventLogDir))
	}
	n.a.files.start(ctx, asg, n.a.cfg.Host, n.sparkDir())
	l.LocalDirs = n.a.disk.prepare(ctx, asg)
	if asg.AuthSecret != "" {
		// Spark reads the RPC secret from this variable: it stays in the
		// processes' memory, out of files and command lines.
		l.Env = append(l.Env, "_SPARK_AUTH_SECRET="+asg.AuthSecret)
	}
	if asg.Role == wire.RoleDriver {
		n.runDriver(ctx, l)
	} else {
		n.runWorker(ctx, l)
	}
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func (n *node) runDriver(ctx context.Context, l Launch) {
	n.setStatus(func(st *wire.NodeStatus) { st.Phase, st.Message = wire.PhaseStarting, "Starting the Spark master." })
	l.Stdout = n.a.logs.writer(wire.StreamLog4j)
	l.Stderr = n.a.logs.writer(wire.StreamLog4j)
	d, err := n.a.spark.StartMaster(ctx, l)
	if err != nil {
		if ctx.Err() == nil {
			n.fail("SPARK_STARTUP_FAILURE", "The Spark master did not start: %v", err)
		}
		return
	}
	n.mu.Lock()
	n.daemon = d
	n.mu.Unlock()
	n.a.log.Info("spark master up", "master_url", d.Address())
	n.setStatus(func(st *wire.NodeStatus) {
		st.Phase, st.Message, st.MasterURL, st.MasterUIPort = wire.PhaseRunning, "The Spark master is up.", d.Address(), d.UIPort()
	})
	// The Spark figures are read apart: a slow application UI must delay
	// neither this watch nor the agent's reports.
	sparkCtx, stopSpark := context.WithCancel(ctx)
	sparkDone := make(chan struct{})
	go func() { defer close(sparkDone); n.watchSpark(sparkCtx) }()
	defer func() { stopSpark(); <-sparkDone }()
	// Watch the master closely: a worker joining or leaving is reported
	// at once, not at the next heartbeat.
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	var last []string
	load, lastLoad := newLoadTracker(), time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.Done():
			n.fail("SPARK_ERROR", "The Spark master exited.")
			return
		case <-t.C:
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			snap, err := d.Snapshot(sctx)
			cancel()
			if err != nil || snap == nil {
				continue
			}
			// The applications' load, about once a second (the
			// autoscaler's signal); between reads the last one stands.
			if len(snap.ActiveApps) > 0 && time.Since(lastLoad) >= loadEvery {
				lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				snap.Apps, snap.LoadMillis = load.collectLoad(lctx, l.Host, d.UIPort(), snap.ActiveApps), time.Now().UnixMilli()
				cancel()
				lastLoad = time.Now()
			} else if prev := n.lastSnap(); prev != nil && len(snap.ActiveApps) > 0 {
				snap.Apps, snap.LoadMillis = prev.Apps, prev.LoadMillis
			}
			n.mu.Lock()
			n.snap = snap
			n.mu.Unlock()
			if !slices.Equal(snap.Workers, last) {
				last = snap.Workers
				n.a.notify()
			}
		}
	}
}

func (n *node) runWorker(ctx context.Context, l Launch) {
	for {
		// The master about to be joined is news already heard: only a
		// later change restarts the worker.
		select {
		case <-n.masterCh:
		default:
		}
		master := n.master()
		if master == "" {
			n.setStatus(func(st *wire.NodeStatus) {
				st.Phase, st.Message = wire.PhaseStarting, "Waiting for the driver's Spark master."
			})
			select {
			case <-ctx.Done():
				return
			case <-n.masterCh:
				continue
			}
		}
		n.a.log.Info("starting the spark worker", "master_url", master)
		n.setStatus(func(st *wire.NodeStatus) { st.Phase, st.Message = wire.PhaseStarting, "Starting the Spark worker." })
		l.Stdout = n.a.logs.writer("worker/stdout")
		l.Stderr = n.a.logs.writer("worker/stderr")
		d, err := n.a.spark.StartWorker(ctx, l, master)
		if err != nil {
			if ctx.Err() == nil {
				n.fail("SPARK_STARTUP_FAILURE", "The Spark worker did not start: %v", err)
			}
			return
		}
		n.mu.Lock()
		n.daemon = d
		n.mu.Unlock()
		n.a.log.Info("spark worker registered", "master_url", master)
		n.setStatus(func(st *wire.NodeStatus) {
			st.Phase, st.Message, st.WorkerID = wire.PhaseRunning, "The Spark worker is registered with "+master+".", d.Address()
		})
		go n.watchWorker(ctx, d)
		select {
		case <-ctx.Done():
			return
		case <-d.Done():
			n.fail("SPARK_ERROR", "The Spark worker exited.")
			return
		case <-n.masterCh:
			// A new master (the driver was replaced): join it.
			d.Stop()
			n.mu.Lock()
			n.daemon = nil
			n.mu.Unlock()
		}
	}
}

// initScriptTimeout bounds one init script.
const initScriptTimeout = 20 * time.Minute

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// runInitScripts runs the assignment's scripts in order, global ones
// first, keeping each one's output in the log spool (and so in the
// control plane). It reports false if one failed.
func (n *node) runInitScripts(ctx context.Context, asg wire.Assignment) bool {
	n.setStatus(func(st *wire.NodeStatus) {
		st.Phase, st.Message, st.InitScripts = wire.PhaseInitScripts, "Running init scripts.", nil
	})
	dir := filepath.Join(n.a.dir, "scripts")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		n.fail("INIT_SCRIPT_FAILURE", "Could not prepare init scripts: %v", err)
		return false
	}
	isDriver := "FALSE"
	if asg.Role == wire.RoleDriver {
		isDriver = "TRUE"
	}
	isJob := "FALSE"
	if asg.JobCluster {
		isJob = "TRUE"
	}
	env := append(envList(asg.SparkEnv),
		"DB_CLUSTER_ID="+asg.ClusterID, "DB_CLUSTER_NAME="+asg.ClusterName, "DB_IS_DRIVER="+isDriver,
		"DB_CONTAINER_IP="+n.a.cfg.Host, "DB_INSTANCE_TYPE="+asg.NodeType, "DB_IS_JOB_CLUSTER="+isJob,
		"DB_HOME="+n.a.dir)
	logDir := fmt.Sprintf("init_scripts/%s_%s", asg.ClusterID, unsafeName.ReplaceAllString(n.a.cfg.Host, "_"))
	stamp := time.Now().UTC().Format("20060102_150405")
	for i, sc := range asg.InitScripts {
		base := fmt.Sprintf("%s_%02d_%s", stamp, i, unsafeName.ReplaceAllString(filepath.Base(sc.Name), "_"))
		if !strings.HasSuffix(base, ".sh") {
			base += ".sh"
		}
		res := wire.ScriptResult{Source: sc.Source, Kind: sc.Kind, Name: sc.Name, LogStream: logDir + "/" + base}
		if sc.FetchError != "" {
			res.Status, res.ErrorMessage = wire.ScriptFailedFetch, sc.FetchError
			n.scriptDone(res, asg, i)
			return false
		}
		path := sc.Path
		if sc.Kind != "file" {
			path = filepath.Join(dir, base)
			if err := os.WriteFile(path, sc.Body, 0o700); err != nil {
				res.Status, res.ErrorMessage = wire.ScriptFailedFetch, err.Error()
				n.scriptDone(res, asg, i)
				return false
			}
		}
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, initScriptTimeout)
		err := proc.Run(sctx, proc.Spec{Path: "/bin/bash", Args: []string{path}, Dir: n.a.dir, Env: env,
			Stdout: n.a.logs.writer(res.LogStream + ".stdout.log"), Stderr: n.a.logs.writer(res.LogStream + ".stderr.log")})
		timedOut := errors.Is(sctx.Err(), context.DeadlineExceeded)
		cancel()
		res.DurationMs = time.Since(start).Milliseconds()
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			res.Status = wire.ScriptFailedExecution
			res.ExitCode = exitCode(err)
			res.ErrorMessage = fmt.Sprintf("Script exit status is non-zero (%d).", res.ExitCode)
			if timedOut {
				res.ErrorMessage = fmt.Sprintf("Script did not finish in %s.", initScriptTimeout)
			}
			n.scriptDone(res, asg, i)
			return false
		}
		res.Status = wire.ScriptSucceeded
		n.scriptDone(res, asg, i)
	}
	return true
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if e, ok := err.(*exec.ExitError); ok {
		ee = e
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// scriptDone records a script's result; a failed one fails the node and
// marks the scripts after it as not executed.
func (n *node) scriptDone(res wire.ScriptResult, asg wire.Assignment, i int) {
	n.setStatus(func(st *wire.NodeStatus) {
		st.InitScripts = append(st.InitScripts, res)
		if res.Status != wire.ScriptSucceeded {
			for _, rest := range asg.InitScripts[i+1:] {
				st.InitScripts = append(st.InitScripts, wire.ScriptResult{Source: rest.Source, Kind: rest.Kind, Name: rest.Name, Status: wire.ScriptNotExecuted})
			}
			code := "INIT_SCRIPT_FAILURE"
			if res.Source == "global" {
				code = "GLOBAL_INIT_SCRIPT_FAILURE"
			}
			st.Phase, st.FailureCode = wire.PhaseFailed, code
			st.Message = fmt.Sprintf("Init script %s failed: %s", res.Name, res.ErrorMessage)
		}
	})
}

// archive is where a daemon's class-data sharing archive is kept: made
// while the instance idles in a pool that preloads a runtime, it cuts the
// daemon's JVM start when the instance joins a cluster.
func (n *node) archive(role string) string {
	if role != wire.RoleDriver && role != wire.RoleWorker {
		return ""
	}
	return filepath.Join(n.a.dir, "cds", role+".jsa")
}

// preload readies an idle pooled instance for its preloaded runtime: the
// runtime's jars are read once (into the page cache), and a master and a
// worker are started and stopped once to record class-data sharing
// archives of both daemons.
func (n *node) preload(ctx context.Context) {
	rs, ok := n.a.spark.(*realSpark)
	if !ok {
		return
	}
	filepath.WalkDir(filepath.Join(rs.home, "jars"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || ctx.Err() != nil {
			return ctx.Err()
		}
		if f, err := os.Open(p); err == nil {
			io.Copy(io.Discard, f)
			f.Close()
		}
		return nil
	})
	master, worker := n.archive(wire.RoleDriver), n.archive(wire.RoleWorker)
	if _, err := os.Stat(worker); err == nil {
		return
	}
	os.MkdirAll(filepath.Dir(master), 0o700)
	// The archives are only used with the class path they were made with,
	// which names the Spark directory: preload in the same one.
	dir := n.sparkDir()
	defer os.RemoveAll(dir)
	logf, err := os.Create(filepath.Join(filepath.Dir(master), "preload.log"))
	if err != nil {
		return
	}
	defer logf.Close()
	l := Launch{Dir: dir, Host: n.a.cfg.Host, Cores: 1, MemoryMB: 1024, Stdout: logf, Stderr: logf, DumpArchive: true}
	l.Archive = master
	m, err := rs.StartMaster(ctx, l)
	if err != nil {
		n.a.log.Warn("preload: the master did not start", "err", err)
		return
	}
	// Writing an archive at exit takes a few seconds: wait for it.
	defer m.(*daemon).p.Stop(2 * time.Minute)
	l.Archive = worker
	w, err := rs.StartWorker(ctx, l, m.Address())
	if err != nil {
		n.a.log.Warn("preload: the worker did not start", "err", err)
		return
	}
	w.(*daemon).p.Stop(2 * time.Minute)
	n.a.log.Info("preloaded the runtime", "archives", filepath.Dir(master))
}

// snapshot is the driver's latest view of its master, for the report.
func (n *node) snapshot(ctx context.Context) *wire.SparkSnapshot {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.daemon == nil || n.asg.Role != wire.RoleDriver {
		return nil
	}
	return n.snap
}

// lastSnap is the driver's previous view of its master.
func (n *node) lastSnap() *wire.SparkSnapshot {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.snap
}
