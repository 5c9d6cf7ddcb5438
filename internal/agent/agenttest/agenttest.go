// Package agenttest runs real node agents in-process for tests of the
// control plane, with a fake Spark that needs no JVM: an instance provider
// whose instances are agent.Agent goroutines (speaking the real protocol
// to the real gateway over mutual TLS), and a Spark whose master and
// workers are records in memory. Tests of Spark itself use real instances
// (the e2e group).
package agenttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent"
	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/compute/provider"
)

// Spark is a fake Spark: masters are names, workers register with them
// at once, and tasks end after a moment with the outcome their runtime
// spec asks for ("fake_exit_code", "fake_result").
type Spark struct {
	mu      sync.Mutex
	masters map[string]*fakeMaster
	n       int
	// FailMaster makes masters fail to start.
	FailMaster bool
}

type fakeMaster struct {
	workers map[string]bool
	done    chan struct{}
}

// NewSpark returns an empty fake Spark.
func NewSpark() *Spark { return &Spark{masters: map[string]*fakeMaster{}} }

type daemon struct {
	ui     int
	addr   string
	done   chan struct{}
	once   sync.Once
	stop   func()
	master *fakeMaster
	s      *Spark
}

func (d *daemon) Address() string       { return d.addr }
func (d *daemon) UIPort() int           { return d.ui }
func (d *daemon) Done() <-chan struct{} { return d.done }
func (d *daemon) Stop() {
	d.once.Do(func() {
		if d.stop != nil {
			d.stop()
		}
		close(d.done)
	})
}

func (d *daemon) Snapshot(ctx context.Context) (*wire.SparkSnapshot, error) {
	if d.master == nil {
		return nil, nil
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	snap := &wire.SparkSnapshot{Status: "ALIVE"}
	for w := range d.master.workers {
		snap.Workers = append(snap.Workers, w)
	}
	sort.Strings(snap.Workers)
	return snap, nil
}

// StartMaster starts a fake master.
func (s *Spark) StartMaster(ctx context.Context, l agent.Launch) (agent.Daemon, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.FailMaster {
		return nil, errors.New("the fake master was told to fail")
	}
	s.n++
	url := fmt.Sprintf("spark://fake-%d:7077", s.n)
	// The master's UI: a page that names the master and echoes the path.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ui := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "<html><body>Spark Master at %s; path %s</body></html>", url, r.URL.RequestURI())
	})}
	go ui.Serve(ln)
	m := &fakeMaster{workers: map[string]bool{}, done: make(chan struct{})}
	s.masters[url] = m
	d := &daemon{addr: url, done: m.done, master: m, s: s, ui: ln.Addr().(*net.TCPAddr).Port}
	d.stop = func() {
		ui.Close()
		s.mu.Lock()
		delete(s.masters, url)
		s.mu.Unlock()
	}
	return d, nil
}

// StartWorker registers a fake worker with its master.
func (s *Spark) StartWorker(ctx context.Context, l agent.Launch, masterURL string) (agent.Daemon, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.masters[masterURL]
	if !ok {
		return nil, fmt.Errorf("no master at %s", masterURL)
	}
	s.n++
	addr := fmt.Sprintf("fake-worker-%d:7078", s.n)
	m.workers[addr] = true
	d := &daemon{addr: addr, done: make(chan struct{}), s: s}
	d.stop = func() {
		s.mu.Lock()
		delete(m.workers, addr)
		s.mu.Unlock()
	}
	// A worker goes when its master does.
	go func() {
		select {
		case <-m.done:
			d.Stop()
		case <-d.done:
		}
	}()
	return d, nil
}

type process struct {
	done chan struct{}
	code int
	once sync.Once
}

func (p *process) Done() <-chan struct{} { return p.done }
func (p *process) ExitCode() int         { <-p.done; return p.code }
func (p *process) Stop(time.Duration) {
	p.once.Do(func() { p.code = 143; close(p.done) })
	<-p.done
}

