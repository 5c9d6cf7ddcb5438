package testenv

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// A package that hangs is killed by go test's -timeout with a dump of every
// goroutine, and CI keeps only the tail of what a run printed: the dump's
// last goroutines, seldom the test that hung or where it waits. The watchdog
// fires a little before that timeout and ends the binary itself: the whole
// dump first, then a digest, last, of where each running test is blocked.

// watchdogMargin is how long before go test's own timeout the watchdog fires.
func watchdogMargin(timeout time.Duration) time.Duration {
	return min(30*time.Second, timeout/10)
}

// startWatchdog arms the watchdog from the -test.timeout flag; stop disarms it.
func startWatchdog(stopAll func()) (stop func()) {
	if !flag.Parsed() {
		flag.Parse()
	}
	f := flag.Lookup("test.timeout")
	if f == nil {
		return func() {}
	}
	timeout, err := time.ParseDuration(f.Value.String())
	if err != nil || timeout <= 0 {
		return func() {}
	}
	t := time.AfterFunc(timeout-watchdogMargin(timeout), func() {
		buf := make([]byte, 64<<20)
		buf = buf[:runtime.Stack(buf, true)]
		os.Stderr.Write(buf)
		stopped := make(chan struct{})
		go func() { stopAll(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
		}
		// Last, after whatever stopping the shared servers printed.
		fmt.Fprintf(os.Stderr, "\n%s", hangDigest(string(buf), timeout))
		os.Exit(2)
	})
	return func() { t.Stop() }
}

// hangDigest says, from a dump of all goroutines, which tests are still
// running and the frames of this module each is blocked in, innermost first.
func hangDigest(dump string, timeout time.Duration) string {
	type running struct {
		name   string
		frames []string
	}
	var tests []running
	for _, g := range strings.Split(dump, "\n\n") {
		frames := moduleFrames(g)
		name := ""
		for _, fr := range frames {
			if i := strings.Index(fr, ".Test"); i >= 0 && strings.Contains(fr, "_test.go:") {
				name = fr[i+1:]
				name = name[:strings.IndexAny(name+" (", " (")]
			}
		}
		if name == "" {
			continue
		}
		if len(frames) > 8 {
			frames = frames[:8]
		}
		tests = append(tests, running{name, frames})
	}
	sort.Slice(tests, func(i, j int) bool { return tests[i].name < tests[j].name })
	var b strings.Builder
	fmt.Fprintf(&b, "testenv: the tests ran for almost %v (go test -timeout); still running:\n", timeout)
	if len(tests) == 0 {
		b.WriteString("  (no test goroutine found: the hang is outside the tests, in TestMain or a cleanup)\n")
	}
	for _, r := range tests {
		fmt.Fprintf(&b, "  %s blocked in:\n", r.name)
		for _, fr := range r.frames {
			fmt.Fprintf(&b, "    %s\n", fr)
		}
	}
	return b.String()
}

// moduleFrames returns, for one goroutine of a dump, its frames in this
// module as "func file:line", innermost first.
func moduleFrames(g string) []string {
	const module = "github.com/tandemdata/tandem/"
	lines := strings.Split(strings.TrimSpace(g), "\n")
	var out []string
	for i := 1; i+1 < len(lines); i += 2 {
		fn, loc := lines[i], strings.TrimSpace(lines[i+1])
		if !strings.HasPrefix(fn, module) {
			continue
		}
		fn = strings.TrimPrefix(fn, module)
		if j := strings.LastIndex(fn, "("); j > 0 {
			fn = fn[:j]
		}
		if j := strings.LastIndex(loc, " +0x"); j > 0 {
			loc = loc[:j]
		}
		if j := strings.LastIndex(loc, "/"); j >= 0 {
			loc = loc[j+1:]
		}
		out = append(out, fn+" "+loc)
	}
	return out
}
