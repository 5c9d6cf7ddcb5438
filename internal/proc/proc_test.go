package proc

import (
	"bytes"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child whose own child left the process group and kept the output pipe
// (a daemon) still reports its exit: Done does not wait for the daemon.
func TestDoneDoesNotWaitForADaemonHoldingTheOutput(t *testing.T) {
	var out bytes.Buffer
	p, err := Start(Spec{Path: "sh", Args: []string{"-c", "setsid sleep 60 & echo $!"}, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("Done waited for the daemon that holds the output pipe")
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(out.String())); err == nil {
		syscall.Kill(pid, syscall.SIGKILL)
	} else {
		t.Errorf("the daemon's pid was not printed: %q", out.String())
	}
}
