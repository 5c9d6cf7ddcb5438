// Package proc is the one way Tandem starts and stops child processes: Spark
// daemons and drivers in the agent, agents in the local instance provider,
// and the real servers that integration tests run. Every child gets its own
// process group, so stopping it also stops whatever it started, and its
// output goes to the writers the caller gives.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Spec describes a child process.
type Spec struct {
	Path   string
	Args   []string
	Dir    string
	Env    []string // added to the parent's environment unless ClearEnv
	Stdout io.Writer
	Stderr io.Writer
	Stdin  io.Reader
	// ClearEnv starts the child with Env only.
	ClearEnv bool
	// User, if set and the parent runs as root, runs the child as that
	// user (PostgreSQL refuses to run as root). The child is started with
	// the user's ids directly, not through runuser, so the death signal
	// reaches the child itself.
	User string
	// Detach lets the child outlive the parent (a new session, no death
	// signal): instances keep running while the control plane restarts.
	// Otherwise the child is killed when the parent dies.
	Detach bool
}

// Process is a running child.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	once sync.Once
}

// Start starts the child described by spec.
func Start(spec Spec) (*Process, error) {
	var cred *syscall.Credential
	if spec.User != "" && os.Geteuid() == 0 {
		u, err := user.Lookup(spec.User)
		if err != nil {
			return nil, fmt.Errorf("start %s as %s: %w", spec.Path, spec.User, err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	if spec.ClearEnv {
		cmd.Env = append([]string(nil), spec.Env...)
	} else {
		cmd.Env = append(os.Environ(), spec.Env...)
	}
	cmd.Stdout, cmd.Stderr, cmd.Stdin = spec.Stdout, spec.Stderr, spec.Stdin
	if spec.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	}
	// A grandchild that left the process group (a daemon) and kept the
	// output pipe open would keep Wait, and so Done, from ever returning.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Run starts the child and waits for it, stopping it if ctx ends first.
func Run(ctx context.Context, spec Spec) error {
	p, err := Start(spec)
	if err != nil {
		return err
	}
	select {
	case <-p.Done():
		return p.Err()
	case <-ctx.Done():
		p.Stop(5 * time.Second)
		return ctx.Err()
	}
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the child's exit error once Done is closed (nil for exit status 0).
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// ExitCode is the child's exit status once it has exited, -1 if a signal
// ended it.
func (p *Process) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// Signal sends sig to the child's whole process group.
func (p *Process) Signal(sig syscall.Signal) error {
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Stop asks the process group to end with SIGTERM and kills it if it is
// still there after grace. It returns once the child has exited.
func (p *Process) Stop(grace time.Duration) {
	p.once.Do(func() {
		p.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.Signal(syscall.SIGKILL)
			<-p.done
		}
		// Children of the child that ignored SIGTERM go too.
		p.Signal(syscall.SIGKILL)
	})
	<-p.done
}

// Kill ends the process group at once, as kill -9 would.
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}
