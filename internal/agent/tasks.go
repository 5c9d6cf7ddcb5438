package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/pyruntime"
)

// taskSet runs tasks on the driver node: each is a driver process in
// client mode against the cluster's master (python with tandem_runtime,
// or spark-submit), with its own directory and, for the runtime, a unix
// socket on which the agent relays its workspace API calls to the control
// plane as the task's principal. A task's output is kept in the log spool.
type taskSet struct {
	a  *Agent
	mu sync.Mutex
	m  map[string]*task
	// drv is the shared driver, if one runs (shareddriver.go); kick asks
	// its loop to look again at once.
	drv  *sharedDriver
	kick chan struct{}
	// drvFailures counts shared drivers in a row that ended before they
	// were ready; none starts before drvRetry.
	drvFailures int
	drvRetry    time.Time
	// tendMu serializes tendDriver (the loop, and a task that arrives
	// between two of its looks).
	tendMu sync.Mutex
}

type task struct {
	spec wire.TaskSpec
	st   wire.TaskStatus
	p    Process
	// canceled is closed when the task is to stop (a cancel, or the
	// agent stopping): a task waiting for the shared driver stops waiting.
	canceled chan struct{}
	relay    *http.Server
	sock     string
	// cold: the task runs as its own Spark application; drv: the shared
	// driver it is attached to instead, while it runs.
	cold bool
	drv  *sharedDriver
}

// markCanceled records that the task is to stop; ts.mu is held.
func (t *task) markCanceled() {
	if !t.isCanceled() {
		close(t.canceled)
	}
}

// isCanceled reports whether markCanceled was called.
func (t *task) isCanceled() bool {
	select {
	case <-t.canceled:
		return true
	default:
		return false
	}
}

func newTaskSet(a *Agent) *taskSet {
	return &taskSet{a: a, m: map[string]*task{}, kick: make(chan struct{}, 1)}
}

