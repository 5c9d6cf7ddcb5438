package local

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/compute/provider/providertest"
)

// The suite runs a stand-in for the agent: a shell that sleeps, started
// the way agents are (detached, in its own session).
func TestProviderBehaviour(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider {
		p := &Provider{Dir: t.TempDir(), Command: []string{"/bin/sh", "-c", "sleep 600", "agent"}}
		t.Cleanup(func() {
			list, _ := p.List(t.Context())
			for _, in := range list {
				p.Delete(t.Context(), in.ID)
			}
		})
		return p
	}, func(pr provider.Provider, id string) {
		p := pr.(*Provider)
		b, _ := os.ReadFile(filepath.Join(p.dir(id), pidFile))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		syscall.Kill(-pid, syscall.SIGKILL)
		// The provider that started it reaps it.
		for i := 0; i < 100; i++ {
			if _, ok := p.alive(p.dir(id)); !ok {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestAgentCommandRefusesTestBinaries(t *testing.T) {
	t.Setenv("TANDEM_BIN", "")
	if _, err := AgentCommand(); err == nil || !strings.Contains(err.Error(), "TANDEM_BIN") {
		t.Fatalf("AgentCommand in a test binary: %v", err)
	}
	t.Setenv("TANDEM_BIN", "/usr/local/bin/tandem")
	if cmd, err := AgentCommand(); err != nil || cmd[0] != "/usr/local/bin/tandem" || cmd[1] != "agent" {
		t.Fatalf("AgentCommand with TANDEM_BIN: %v %v", cmd, err)
	}
}
