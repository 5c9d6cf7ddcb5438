package account

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdata/tandem/internal/proc"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
)

// appendLine is the batch an appender appends at step seq: whole lines,
// some large enough to cross encryption chunks.
func appendLine(seq int) []byte {
	n := 50 + seq%5*30
	if seq%7 == 3 {
		n = 90_000
	}
	return []byte(fmt.Sprintf("seq=%08d;%s\n", seq, strings.Repeat(string(rune('a'+seq%26)), n)))
}

// TestKillDuringAppendsLeavesWholeBatches kills (-9) a process appending
// to objects of a double-encrypted GZRS account, then reopens it: each
// object is the batches 1..k in order, whole, with k at least the last
// acknowledged one, and appending goes on from there.
func TestKillDuringAppendsLeavesWholeBatches(t *testing.T) {
	if dir := os.Getenv("ACCOUNT_APPENDER_DIR"); dir != "" {
		crashAppender(dir)
		return
	}
	dir := t.TempDir()
	exe, _ := os.Executable()
	pr, pw := io.Pipe()
	p, err := proc.Start(proc.Spec{Path: exe, Args: []string{"-test.run", "^TestKillDuringAppendsLeavesWholeBatches$"},
		Env: []string{"ACCOUNT_APPENDER_DIR=" + dir}, Stdout: pw, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{}
	sc := bufio.NewScanner(pr)
	n := 0
	for sc.Scan() && n < 150 {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "acked" {
			seq, _ := strconv.Atoi(f[2])
			acked[f[1]] = seq
			n++
		}
	}
	p.Kill()
	pw.Close()
	if n < 150 {
		t.Fatalf("appender acknowledged %d appends", n)
	}
	opts, closeStore, err := crashOptions(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	acc, err := Open(bg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	for name, last := range acked {
		got := storagetest.Read(t, acc, name, 0, -1)
		k := wholeBatches(t, name, got)
		if k < last {
			t.Fatalf("%s holds batches up to %d, last acknowledged %d", name, k, last)
		}
		if err := acc.Append(bg, name, bytes.NewReader(appendLine(k+3))); err != nil {
			t.Fatal(err)
		}
		if got := storagetest.Read(t, acc, name, 0, -1); wholeBatches(t, name, got) != k+3 {
			t.Fatalf("%s: the append after the crash did not land whole", name)
		}
	}
	if _, err := acc.Scrub(bg); err != nil {
		t.Fatal(err)
	}
	rep, err := acc.Scrub(bg)
	if err != nil || rep.Repaired != 0 || rep.Removed != 0 {
		t.Fatalf("second scrub still repairs: %+v %v", rep, err)
	}
}

// wholeBatches checks that b is the batches of its name's steps in order
// (every third step, as the appender spreads them over three names) and
// returns the last step.
func wholeBatches(t *testing.T, name string, b []byte) int {
	t.Helper()
	k := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.Fatalf("%s: torn batch after step %d", name, k)
		}
		seq, err := strconv.Atoi(string(b[4:12]))
		// Each name takes every third step: none may be missing.
		if err != nil || (k > 0 && seq != k+3) || (k == 0 && seq > 3) || !bytes.Equal(b[:i+1], appendLine(seq)) {
			t.Fatalf("%s: batch after step %d is not whole or out of order", name, k)
		}
		k = seq
		b = b[i+1:]
	}
	return k
}

func crashAppender(dir string) {
	opts, _, err := crashOptions(dir)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	acc, err := Open(context.Background(), opts)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for seq := 1; ; seq++ {
		name := fmt.Sprintf("insights-logs-x/h=%d/PT1H.json", seq%3)
		if err := acc.Append(context.Background(), name, bytes.NewReader(appendLine(seq))); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("acked", name, seq)
	}
}