func (ts *taskSet) ids() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]string, 0, len(ts.m))
	for id := range ts.m {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (ts *taskSet) statuses() []wire.TaskStatus {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]wire.TaskStatus, 0, len(ts.m))
	for _, t := range ts.m {
		out = append(out, t.st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// forget drops finished tasks whose result the control plane has kept.
func (ts *taskSet) forget(ids []string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, id := range ids {
		if t, ok := ts.m[id]; ok && t.st.State == wire.TaskDone {
			delete(ts.m, id)
			os.RemoveAll(ts.dir(id))
		}
	}
}

// clear forgets every task (the node changes cluster).
func (ts *taskSet) clear() {
	ts.mu.Lock()
	ts.m = map[string]*task{}
	ts.mu.Unlock()
}

func (ts *taskSet) dir(id string) string { return filepath.Join(ts.a.dir, "tasks", id) }

func (ts *taskSet) finish(t *task, code int, errMsg string) {
	ts.mu.Lock()
	t.st.State = wire.TaskDone
	t.st.ExitCode = code
	t.st.EndedMillis = time.Now().UnixMilli()
	if errMsg != "" && t.st.Error == "" {
		t.st.Error = errMsg
	}
	relay := t.relay
	ts.mu.Unlock()
	if relay != nil {
		relay.Close()
		os.Remove(t.sock)
	}
	ts.a.notify()
}

// start starts a task unless it is known already.
func (ts *taskSet) start(spec wire.TaskSpec) {
	ts.mu.Lock()
	if _, ok := ts.m[spec.ID]; ok || !validStream(spec.ID) || len(spec.ID) > 100 {
		ts.mu.Unlock()
		return
	}
	t := &task{canceled: make(chan struct{}), spec: spec, st: wire.TaskStatus{ID: spec.ID, State: wire.TaskRunning, StartedMillis: time.Now().UnixMilli()}}
	ts.m[spec.ID] = t
	ts.mu.Unlock()
	if err := ts.launch(t); err != nil {
		ts.a.log.Warn("task did not start", "task", spec.ID, "err", err)
		ts.finish(t, -1, err.Error())
	}
}

func (ts *taskSet) launch(t *task) error {
	master, ok := ts.a.node.driverMaster()
	if !ok {
		return fmt.Errorf("this node is not a running driver")
	}
	dir := ts.dir(t.spec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, data := range t.spec.Files {
		if !validStream(name) {
			return fmt.Errorf("invalid task file name %q", name)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
	}
	out := io.MultiWriter(ts.a.logs.writer("tasks/"+t.spec.ID+"/stdout"), ts.a.logs.writer(wire.StreamStdout))
	errw := io.MultiWriter(ts.a.logs.writer("tasks/"+t.spec.ID+"/stderr"), ts.a.logs.writer(wire.StreamStderr))
	l := TaskLaunch{Dir: dir, SparkDir: ts.a.node.sparkDir(), Host: ts.a.cfg.Host, Env: envList(t.spec.Env), Stdout: out, Stderr: errw}
	asg := ts.a.node.assignment()
	if asg.AuthSecret != "" {
		l.Env = append(l.Env, "_SPARK_AUTH_SECRET="+asg.AuthSecret)
	}
	switch t.spec.Kind {
	case wire.TaskRuntime:
		spec := map[string]any{}
		if len(t.spec.Spec) > 0 {
			if err := json.Unmarshal(t.spec.Spec, &spec); err != nil {
				return fmt.Errorf("task spec: %w", err)
			}
		}
		conf, _ := spec["spark_conf"].(map[string]any)
		if conf == nil {
			conf = map[string]any{}
		}
		if _, ok := conf["spark.master"]; !ok {
			conf["spark.master"] = master
		}
		if _, ok := conf["spark.app.name"]; !ok {
			conf["spark.app.name"] = "task-" + t.spec.ID
		}
		spec["spark_conf"] = conf
		spec["result_file"] = filepath.Join(dir, "result.json")
		sock, err := ts.serveRelay(t)
		if err != nil {
			return err
		}
		spec["api"] = map[string]any{"unix_socket": sock}
		b, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		l.SpecFile = filepath.Join(dir, "spec.json")
		if err := os.WriteFile(l.SpecFile, b, 0o600); err != nil {
			return err
		}
		rt, err := pyruntime.Extract(filepath.Join(ts.a.dir, "runtime"))
		if err != nil {
			return err
		}
		l.Python, l.PythonPath = true, rt
		_, shared, _ := ts.sharedMaster()
		if !attachable(spec, shared) {
			break
		}
		if starter, ok := ts.a.spark.(driverStarter); ok {
			// A shared driver wanted but not started yet (the node's
			// Spark came up, or the cold tasks ended, since the loop's
			// last look) starts now, and the task waits for it rather
			// than start cold and hold it off.
			ts.tendDriver(context.Background(), starter)
		}
		if d := ts.startingDriver(shared); d != nil {
			// The shared driver started before this task and is nearer
			// to ready than a cold start would be.
			go func() {
				ts.waitReady(d, driverStartWait, t.canceled)
				if t.isCanceled() {
					ts.finish(t, -1, "The task was canceled.")
					return
				}
				if err := ts.launchAttached(t, l, shared); err != nil {
					ts.a.log.Warn("task did not start", "task", t.spec.ID, "err", err)
					ts.finish(t, -1, err.Error())
				}
			}()
			return nil
		}
		return ts.launchAttached(t, l, shared)
	case wire.TaskSparkSubmit:
		l.Args = append([]string{"--master", master, "--deploy-mode", "client"}, t.spec.Args...)
	default:
		return fmt.Errorf("unknown task kind %q", t.spec.Kind)
	}
	return ts.launchCold(t, l)
}

// launchAttached starts an attachable runtime task attached to the shared
// driver, or cold when there is no driver ready for it.
func (ts *taskSet) launchAttached(t *task, l TaskLaunch, master string) error {
	_, env := ts.attach(t, master)
	if env == nil {
		return ts.launchCold(t, l)
	}
	// The task's own environment and the gateway; the cluster's RPC
	// secret is in the driver's JVM already.
	l.Env = append(envList(t.spec.Env), env...)
	p, err := ts.a.spark.StartTask(context.Background(), l)
	if err != nil {
		ts.detach(t)
		return err
	}
	ts.started(t, p)
	return nil
}

// launchCold starts a task as its own Spark application.
func (ts *taskSet) launchCold(t *task, l TaskLaunch) error {
	// The shared driver holds the cluster's cores (standalone Spark gives
	// an application every free core): a task that starts cold would wait
	// behind it for ever. It stops now if idle, or once its attached tasks
	// end, and starts again after the cold tasks.
	ts.mu.Lock()
	t.cold = true
	ts.mu.Unlock()
	ts.stopDriver(false)
	p, err := ts.a.spark.StartTask(context.Background(), l)
	if err != nil {
		return err
	}
	ts.started(t, p)
	return nil
}

// started records the task's process and waits for it.
func (ts *taskSet) started(t *task, p Process) {
	ts.mu.Lock()
	t.p = p
	canceled := t.isCanceled()
	ts.mu.Unlock()
	if canceled {
		p.Stop(5 * time.Second)
	}
	go ts.wait(t, ts.dir(t.spec.ID))
}

func (ts *taskSet) wait(t *task, dir string) {
	var timeout <-chan time.Time
	if t.spec.TimeoutSeconds > 0 {
		tm := time.NewTimer(time.Duration(t.spec.TimeoutSeconds) * time.Second)
		defer tm.Stop()
		timeout = tm.C
	}
	msg := ""
	select {
	case <-t.p.Done():
	case <-timeout:
		msg = fmt.Sprintf("The task timed out after %d seconds.", t.spec.TimeoutSeconds)
		t.p.Stop(10 * time.Second)
	}
	code := t.p.ExitCode()
	ts.detach(t)
	if b, err := os.ReadFile(filepath.Join(dir, "result.json")); err == nil && json.Valid(b) {
		ts.mu.Lock()
		t.st.Result = b
		ts.mu.Unlock()
	}
	if msg == "" && t.isCanceled() {
		msg = "The task was canceled."
	}
	ts.finish(t, code, msg)
}

func (ts *taskSet) cancel(id string) {
	ts.mu.Lock()
	t, ok := ts.m[id]
	if ok {
		t.markCanceled()
	}
	var p Process
	if ok {
		p = t.p
	}
	ts.mu.Unlock()
	if p != nil {
		go p.Stop(10 * time.Second)
	}
}

// stopAll stops every running task (the node is being cleaned or the
// agent stops).
func (ts *taskSet) stopAll() {
	ts.stopDriver(true)
	ts.mu.Lock()
	var ps []Process
	for _, t := range ts.m {
		if t.st.State != wire.TaskRunning {
			continue
		}
		t.markCanceled() // one waiting for the shared driver does not start
		if t.p != nil {
			ps = append(ps, t.p)
		}
	}
	ts.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop(5 * time.Second) }()
	}
	wg.Wait()
}

// serveRelay serves the task's API socket: each call is relayed to the
// control plane's gateway over the agent's own channel, naming the task;
// the gateway serves it as the task's principal. The socket's path is
// short (unix socket paths are limited to about 100 bytes) and only the
// agent's user may use it.
func (ts *taskSet) serveRelay(t *task) (string, error) {
	var b [6]byte
	rand.Read(b[:])
	sock := filepath.Join(os.TempDir(), "tandem-"+hex.EncodeToString(b[:])+".sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return "", fmt.Errorf("task API socket: %w", err)
	}
	os.Chmod(sock, 0o600)
	target, err := url.Parse(ts.a.cfg.ControlURL)
	if err != nil {
		l.Close()
		return "", err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = target.Scheme, target.Host
			r.Out.URL.Path = wire.PathAPI + r.In.URL.Path
			r.Out.URL.RawPath = ""
			r.Out.Host = target.Host
			r.Out.Header.Del("Authorization")
			r.Out.Header.Set(wire.HeaderTask, t.spec.ID)
		},
		Transport: ts.a.client.Transport,
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 30 * time.Second}
	ts.mu.Lock()
	t.relay, t.sock = srv, sock
	ts.mu.Unlock()
	go srv.Serve(l)
	return sock, nil
}
