package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/proc"
)

// AzuriteAccount and AzuriteKey are Azurite's well-known development
// account and key (public, documented by Azurite; not a secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// AzuriteServer is a running Azurite blob service.
type AzuriteServer struct {
	// URL is the blob service URL (http://127.0.0.1:PORT/devstoreaccount1).
	URL     string
	Account string
	Key     string
	// Dir is where Azurite keeps its data (the raw bytes of every blob).
	Dir string
}

var (
	azuriteOnce sync.Once
	azurite     *AzuriteServer
	azuriteErr  error
)

// Azurite returns the Azurite blob service of this test binary, started
// on first use from the project's .tools (scripts/setup installs it) on a
// free loopback port with a temporary location, and stopped by Main.
func Azurite(t testing.TB) *AzuriteServer {
	t.Helper()
	azuriteOnce.Do(func() { azurite, azuriteErr = startAzurite() })
	if azuriteErr != nil {
		t.Fatalf("Azurite for tests: %v", azuriteErr)
	}
	return azurite
}

// repoRoot finds the module root from the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

func startAzurite() (*AzuriteServer, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, ".tools", "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s not found: run scripts/setup (npm package azurite 3.35.0)", bin)
	}
	dir, err := os.MkdirTemp("", "tandem-azurite-")
	if err != nil {
		return nil, err
	}
	port := freePort()
	logf, err := os.Create(filepath.Join(dir, "azurite.log"))
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o700)
	p, err := proc.Start(proc.Spec{
		Path: "node",
		Args: []string{bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port), "--location", data,
			"--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"},
		Stdout: logf, Stderr: logf,
	})
	if err != nil {
		return nil, err
	}
	atExit(func() {
		p.Stop(5 * time.Second)
		logf.Close()
		os.RemoveAll(dir)
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-p.Done():
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("azurite exited: %v: %s", p.Err(), b)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("azurite did not listen on %s (log %s)", addr, logf.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &AzuriteServer{URL: "http://" + addr + "/" + AzuriteAccount, Account: AzuriteAccount, Key: AzuriteKey, Dir: data}, nil
}
