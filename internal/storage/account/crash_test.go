package account

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/proc"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

// content is the object a writer writes at step seq: its own step number
// and bytes derived from it, so any object read back can be checked whole.
func content(seq int) []byte {
	body := make([]byte, 150_000+seq%7*10_000)
	rand.New(rand.NewSource(int64(seq))).Read(body)
	return append([]byte(fmt.Sprintf("seq=%08d;", seq)), body...)
}

func checkContent(b []byte) (int, bool) {
	if len(b) < 13 || !bytes.HasPrefix(b, []byte("seq=")) {
		return 0, false
	}
	seq, err := strconv.Atoi(string(b[4:12]))
	if err != nil {
		return 0, false
	}
	return seq, bytes.Equal(b, content(seq))
}

func crashOptions(dir string) (Options, func(), error) {
	st, err := sqlstore.Open(context.Background(), filepath.Join(dir, "meta.db"))
	if err != nil {
		return Options{}, nil, err
	}
	ring, err := keys.OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		return Options{}, nil, err
	}
	return Options{Name: "root", Dir: filepath.Join(dir, "storage"), Store: st, Keys: ring,
		Defaults: Settings{Redundancy: GZRS, Encryption: Encryption{KeySource: KeySourcePlatform, InfrastructureEncryption: true}}}, func() { st.Close() }, nil
}

// TestKillDuringWritesLosesNoAcknowledgedObject kills (-9) a process that
// writes through a double-encrypted GZRS account, then reopens the account:
// every object reads back whole, at least as new as its last acknowledged
// write, and a scrub leaves the three zones identical.
func TestKillDuringWritesLosesNoAcknowledgedObject(t *testing.T) {
	if dir := os.Getenv("ACCOUNT_WRITER_DIR"); dir != "" {
		crashWriter(dir)
		return
	}
	dir := t.TempDir()
	exe, _ := os.Executable()
	pr, pw := io.Pipe()
	p, err := proc.Start(proc.Spec{Path: exe, Args: []string{"-test.run", "^TestKillDuringWritesLosesNoAcknowledgedObject$"},
		Env: []string{"ACCOUNT_WRITER_DIR=" + dir}, Stdout: pw, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{}
	sc := bufio.NewScanner(pr)
	n := 0
	for sc.Scan() && n < 120 {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "acked" {
			seq, _ := strconv.Atoi(f[2])
			acked[f[1]] = seq
			n++
		}
	}
	p.Kill()
	pw.Close()
	if n < 120 {
		t.Fatalf("writer acknowledged %d writes", n)
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
	for name, seq := range acked {
		got := storagetest.Read(t, acc, name, 0, -1)
		s, ok := checkContent(got)
		if !ok || s < seq {
			t.Fatalf("%s: read step %d (whole: %v), last acknowledged %d", name, s, ok, seq)
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

func crashWriter(dir string) {
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
		name := fmt.Sprintf("dbfs/%d", seq%20)
		if err := acc.Put(context.Background(), name, bytes.NewReader(content(seq))); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("acked", name, seq)
	}
}
