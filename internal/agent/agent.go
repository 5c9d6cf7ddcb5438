// Package agent is `tandem agent`, the process that runs on every instance
// (a local process for the local provider, a pod for the Kubernetes one).
// It dials out to the control plane's gateway over mutual TLS with the
// certificate issued for its instance, long-polls for what the instance
// should be (idle in a pool, or a cluster's driver or worker), converges to
// it (init scripts, the Spark master or worker), runs tasks on the driver,
// and reports its status, logs and metrics. Nothing it runs listens for the
// control plane.
//
// It is not the control plane's model of instances: that is the compute
// package. The protocol between the two is in package wire.
package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/pki"
)

// ConfigFile is the agent's configuration in its directory, written by the
// instance provider when it creates the instance.
const ConfigFile = "agent.json"

// Files of the instance's credentials in its directory.
const (
	CAFile   = "ca.pem"
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// Config configures an agent.
type Config struct {
	InstanceID string `json:"instance_id"`
	// ControlURL is the control plane's https URL.
	ControlURL string `json:"control_url"`
	NodeType   string `json:"node_type"`
	Cores      int    `json:"cores"`
	MemoryMB   int    `json:"memory_mb"`
	// Venv is the Python virtualenv with pyspark (SPARK_HOME is found in
	// it); SparkHome overrides.
	Venv      string `json:"venv,omitempty"`
	SparkHome string `json:"spark_home,omitempty"`
	// Host is the address this instance is reached at by other instances.
	Host string `json:"host,omitempty"`
	// OrphanSeconds: with no contact with the control plane for so long,
	// the agent stops everything and exits (0: 600).
	OrphanSeconds int `json:"orphan_seconds,omitempty"`
	// CertPEM, KeyPEM and CAPEM, when set, are used instead of the files
	// (in-process agents in tests).
	CertPEM []byte `json:"-"`
	KeyPEM  []byte `json:"-"`
	CAPEM   []byte `json:"-"`
}

// LoadConfig reads the configuration in dir.
func LoadConfig(dir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return c, fmt.Errorf("read agent configuration: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("agent configuration %s: %w", filepath.Join(dir, ConfigFile), err)
	}
	return c, nil
}

// WriteConfig writes an instance's directory: configuration and
// credentials (the key readable by the owner only).
func WriteConfig(dir string, c Config, caPEM, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{KeyFile, keyPEM, 0o600}, {CertFile, certPEM, 0o644}, {CAFile, caPEM, 0o644}, {ConfigFile, b, 0o600}} {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// Agent is a running node agent.
type Agent struct {
	cfg     Config
	dir     string
	credDir string
	log     *slog.Logger
	client  *http.Client
	spark   Spark

	started time.Time
	logs    *logSpool
	node    *node
	tasks   *taskSet
	// files ships Spark's own log files (executors, event logs).
	files *fileShipper
	disk  *elasticDisk

	mu          sync.Mutex
	lastContact time.Time
	heartbeat   time.Duration
	changed     chan struct{}

	// cpuPrev is the host's CPU counters at the previous metrics (the
	// report loop's own).
	cpuPrev cpuTimes
}

// Options change how an agent runs (tests).
type Options struct {
	// Spark starts the Spark processes; nil means real Apache Spark.
	Spark Spark
	// Transport overrides the HTTP transport to the control plane.
	Transport http.RoundTripper
	Log       *slog.Logger
	// CredentialsDir holds the instance's certificate, key and CA when
	// they are not in the working directory (a pod mounts them read-only
	// from a secret).
	CredentialsDir string
}

// New prepares an agent working in dir.
func New(dir string, cfg Config, opts Options) (*Agent, error) {
	if cfg.InstanceID == "" || cfg.ControlURL == "" {
		return nil, errors.New("agent configuration needs instance_id and control_url")
	}
	if cfg.Host == "" {
		// A pod is told its address by the downward API.
		cfg.Host = os.Getenv("TANDEM_AGENT_HOST")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Cores <= 0 {
		cfg.Cores = 1
	}
	if cfg.MemoryMB <= 0 {
		cfg.MemoryMB = 1024
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("instance_id", cfg.InstanceID)
	a := &Agent{cfg: cfg, dir: dir, credDir: opts.CredentialsDir, log: log, started: time.Now(), heartbeat: 2 * time.Second,
		changed: make(chan struct{}, 1), lastContact: time.Now()}
	if a.credDir == "" {
		a.credDir = dir
	}
	if opts.Transport != nil {
		a.client = &http.Client{Transport: opts.Transport}
	} else {
		tr, err := a.transport()
		if err != nil {
			return nil, err
		}
		a.client = &http.Client{Transport: tr}
	}
	a.spark = opts.Spark
	if a.spark == nil {
		home, err := findSparkHome(cfg)
		if err != nil {
			return nil, err
		}
		a.spark = &realSpark{home: home, python: pythonOf(cfg), log: log}
	}
	var err error
	if a.logs, err = newLogSpool(filepath.Join(dir, "spool")); err != nil {
		return nil, err
	}
	a.node = newNode(a)
	a.files = newFileShipper(a.logs)
	a.tasks = newTaskSet(a)
	a.disk = newElasticDisk(a, nil)
	return a, nil
}

func (a *Agent) transport() (*http.Transport, error) {
	caPEM, certPEM, keyPEM := a.cfg.CAPEM, a.cfg.CertPEM, a.cfg.KeyPEM
	var err error
	if caPEM == nil {
		if caPEM, err = os.ReadFile(filepath.Join(a.credDir, CAFile)); err != nil {
			return nil, fmt.Errorf("read the control plane's CA: %w", err)
		}
	}
	if certPEM == nil {
		if certPEM, err = os.ReadFile(filepath.Join(a.credDir, CertFile)); err != nil {
			return nil, fmt.Errorf("read the instance certificate: %w", err)
		}
		if keyPEM, err = os.ReadFile(filepath.Join(a.credDir, KeyFile)); err != nil {
			return nil, fmt.Errorf("read the instance key: %w", err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load the instance certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the control plane's CA file holds no certificate")
	}
	return &http.Transport{
		TLSClientConfig:     pki.ClientConfig(roots, &cert),
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}, nil
}

// Run runs the agent until ctx ends, the control plane says the instance
// is gone, or the control plane stays out of reach for the orphan timeout.
// Everything the agent started is stopped when it returns.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.log.Info("agent started", "control_url", a.cfg.ControlURL, "node_type", a.cfg.NodeType)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- a.pollLoop(ctx) }()
	go func() { defer wg.Done(); errc <- a.reportLoop(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); a.tasks.driverLoop(ctx) }()
	err := <-errc
	cancel()
	wg.Wait()
	a.tasks.stopAll()
	a.node.stop()
	// The instance is going away: what its processes wrote last reaches
	// the control plane (the cluster's log delivery) before it does.
	a.files.last()
	a.finalReport(5 * time.Second)
	a.disk.release()
	a.log.Info("agent stopped", "reason", err)
	if errors.Is(err, context.Canceled) || errors.Is(err, errExit) {
		return nil
	}
	return err
}

var errExit = errors.New("the control plane removed this instance")

func (a *Agent) orphanTimeout() time.Duration {
	if a.cfg.OrphanSeconds > 0 {
		return time.Duration(a.cfg.OrphanSeconds) * time.Second
	}
	return 10 * time.Minute
}

func (a *Agent) contact() {
	a.mu.Lock()
	a.lastContact = time.Now()
	a.mu.Unlock()
}

func (a *Agent) checkOrphan() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Since(a.lastContact) > a.orphanTimeout() {
		return fmt.Errorf("no contact with the control plane for %s", a.orphanTimeout())
	}
	return nil
}

// notify asks for a report now (the node's status changed).
func (a *Agent) notify() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

func (a *Agent) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.ControlURL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	a.contact()
	return json.NewDecoder(resp.Body).Decode(out)
}

func (a *Agent) pollLoop(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for {
		if err := a.checkOrphan(); err != nil {
			return err
		}
		req := wire.PollRequest{Generation: a.node.generation(), MasterURL: a.node.master(), Tasks: a.tasks.ids()}
		var resp wire.PollResponse
		err := a.post(ctx, wire.PathPoll, req, &resp)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			a.log.Debug("poll failed", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		if resp.Exit {
			return errExit
		}
		if resp.HeartbeatMillis > 0 {
			a.mu.Lock()
			a.heartbeat = time.Duration(resp.HeartbeatMillis) * time.Millisecond
			a.mu.Unlock()
		}
		if resp.Assignment != nil {
			a.node.assign(*resp.Assignment)
		}
		if resp.MasterURL != "" {
			a.node.setMaster(resp.MasterURL)
		}
		for _, t := range resp.StartTasks {
			a.tasks.start(t)
		}
		for _, id := range resp.CancelTasks {
			a.tasks.cancel(id)
		}
		for _, p := range resp.Proxy {
			go a.proxy(ctx, p)
		}
	}
}

// maxReportLogBytes bounds the log data in one report.
const maxReportLogBytes = 2 << 20

func (a *Agent) reportLoop(ctx context.Context) error {
	var lastMetrics time.Time
	for {
		if err := a.checkOrphan(); err != nil {
			return err
		}
		rep := wire.Report{Status: a.node.status(), Tasks: a.tasks.statuses()}
		rep.Status.StartedMillis = a.started.UnixMilli()
		rep.Status.Version = Version
		rep.Spark = a.node.snapshot(ctx)
		rep.Status.Disk, rep.Status.DiskEvents = a.disk.status(), a.disk.pending()
		if time.Since(lastMetrics) >= 5*time.Second {
			rep.Metrics = a.metrics()
			a.hostStats(rep.Metrics)
			rep.Metrics.Spark = a.node.sparkFigures()
			lastMetrics = time.Now()
		}
		chunks := a.logs.pending(maxReportLogBytes)
		rep.Logs = chunks
		var resp wire.ReportResponse
		if err := a.post(ctx, wire.PathReport, rep, &resp); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.log.Debug("report failed", "err", err)
		} else {
			a.logs.ack(resp.Logs)
			a.tasks.forget(resp.Tasks)
			a.disk.ack(resp.DiskEvents)
			a.disk.growAnswer(resp.ScratchGranted, resp.ScratchRefused)
		}
		a.mu.Lock()
		every := a.heartbeat
		a.mu.Unlock()
		// More log data waiting: send it at once.
		if a.logs.hasPending() {
			every = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		case <-a.changed:
		}
	}
}

// Version is the agent's build version, set by cmd/tandem.
var Version = "dev"
