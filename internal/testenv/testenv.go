// Package testenv starts the real components integration tests run against
// (PostgreSQL, and later Azurite, Prometheus, Spark), each on loopback on a
// free port, and stops them when the test binary ends. A package that uses a
// shared component calls Main from its TestMain.
package testenv

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

// Main runs the tests and then stops every shared component they started.
// A watchdog ends a hung binary shortly before go test's -timeout would,
// saying which tests hang and where (see watchdog.go).
func Main(m *testing.M) {
	inMain.Store(true)
	stop := startWatchdog(stopShared)
	code := m.Run()
	stop()
	stopShared()
	os.Exit(code)
}

// stopShared stops the shared components, newest first, once.
func stopShared() {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanups = nil
}

// inMain: the package's TestMain runs Main, which stops the shared
// servers when its tests end.
var inMain atomic.Bool

// atExit registers fn to run when the package's tests end. A package whose
// TestMain does not call Main would leave its servers running: that is a
// programming error, and says so at once.
func atExit(fn func()) {
	if !inMain.Load() {
		fn()
		panic("testenv: this package starts shared test servers; its TestMain must be func TestMain(m *testing.M) { testenv.Main(m) }")
	}
	cleanupMu.Lock()
	cleanups = append(cleanups, fn)
	cleanupMu.Unlock()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	p := freePort()
	if p == 0 {
		t.Fatal("no free port on 127.0.0.1")
	}
	return p
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr returns "127.0.0.1:<free port>".
func Addr(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}
