// Package local is the local instance provider: each instance is a
// `tandem agent` process on this machine with its own directory (its
// configuration, credentials, Spark directories and logs). Agents are
// started detached, in their own session, so instances keep running while
// the control plane restarts; the provider finds them again by the process
// id kept in each directory.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemdata/tandem/internal/agent"
	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/proc"
)

// Provider runs instances as local agent processes.
type Provider struct {
	// Dir holds one directory per instance.
	Dir string
	// Command starts an agent: the tandem binary and "agent"; the provider
	// adds --dir. See AgentCommand.
	Command []string
	// CommandErr says why there is no Command.
	CommandErr error
	// Env is added to every agent's environment.
	Env []string
	// Venv is the Python virtualenv with pyspark the agents use.
	Venv string
	// OrphanSeconds is passed to agents (see agent.Config).
	OrphanSeconds int

	mu    sync.Mutex
	procs map[string]*proc.Process // started by this process, to reap
}

// AgentCommand returns the command that runs `tandem agent`: TANDEM_BIN if
// set, else this executable. A Go test binary is not tandem: starting it
// would run the tests again, so it needs TANDEM_BIN.
func AgentCommand() ([]string, error) {
	if bin := os.Getenv("TANDEM_BIN"); bin != "" {
		return []string{bin, "agent"}, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the tandem binary: %w", err)
	}
	if strings.HasSuffix(exe, ".test") {
		return nil, errors.New("the local instance provider needs the tandem binary to run agents: set TANDEM_BIN (make build makes bin/tandem)")
	}
	return []string{exe, "agent"}, nil
}

const pidFile = "agent.pid"

// freeHost is a loopback address no instance of this provider has: each
// instance is its own host to Spark, as on real machines. Spark keys map
// outputs and worker loss by host, so instances sharing 127.0.0.1 would
// lose each other's shuffle files when one of them leaves (a decommissioned
// worker's removal makes the driver forget every map output on its host).
// Every address of 127.0.0.0/8 is the loopback interface's on Linux.
// Called with p.mu held.
func (p *Provider) freeHost() string {
	used := map[string]bool{}
	entries, _ := os.ReadDir(p.Dir)
	for _, e := range entries {
		if c, err := agent.LoadConfig(p.dir(e.Name())); err == nil {
			used[c.Host] = true
		}
	}
	for i := 1; i < 254*254; i++ {
		h := fmt.Sprintf("127.0.%d.%d", 1+i/254, 1+i%254)
		if !used[h] {
			return h
		}
	}
	return "127.0.0.1"
}

func (p *Provider) dir(id string) string { return filepath.Join(p.Dir, id) }

func validID(id string) bool {
	return id != "" && len(id) <= 64 && !strings.ContainsAny(id, "/\\.") && id == filepath.Base(id)
}

// Create writes the instance's directory and starts its agent.
func (p *Provider) Create(ctx context.Context, spec provider.Spec) error {
	if !validID(spec.ID) {
		return fmt.Errorf("invalid instance id %q", spec.ID)
	}
	if len(p.Command) == 0 {
		if p.CommandErr != nil {
			return p.CommandErr
		}
		return errors.New("the local provider has no agent command")
	}
	dir := p.dir(spec.ID)
	if pid, ok := p.alive(dir); ok {
		_ = pid
		return nil
	}
	p.mu.Lock()
	host := p.freeHost()
	cfg := agent.Config{InstanceID: spec.ID, ControlURL: spec.ControlURL, NodeType: spec.NodeType,
		Cores: spec.Cores, MemoryMB: spec.MemoryMB, Venv: p.Venv, Host: host, OrphanSeconds: p.OrphanSeconds}
	err := agent.WriteConfig(dir, cfg, spec.CAPEM, spec.CertPEM, spec.KeyPEM)
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("write instance directory: %w", err)
	}
	out, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	args := append(append([]string(nil), p.Command[1:]...), "--dir", dir)
	pr, err := proc.Start(proc.Spec{Path: p.Command[0], Args: args, Dir: dir, Env: p.Env, Stdout: out, Stderr: out, Detach: true})
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, pidFile), []byte(strconv.Itoa(pr.Pid())), 0o600); err != nil {
		pr.Kill()
		return err
	}
	p.mu.Lock()
	if p.procs == nil {
		p.procs = map[string]*proc.Process{}
	}
	p.procs[spec.ID] = pr
	p.mu.Unlock()
	return nil
}

// alive reports the agent process of an instance directory, if it runs.
// The process must still be that agent (its command line names the
// directory): a recycled process id is not.
func (p *Provider) alive(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return 0, false // a zombie: it has ended
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmd, []byte(dir)) {
		return 0, false
	}
	return pid, true
}

// Delete stops the instance's process group (the agent and everything it
// started) and removes its directory.
func (p *Provider) Delete(ctx context.Context, id string) error {
	if !validID(id) {
		return provider.ErrNotFound
	}
	dir := p.dir(id)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return provider.ErrNotFound
	}
	p.mu.Lock()
	pr := p.procs[id]
	delete(p.procs, id)
	p.mu.Unlock()
	if pr != nil {
		pr.Stop(10 * time.Second)
	} else if pid, ok := p.alive(dir); ok {
		// Started by an earlier control plane: the agent leads its own
		// session and process group.
		syscall.Kill(-pid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, ok := p.alive(dir); !ok {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	unmountUnder(dir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove instance directory: %w", err)
	}
	return nil
}

// List returns the instances with a directory, running or not.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	entries, err := os.ReadDir(p.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []provider.Instance
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := p.dir(e.Name())
		cfg, err := agent.LoadConfig(dir)
		if err != nil {
			continue
		}
		_, running := p.alive(dir)
		out = append(out, provider.Instance{ID: e.Name(), NodeType: cfg.NodeType, Running: running})
	}
	return out, nil
}
