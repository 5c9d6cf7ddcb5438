package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/proc"
)

// Spark starts the Spark processes of a node. The real one runs Apache
// Spark in standalone mode from SPARK_HOME (the pyspark package); tests of
// the control plane use a fake that needs no JVM.
type Spark interface {
	// StartMaster starts a standalone master and returns once it serves.
	StartMaster(ctx context.Context, l Launch) (Daemon, error)
	// StartWorker starts a worker and returns once it has registered with
	// the master.
	StartWorker(ctx context.Context, l Launch, masterURL string) (Daemon, error)
	// StartTask starts a task's driver process on the driver node.
	StartTask(ctx context.Context, t TaskLaunch) (Process, error)
}

// Launch is what a Spark daemon is started with.
type Launch struct {
	// Dir is the node's Spark directory: conf/, work/, local/.
	Dir      string
	Host     string
	Cores    int
	MemoryMB int
	// Conf is written to spark-defaults.conf, which every Spark process of
	// the node reads (daemons and task drivers).
	Conf map[string]string
	// Env is added to the daemon's environment (spark_env_vars, the RPC
	// secret).
	Env            []string
	Stdout, Stderr io.Writer
	// Archive is a class-data sharing archive for the daemon's JVM (faster
	// starts); DumpArchive writes it when the daemon exits.
	Archive     string
	DumpArchive bool
	// LocalDirs, when set, are Spark's local directories (the elastic
	// disk's); otherwise Dir/local.
	LocalDirs []string
}

// Daemon is a running Spark master or worker.
type Daemon interface {
	// Address is the master's spark:// URL, or the worker's host:port.
	Address() string
	// UIPort is the daemon's web UI port.
	UIPort() int
	// Snapshot reads a master's state (nil for a worker).
	Snapshot(ctx context.Context) (*wire.SparkSnapshot, error)
	Done() <-chan struct{}
	Stop()
}

// TaskLaunch is a task process to start.
type TaskLaunch struct {
	Dir string
	// Python runs `python -m tandem_runtime.task SPEC` with PythonPath on
	// PYTHONPATH; otherwise Args are spark-submit's.
	Python     bool
	SpecFile   string
	PythonPath string
	Args       []string
	Env        []string
	// SparkDir is the node's Spark directory (for its conf/).
	SparkDir string
	// Host is the node's address: the task's Spark driver binds to it and
	// advertises it, never another interface.
	Host           string
	standbyDir     string
	Stdout, Stderr io.Writer
}

// Process is a running task process.
type Process interface {
	Done() <-chan struct{}
	ExitCode() int
	Stop(grace time.Duration)
}

