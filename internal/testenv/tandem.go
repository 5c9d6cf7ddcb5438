package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/proc"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// TandemBin returns the path of a tandem binary: $TANDEM_BIN if set, else
// one built once per test binary from this module.
func TandemBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("TANDEM_BIN"); p != "" {
			binPath = p
			return
		}
		root, err := repoRoot()
		if err != nil {
			binErr = err
			return
		}
		dir, err := os.MkdirTemp("", "tandem-bin-")
		if err != nil {
			binErr = err
			return
		}
		atExit(func() { os.RemoveAll(dir) })
		binPath = filepath.Join(dir, "tandem")
		var out bytes.Buffer
		binErr = proc.Run(context.Background(), proc.Spec{Path: "go", Args: []string{"build", "-o", binPath, "./cmd/tandem"},
			Dir: root, Stdout: &out, Stderr: &out})
		if binErr != nil {
			binErr = fmt.Errorf("go build ./cmd/tandem: %v: %s", binErr, out.String())
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// KeyVaultServer is a running `tandem keyvault` process.
type KeyVaultServer struct {
	URL     string
	CAFile  string
	Token   string
	DataDir string
	proc    *proc.Process
}

// CAPEM returns the vault's CA certificate.
func (k *KeyVaultServer) CAPEM(t testing.TB) string {
	b, err := os.ReadFile(k.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Stop stops the vault (kill -9 when hard).
func (k *KeyVaultServer) Stop(hard bool) {
	if hard {
		k.proc.Kill()
		return
	}
	k.proc.Stop(5 * time.Second)
}

// KeyVault starts a `tandem keyvault` process for the test on a free
// loopback port with its own data directory; it is stopped when the test
// ends.
func KeyVault(t testing.TB) *KeyVaultServer {
	t.Helper()
	return KeyVaultAt(t, t.TempDir())
}

// KeyVaultAt starts a `tandem keyvault` process on an existing data
// directory (a restart).
func KeyVaultAt(t testing.TB, dir string) *KeyVaultServer {
	t.Helper()
	bin := TandemBin(t)
	addr := Addr(t)
	pr, pw := io.Pipe()
	p, err := proc.Start(proc.Spec{Path: bin, Args: []string{"keyvault", "--data-dir", dir, "--listen", addr},
		Stdout: pw, Stderr: pw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second); pw.Close() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "key vault serving ") {
				tok, err := os.ReadFile(filepath.Join(dir, "token"))
				if err != nil {
					t.Fatal(err)
				}
				return &KeyVaultServer{URL: "https://" + addr, CAFile: filepath.Join(dir, "tls", "ca.pem"),
					Token: strings.TrimSpace(string(tok)), DataDir: dir, proc: p}
			}
		case <-p.Done():
			t.Fatalf("tandem keyvault exited: %v", p.Err())
		case <-deadline:
			t.Fatal("tandem keyvault did not start in 30 s")
		}
	}
}
