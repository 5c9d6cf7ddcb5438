package agent

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

func TestAttachable(t *testing.T) {
	const master = "spark://127.0.1.2:7077"
	cases := []struct {
		name string
		spec map[string]any
		want bool
	}{
		{"no configuration", map[string]any{}, true},
		{"the agent's own keys", map[string]any{"spark_conf": map[string]any{"spark.master": master, "spark.app.name": "run-1-a"}}, true},
		{"another master (single node: local mode)", map[string]any{"spark_conf": map[string]any{"spark.master": "local[2]"}}, false},
		{"a configuration of its own", map[string]any{"spark_conf": map[string]any{"spark.master": master, "spark.sql.shuffle.partitions": "4"}}, false},
		{"jars", map[string]any{"jars": []any{"lib/a.jar"}}, false},
		{"an empty jar list", map[string]any{"jars": []any{}}, true},
		{"wheels attach (their executors' copy is named by content)", map[string]any{"wheels": []any{"lib/a.whl"}}, true},
	}
	for _, c := range cases {
		if got := attachable(c.spec, master); got != c.want {
			t.Errorf("%s: attachable = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPlanDriver(t *testing.T) {
	cases := []struct {
		name string
		s    driverState
		want driverAction
	}{
		{"none, wanted: start", driverState{want: true}, driverStart},
		{"none, wanted, the last one failed to start not long ago: wait", driverState{want: true, backoff: true}, driverKeep},
		{"none, not wanted (a worker, a job cluster, turned off, a cold task runs)", driverState{}, driverKeep},
		{"running and wanted", driverState{want: true, have: true, current: true}, driverKeep},
		{"running with tasks and wanted", driverState{want: true, have: true, current: true, attached: 3}, driverKeep},
		{"a cold task runs, none attached: stop so it gets the cores", driverState{have: true, current: true}, driverStop},
		{"a cold task runs, tasks attached: drain", driverState{have: true, current: true, attached: 1}, driverKeep},
		{"the cluster restarted: stop even with tasks (their JVM's master is gone)", driverState{want: true, have: true, attached: 2}, driverStop},
		{"the node left the cluster", driverState{have: true}, driverStop},
	}
	for _, c := range cases {
		if got := planDriver(c.s); got != c.want {
			t.Errorf("%s: planDriver = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDriverBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second,
		5: 80 * time.Second, 6: 2 * time.Minute, 50: 2 * time.Minute} {
		if got := driverBackoff(n); got != want {
			t.Errorf("driverBackoff(%d) = %s, want %s", n, got, want)
		}
	}
}

// idleProcess is a process that runs until stopped.
type idleProcess struct {
	done chan struct{}
	once sync.Once
}

func (p *idleProcess) Done() <-chan struct{} { return p.done }
func (p *idleProcess) ExitCode() int         { <-p.done; return 0 }
func (p *idleProcess) Stop(time.Duration)    { p.once.Do(func() { close(p.done) }) }

// TestWaitReadyEndsOnCancelOrGateway: a task waiting for a starting
// shared driver stops waiting as soon as it is canceled (not when the
// 60 s wait ends), and attaches as soon as the driver hands over its
// gateway.
func TestWaitReadyEndsOnCancelOrGateway(t *testing.T) {
	ts := newTaskSet(testAgent(t))
	d := &sharedDriver{dir: t.TempDir(), master: "spark://m:7077", p: &idleProcess{done: make(chan struct{})}}
	ts.drv = d
	defer d.p.Stop(0)

	tk := &task{canceled: make(chan struct{})}
	go func() {
		time.Sleep(100 * time.Millisecond)
		ts.mu.Lock()
		tk.markCanceled()
		tk.markCanceled() // twice: no panic
		ts.mu.Unlock()
	}()
	start := time.Now()
	ts.waitReady(d, driverStartWait, tk.canceled)
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the wait took %s after the cancel", took)
	}
	if d.ready() || !tk.isCanceled() {
		t.Fatal("canceled wait: the driver is not ready and the task is canceled")
	}

	go func() {
		time.Sleep(100 * time.Millisecond)
		os.WriteFile(filepath.Join(d.dir, driverGatewayFile), []byte(`{"port": 41000, "secret": "s3"}`), 0o600)
	}()
	ts.waitReady(d, driverStartWait, make(chan struct{}))
	if !d.ready() || d.port != 41000 {
		t.Fatalf("driver after the gateway: port %d", d.port)
	}
	if _, err := os.Stat(filepath.Join(d.dir, driverGatewayFile)); !os.IsNotExist(err) {
		t.Fatal("the gateway file (it holds the secret) stays after it was read")
	}
}

// driverSpark is a Spark whose shared driver comes up (writes its
// gateway) after a delay and whose tasks run until stopped.
type driverSpark struct {
	Spark
	up time.Duration

	mu      sync.Mutex
	drivers int
	tasks   []TaskLaunch
	procs   []*idleProcess
}

func (s *driverSpark) proc() *idleProcess {
	p := &idleProcess{done: make(chan struct{})}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p
}

func (s *driverSpark) StartDriver(ctx context.Context, l TaskLaunch, dir string) (Process, error) {
	s.mu.Lock()
	s.drivers++
	s.mu.Unlock()
	time.AfterFunc(s.up, func() {
		os.WriteFile(filepath.Join(dir, driverGatewayFile), []byte(`{"port": 41000, "secret": "s3"}`), 0o600)
	})
	return s.proc(), nil
}

func (s *driverSpark) StartTask(ctx context.Context, l TaskLaunch) (Process, error) {
	s.mu.Lock()
	s.tasks = append(s.tasks, l)
	s.mu.Unlock()
	return s.proc(), nil
}

// TestTaskArrivingBeforeTheSharedDriverStartsWaitsForIt: a task that
// arrives on a running driver node before the driver loop has started the
// shared driver (no loop runs here at all) starts it and attaches to it,
// instead of starting cold, which would hold the shared driver off.
func TestTaskArrivingBeforeTheSharedDriverStartsWaitsForIt(t *testing.T) {
	a := testAgent(t)
	a.cfg.ControlURL = "https://127.0.0.1:1" // the task's API relay, unused here
	a.client = &http.Client{}
	sp := &driverSpark{up: 300 * time.Millisecond}
	a.spark = sp
	var err error
	if a.logs, err = newLogSpool(filepath.Join(a.dir, "spool")); err != nil {
		t.Fatal(err)
	}
	a.node = newNode(a)
	a.node.asg = wire.Assignment{Generation: 1, ClusterID: "c1", Role: wire.RoleDriver}
	a.node.st.Phase, a.node.st.MasterURL = wire.PhaseRunning, "spark://127.0.0.1:7077"
	os.MkdirAll(a.node.sparkDir(), 0o700)
	a.tasks = newTaskSet(a)
	ts := a.tasks
	defer func() {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		for _, p := range sp.procs {
			p.Stop(0)
		}
	}()

	ts.start(wire.TaskSpec{ID: "t1", Kind: wire.TaskRuntime, Spec: []byte(`{"notebook": "print(1)"}`)})
	deadline := time.Now().Add(10 * time.Second)
	for {
		sp.mu.Lock()
		n := len(sp.tasks)
		sp.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the task never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.drivers != 1 {
		t.Fatalf("%d shared drivers started, want 1", sp.drivers)
	}
	env := strings.Join(sp.tasks[0].Env, " ")
	if !strings.Contains(env, "PYSPARK_GATEWAY_PORT=41000") || !strings.Contains(env, "TANDEM_JOB_TAG=tandem-task-t1") {
		t.Fatalf("the task started cold, not attached: env %q", env)
	}
	ts.mu.Lock()
	cold := ts.m["t1"].cold
	ts.mu.Unlock()
	if cold {
		t.Fatal("the task is marked cold")
	}
}