// findSparkHome finds SPARK_HOME: the configured one, or the pyspark
// package of the configured virtualenv.
func findSparkHome(cfg Config) (string, error) {
	if cfg.SparkHome != "" {
		return cfg.SparkHome, nil
	}
	py := pythonOf(cfg)
	out, err := exec.Command(py, "-c", "import pyspark,os;print(os.path.dirname(pyspark.__file__))").Output()
	if err != nil {
		return "", fmt.Errorf("find pyspark with %s (install it with the README's commands): %w", py, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func pythonOf(cfg Config) string {
	venv := cfg.Venv
	if venv == "" {
		venv = ".venv"
	}
	return filepath.Join(venv, "bin", "python")
}

type realSpark struct {
	home   string
	python string
	log    *slog.Logger
}

// freePort returns a TCP port free on host now. Another process may take
// it before Spark binds it; the daemon then fails to start and the node
// reports it.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeConf writes the node's Spark configuration directory: the
// spark-defaults every process reads, and a log4j2 configuration that
// sends Spark's log to the process's stderr (which the agent keeps).
func writeConf(dir string, conf map[string]string) (string, error) {
	confDir := filepath.Join(dir, "conf")
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		return "", err
	}
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("# Written by tandem agent from the cluster's spark_conf.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s\n", k, strings.ReplaceAll(conf[k], "\n", " "))
	}
	if err := os.WriteFile(filepath.Join(confDir, "spark-defaults.conf"), b.Bytes(), 0o600); err != nil {
		return "", err
	}
	log4j := `rootLogger.level = info
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
`
	return confDir, os.WriteFile(filepath.Join(confDir, "log4j2.properties"), []byte(log4j), 0o600)
}

// daemonJavaOpts make the small, long-lived daemons start fast: they do
// little work, so the C1 compiler alone serves them well.
var daemonJavaOpts = []string{"-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xss512k"}

// moduleOpts are the JVM options Spark 4's launcher gives every process on
// Java 17 (its JavaModuleOptions): the daemons are started with java
// directly, which saves the launcher's own JVM start.
var moduleOpts = []string{
	"-XX:+IgnoreUnrecognizedVMOptions",
	"--add-modules=jdk.incubator.vector",
	"--add-opens=java.base/java.lang=ALL-UNNAMED",
	"--add-opens=java.base/java.lang.invoke=ALL-UNNAMED",
	"--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
	"--add-opens=java.base/java.io=ALL-UNNAMED",
	"--add-opens=java.base/java.net=ALL-UNNAMED",
	"--add-opens=java.base/java.nio=ALL-UNNAMED",
	"--add-opens=java.base/java.util=ALL-UNNAMED",
	"--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
	"--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
	"--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
	"--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
	"--add-opens=java.base/sun.nio.cs=ALL-UNNAMED",
	"--add-opens=java.base/sun.security.action=ALL-UNNAMED",
	"--add-opens=java.base/sun.util.calendar=ALL-UNNAMED",
	"--add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
	"-Djdk.reflect.useDirectMethodHandle=false",
	"-Dio.netty.tryReflectionSetAccessible=true",
	"-Dio.netty.allocator.type=pooled",
	"-Dio.netty.handler.ssl.defaultEndpointVerificationAlgorithm=NONE",
	"--enable-native-access=ALL-UNNAMED",
}

func (s *realSpark) env(l Launch, confDir string) []string {
	env := []string{
		"SPARK_HOME=" + s.home,
		"SPARK_CONF_DIR=" + confDir,
		"SPARK_LOCAL_DIRS=" + localDirs(l),
		"SPARK_WORKER_DIR=" + filepath.Join(l.Dir, "work"),
		"SPARK_LOCAL_IP=" + l.Host,
		"SPARK_SCALA_VERSION=2.13",
		"PYSPARK_PYTHON=" + s.python,
		"PYSPARK_DRIVER_PYTHON=" + s.python,
	}
	return append(env, l.Env...)
}

// java returns the JVM to run.
func java() string {
	if h := os.Getenv("JAVA_HOME"); h != "" {
		return filepath.Join(h, "bin", "java")
	}
	if p, err := exec.LookPath("java"); err == nil {
		return p
	}
	return "java"
}

// daemonArgs is the java command line of a daemon. archive, if set, is a
// class-data sharing archive of this daemon: used when present, and
// written at exit when dump is set (a pooled instance's preload).
func (s *realSpark) daemonArgs(confDir, class, archive string, dump bool, args []string) []string {
	// The configuration directory is not on the class path: class-data
	// sharing refuses non-empty directories there. The daemons read
	// spark-defaults.conf from SPARK_CONF_DIR, and log4j from this option.
	out := []string{"-cp", filepath.Join(s.home, "jars") + "/*", "-Dlog4j2.configurationFile=file:" + filepath.Join(confDir, "log4j2.properties")}
	out = append(out, daemonJavaOpts...)
	if archive != "" {
		if dump {
			out = append(out, "-XX:ArchiveClassesAtExit="+archive)
		} else if _, err := os.Stat(archive); err == nil {
			out = append(out, "-XX:SharedArchiveFile="+archive, "-Xshare:auto")
		}
	}
	out = append(out, moduleOpts...)
	out = append(out, class)
	return append(out, args...)
}

func (s *realSpark) StartMaster(ctx context.Context, l Launch) (Daemon, error) {
	port, err := freePort(l.Host)
	if err != nil {
		return nil, err
	}
	ui, err := freePort(l.Host)
	if err != nil {
		return nil, err
	}
	confDir, err := writeConf(l.Dir, l.Conf)
	if err != nil {
		return nil, err
	}
	args := []string{"--host", l.Host, "--port", strconv.Itoa(port), "--webui-port", strconv.Itoa(ui)}
	d := &daemon{addr: fmt.Sprintf("spark://%s:%d", l.Host, port), ui: ui, host: l.Host, master: true}
	return s.start(ctx, d, l, confDir, "org.apache.spark.deploy.master.Master", args, "I have been elected leader")
}

func (s *realSpark) StartWorker(ctx context.Context, l Launch, masterURL string) (Daemon, error) {
	port, err := freePort(l.Host)
	if err != nil {
		return nil, err
	}
	ui, err := freePort(l.Host)
	if err != nil {
		return nil, err
	}
	confDir, err := writeConf(l.Dir, l.Conf)
	if err != nil {
		return nil, err
	}
	mem := workerMemoryMB(l.MemoryMB)
	args := []string{masterURL, "--host", l.Host, "--port", strconv.Itoa(port),
		"--webui-port", strconv.Itoa(ui), "--cores", strconv.Itoa(l.Cores), "--memory", fmt.Sprintf("%dm", mem),
		"--work-dir", filepath.Join(l.Dir, "work")}
	d := &daemon{addr: fmt.Sprintf("%s:%d", l.Host, port), ui: ui, host: l.Host}
	return s.start(ctx, d, l, confDir, "org.apache.spark.deploy.worker.Worker", args, "Successfully registered with master")
}

// workerMemoryMB is what a worker offers executors: the node's memory less
// what the node's own processes need.
func workerMemoryMB(nodeMB int) int {
	return max(512, nodeMB-max(512, nodeMB/4))
}

func (s *realSpark) start(ctx context.Context, d *daemon, l Launch, confDir, class string, args []string, readyLine string) (Daemon, error) {
	for _, sub := range []string{"work", "local"} {
		if err := os.MkdirAll(filepath.Join(l.Dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	ready := make(chan struct{})
	watch := &lineWatch{match: readyLine, ready: ready}
	p, err := proc.Start(proc.Spec{
		Path: java(), Args: s.daemonArgs(confDir, class, l.Archive, l.DumpArchive, args), Dir: l.Dir,
		Env: s.env(l, confDir), Stdout: io.MultiWriter(l.Stdout, watch), Stderr: io.MultiWriter(l.Stderr, watch),
	})
	if err != nil {
		return nil, err
	}
	d.p = p
	if l.DumpArchive {
		// Preloading in a pool must not slow clusters starting on the
		// same machine.
		syscall.Setpriority(syscall.PRIO_PGRP, p.Pid(), 19)
	}
	timeout := time.NewTimer(90 * time.Second)
	defer timeout.Stop()
	select {
	case <-ready:
		return d, nil
	case <-p.Done():
		return nil, fmt.Errorf("%s exited with status %d before it was ready", className(class), p.ExitCode())
	case <-timeout.C:
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("%s was not ready after 90 seconds", className(class))
	case <-ctx.Done():
		p.Stop(5 * time.Second)
		return nil, ctx.Err()
	}
}

func className(c string) string { return c[strings.LastIndex(c, ".")+1:] }

// lineWatch closes ready when a line containing match is written.
type lineWatch struct {
	match string
	ready chan struct{}
	mu    sync.Mutex
	buf   []byte
	done  bool
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if bytes.Contains(w.buf[:i], []byte(w.match)) {
			w.done = true
			close(w.ready)
			w.buf = nil
			return len(p), nil
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.buf = w.buf[len(w.buf)-4096:]
	}
	return len(p), nil
}

type daemon struct {
	addr   string
	host   string
	ui     int
	master bool
	p      *proc.Process
}

func (d *daemon) Address() string       { return d.addr }
func (d *daemon) UIPort() int           { return d.ui }
func (d *daemon) Done() <-chan struct{} { return d.p.Done() }
func (d *daemon) Stop()                 { d.p.Stop(10 * time.Second) }

// masterState is the part of the master's /json/ document we read.
type masterState struct {
	Status    string `json:"status"`
	Cores     int    `json:"cores"`
	CoresUsed int    `json:"coresused"`
	Workers   []struct {
		Host  string `json:"host"`
		Port  int    `json:"port"`
		State string `json:"state"`
	} `json:"workers"`
	ActiveApps []struct {
		ID string `json:"id"`
	} `json:"activeapps"`
}

var uiClient = &http.Client{Timeout: 5 * time.Second}

func (d *daemon) Snapshot(ctx context.Context) (*wire.SparkSnapshot, error) {
	if !d.master {
		return nil, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/json/", net.JoinHostPort(d.host, strconv.Itoa(d.ui))), nil)
	if err != nil {
		return nil, err
	}
	resp, err := uiClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("master state: %s", resp.Status)
	}
	var st masterState
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&st); err != nil {
		return nil, err
	}
	snap := &wire.SparkSnapshot{Status: st.Status, Cores: st.Cores, CoresUsed: st.CoresUsed}
	for _, w := range st.Workers {
		if w.State == "ALIVE" {
			snap.Workers = append(snap.Workers, net.JoinHostPort(w.Host, strconv.Itoa(w.Port)))
		}
		if w.State == "DECOMMISSIONED" {
			snap.Decommissioned = append(snap.Decommissioned, net.JoinHostPort(w.Host, strconv.Itoa(w.Port)))
		}
	}
	sort.Strings(snap.Workers)
	for _, a := range st.ActiveApps {
		snap.ActiveApps = append(snap.ActiveApps, a.ID)
	}
	return snap, nil
}

// StartStandby starts a runtime process in standby (standby.go): it
// starts its SparkContext with dir's standby.json, then waits for a claim.
func (s *realSpark) StartStandby(ctx context.Context, t TaskLaunch, dir string) (Process, error) {
	t.SpecFile = ""
	t.standbyDir = dir
	return s.StartTask(ctx, t)
}

func (s *realSpark) StartTask(ctx context.Context, t TaskLaunch) (Process, error) {
	confDir := filepath.Join(t.SparkDir, "conf")
	env := append([]string{
		"SPARK_HOME=" + s.home,
		"SPARK_CONF_DIR=" + confDir,
		"SPARK_LOCAL_DIRS=" + filepath.Join(t.SparkDir, "local"),
		"PYSPARK_PYTHON=" + s.python,
		"PYSPARK_DRIVER_PYTHON=" + s.python,
		"PYTHONUNBUFFERED=1",
	}, t.Env...)
	if t.Host != "" {
		env = append(env, "SPARK_LOCAL_IP="+t.Host)
	}
	spec := proc.Spec{Dir: t.Dir, Env: env, Stdout: t.Stdout, Stderr: t.Stderr}
	if t.Python {
		spec.Path = s.python
		spec.Args = []string{"-m", "tandem_runtime.task", t.SpecFile}
		if t.standbyDir != "" {
			spec.Args = []string{"-m", "tandem_runtime.task", "--standby", t.standbyDir}
		}
		spec.Env = append(spec.Env, "PYTHONPATH="+t.PythonPath)
	} else {
		spec.Path = filepath.Join(s.home, "bin", "spark-submit")
		spec.Args = t.Args
	}
	p, err := proc.Start(spec)
	if err != nil {
		return nil, err
	}
	return p, nil
}