// StartTask runs a fake task: it prints its spec's "fake_output", writes
// "fake_result" as its result and exits with "fake_exit_code" after
// "fake_seconds".
func (s *Spark) StartTask(ctx context.Context, t agent.TaskLaunch) (agent.Process, error) {
	var spec struct {
		Output     string          `json:"fake_output"`
		Result     json.RawMessage `json:"fake_result"`
		ExitCode   int             `json:"fake_exit_code"`
		Seconds    float64         `json:"fake_seconds"`
		ResultFile string          `json:"result_file"`
	}
	if t.SpecFile != "" {
		b, err := os.ReadFile(t.SpecFile)
		if err != nil {
			return nil, err
		}
		json.Unmarshal(b, &spec)
	}
	p := &process{done: make(chan struct{})}
	go func() {
		if spec.Output != "" {
			io.WriteString(t.Stdout, spec.Output)
		}
		select {
		case <-time.After(time.Duration(spec.Seconds*1000) * time.Millisecond):
		case <-p.done:
			return
		}
		if len(spec.Result) > 0 && spec.ResultFile != "" {
			os.WriteFile(spec.ResultFile, spec.Result, 0o600)
		}
		p.once.Do(func() { p.code = spec.ExitCode; close(p.done) })
	}()
	return p, nil
}

// Provider runs instances as in-process agents with a fake Spark.
type Provider struct {
	Dir   string
	Spark *Spark
	Log   *slog.Logger

	mu    sync.Mutex
	insts map[string]*instance
	// Fail makes Create fail with this error.
	Fail error
}

type instance struct {
	nodeType string
	cancel   context.CancelFunc
	done     chan struct{}
	killed   bool
}

// NewProvider returns a provider keeping instance directories in dir.
func NewProvider(dir string) *Provider {
	return &Provider{Dir: dir, Spark: NewSpark(), insts: map[string]*instance{}}
}

// Create starts an in-process agent for the instance.
func (p *Provider) Create(ctx context.Context, spec provider.Spec) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Fail != nil {
		return p.Fail
	}
	if _, ok := p.insts[spec.ID]; ok {
		return nil
	}
	dir := filepath.Join(p.Dir, spec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	log := p.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a, err := agent.New(dir, agent.Config{InstanceID: spec.ID, ControlURL: spec.ControlURL, NodeType: spec.NodeType,
		Cores: spec.Cores, MemoryMB: spec.MemoryMB, CAPEM: spec.CAPEM, CertPEM: spec.CertPEM, KeyPEM: spec.KeyPEM},
		agent.Options{Spark: p.Spark, Log: log})
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(context.Background())
	in := &instance{nodeType: spec.NodeType, cancel: cancel, done: make(chan struct{})}
	p.insts[spec.ID] = in
	go func() {
		defer close(in.done)
		a.Run(actx)
	}()
	return nil
}

// Delete stops the instance's agent.
func (p *Provider) Delete(ctx context.Context, id string) error {
	p.mu.Lock()
	in, ok := p.insts[id]
	delete(p.insts, id)
	p.mu.Unlock()
	if !ok {
		return provider.ErrNotFound
	}
	in.cancel()
	<-in.done
	os.RemoveAll(filepath.Join(p.Dir, id))
	return nil
}

// List returns the instances.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Instance
	for id, in := range p.insts {
		running := true
		select {
		case <-in.done:
			running = false
		default:
		}
		out = append(out, provider.Instance{ID: id, NodeType: in.nodeType, Running: running})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Kill stops an instance's agent as a crash would: the control plane is
// not told and must notice.
func (p *Provider) Kill(id string) {
	p.mu.Lock()
	in, ok := p.insts[id]
	p.mu.Unlock()
	if ok {
		in.cancel()
		<-in.done
	}
}

// IDs lists the running instances.
func (p *Provider) IDs() []string {
	list, _ := p.List(context.Background())
	var out []string
	for _, in := range list {
		if in.Running {
			out = append(out, in.ID)
		}
	}
	return out
}

// Close stops every instance.
func (p *Provider) Close() {
	for _, id := range p.IDs() {
		p.Delete(context.Background(), id)
	}
}
