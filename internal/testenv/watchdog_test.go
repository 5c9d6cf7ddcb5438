package testenv

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

const dumpOneHang = `goroutine 1 [chan receive]:
testing.(*T).Run(0xc000003a40, {0x1e1d6a4?, 0x0?}, 0x1f0e1c8)
	/usr/local/go/src/testing/testing.go:1751 +0x3ab
main.main()
	_testmain.go:65 +0x9b

goroutine 40 [semacquire, 24 minutes]:
sync.runtime_SemacquireWaitGroup(0xc0001b2d58?)
	/usr/local/go/src/runtime/sema.go:110 +0x25
github.com/tandemdata/tandem/internal/server.(*Server).Close(0xc0001b2c00)
	/check/work/main/internal/server/server.go:552 +0x8d
github.com/tandemdata/tandem/internal/dr_test.TestKillNine.func2()
	/check/work/main/internal/dr/kill_test.go:97 +0x1d
testing.(*common).Cleanup.func1()
	/usr/local/go/src/testing/testing.go:1211 +0x1c8
github.com/tandemdata/tandem/internal/dr_test.TestKillNine(0xc000003c00)
	/check/work/main/internal/dr/kill_test.go:140 +0x4a5
testing.tRunner(0xc000003c00, 0x1f0e1c8)
	/usr/local/go/src/testing/testing.go:1792 +0xf4
created by testing.(*T).Run in goroutine 1
	/usr/local/go/src/testing/testing.go:1851 +0x413

goroutine 77 [select]:
github.com/tandemdata/tandem/internal/dr.(*Region).watch(0xc000200000)
	/check/work/main/internal/dr/watch.go:40 +0x120
created by github.com/tandemdata/tandem/internal/dr.(*Region).Start in goroutine 40
	/check/work/main/internal/dr/region.go:230 +0x99
`

func TestHangDigest(t *testing.T) {
	cases := []struct {
		name, dump string
		want       []string
	}{
		{"a test blocked in a cleanup", dumpOneHang, []string{
			"testenv: the tests ran for almost 25m0s (go test -timeout); still running:",
			"  TestKillNine blocked in:",
			"    internal/server.(*Server).Close server.go:552",
			"    internal/dr_test.TestKillNine.func2 kill_test.go:97",
			"    internal/dr_test.TestKillNine kill_test.go:140",
		}},
		{"no test goroutine", "goroutine 1 [running]:\nmain.main()\n\t_testmain.go:65 +0x9b\n", []string{
			"testenv: the tests ran for almost 25m0s (go test -timeout); still running:",
			"  (no test goroutine found: the hang is outside the tests, in TestMain or a cleanup)",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := hangDigest(c.dump, 25*time.Minute)
			if want := strings.Join(c.want, "\n") + "\n"; got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// The digest reads the runtime's own dump: a goroutine this test started,
// blocked in a helper, is named by the test and the helper's frame.
func blockedHelper(release chan struct{}) { <-release }

func TestHangDigestReadsARealDump(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	go blockedHelper(release)
	time.Sleep(50 * time.Millisecond)
	buf := make([]byte, 1<<20)
	got := hangDigest(string(buf[:runtime.Stack(buf, true)]), time.Minute)
	if !strings.Contains(got, "  TestHangDigestReadsARealDump blocked in:\n    internal/testenv.TestHangDigestReadsARealDump watchdog_test.go:") {
		t.Errorf("the running test is not named with its frame:\n%s", got)
	}
}

func TestWatchdogMargin(t *testing.T) {
	for _, c := range []struct{ timeout, want time.Duration }{
		{25 * time.Minute, 30 * time.Second},
		{time.Minute, 6 * time.Second},
	} {
		if got := watchdogMargin(c.timeout); got != c.want {
			t.Errorf("watchdogMargin(%v) = %v, want %v", c.timeout, got, c.want)
		}
	}
}

func TestMain(m *testing.M) { Main(m) }

// TestHangsForTheWatchdog hangs when TestWatchdogEndsAHungBinary runs it.
func TestHangsForTheWatchdog(t *testing.T) {
	if os.Getenv("TESTENV_HANG") == "" {
		t.Skip("run by TestWatchdogEndsAHungBinary")
	}
	select {}
}

func TestWatchdogEndsAHungBinary(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHangsForTheWatchdog$", "-test.timeout=5s")
	cmd.Env = append(os.Environ(), "TESTENV_HANG=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("the hung binary ended with %v, want exit status 2", err)
	}
	out := stderr.String()
	if strings.Contains(out, "panic: test timed out") {
		t.Errorf("go test's own timeout fired before the watchdog")
	}
	want := "still running:\n  TestHangsForTheWatchdog blocked in:\n    internal/testenv.TestHangsForTheWatchdog watchdog_test.go:"
	if !strings.Contains(out, want) {
		t.Errorf("the digest does not end the output naming the hung test; the last 600 bytes:\n%s", out[max(0, len(out)-600):])
	}
}
