package geo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/proc"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/local"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
)

var bg = context.Background()

// switchable is a backend that can be taken down, as a network cut does.
type switchable struct {
	storage.Backend
	mu   sync.Mutex
	down bool
}

var errCut = errors.New("connection refused")

func (s *switchable) set(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }
func (s *switchable) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errCut
	}
	return nil
}
func (s *switchable) Put(ctx context.Context, n string, r io.Reader) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Backend.Put(ctx, n, r)
}
func (s *switchable) Get(ctx context.Context, n string, o, l int64) (io.ReadCloser, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Backend.Get(ctx, n, o, l)
}
func (s *switchable) Stat(ctx context.Context, n string) (storage.ObjectInfo, error) {
	if err := s.err(); err != nil {
		return storage.ObjectInfo{}, err
	}
	return s.Backend.Stat(ctx, n)
}
func (s *switchable) Delete(ctx context.Context, n string) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Backend.Delete(ctx, n)
}
func (s *switchable) List(ctx context.Context, p string, fn func(storage.ObjectInfo) error) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Backend.List(ctx, p, fn)
}

type fixture struct {
	dir                string
	primary, secondary *switchable
	layer              *Layer
	cancel             context.CancelFunc
	done               chan struct{}
}

func newFixture(t *testing.T, ra bool) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	p, _ := local.New(filepath.Join(f.dir, "primary"))
	s, _ := local.New(filepath.Join(f.dir, "secondary"))
	f.primary, f.secondary = &switchable{Backend: p}, &switchable{Backend: s}
	f.open(t, ra)
	return f
}

func (f *fixture) open(t *testing.T, ra bool) {
	t.Helper()
	l, err := Open(Config{Primary: f.primary, Secondary: f.secondary, JournalDir: filepath.Join(f.dir, "journal"),
		ReadAccess: ra, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.layer = l
	f.start()
	t.Cleanup(func() { f.stop(); l.Close() })
}

func (f *fixture) start() {
	ctx, cancel := context.WithCancel(bg)
	f.cancel, f.done = cancel, make(chan struct{})
	go func() { defer close(f.done); f.layer.Run(ctx) }()
}

func (f *fixture) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
		f.cancel = nil
	}
}

func (f *fixture) waitSynced(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.layer.Status().Backlog > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("backlog never drained: %+v", f.layer.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLayerBehaviour(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return newFixture(t, false).layer })
}

func TestChangesReachTheSecondary(t *testing.T) {
	f := newFixture(t, false)
	data := storagetest.Random(300000)
	storagetest.Put(t, f.layer, "a", data)
	storagetest.Put(t, f.layer, "b", []byte("bye"))
	f.layer.Delete(bg, "b")
	f.waitSynced(t)
	if got := storagetest.Read(t, f.secondary, "a", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("secondary copy differs")
	}
	if _, err := f.secondary.Stat(bg, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted object still in the secondary: %v", err)
	}
	st := f.layer.Status()
	if !st.HasLastSyncTime || time.Since(st.LastSyncTime) > time.Second || st.Shipped < 3 {
		t.Fatalf("status after sync = %+v", st)
	}
}

func TestSecondaryDownJournalHoldsTheBacklogUntilItReturns(t *testing.T) {
	f := newFixture(t, false)
	f.secondary.set(true)
	before := time.Now()
	for i := 0; i < 20; i++ {
		storagetest.Put(t, f.layer, fmt.Sprintf("o/%d", i), []byte(fmt.Sprint(i)))
	}
	time.Sleep(100 * time.Millisecond)
	st := f.layer.Status()
	if st.Backlog != 20 || st.SecondaryAvailable || !strings.Contains(st.LastError, "connection refused") {
		t.Fatalf("status while the secondary is down = %+v", st)
	}
	if st.LastSyncTime.After(before.Add(50*time.Millisecond)) || st.LastSyncTime.Before(before) {
		t.Fatalf("last sync time %v moved past the oldest unshipped change (%v)", st.LastSyncTime, before)
	}
	// A restart meanwhile keeps the backlog.
	f.stop()
	f.layer.Close()
	f.open(t, false)
	if n := f.layer.Status().Backlog; n != 20 {
		t.Fatalf("backlog after restart = %d", n)
	}
	f.secondary.set(false)
	f.waitSynced(t)
	n := 0
	f.secondary.List(bg, "o/", func(storage.ObjectInfo) error { n++; return nil })
	if n != 20 {
		t.Fatalf("secondary has %d objects, want 20", n)
	}
	if !f.layer.Status().SecondaryAvailable {
		t.Fatal("secondary still reported unavailable")
	}
}

func TestTornJournalTailIsCutOff(t *testing.T) {
	f := newFixture(t, false)
	f.secondary.set(true)
	storagetest.Put(t, f.layer, "x", []byte("1"))
	f.stop()
	f.layer.Close()
	segs, _ := filepath.Glob(filepath.Join(f.dir, "journal", "*.seg"))
	last := segs[len(segs)-1]
	fh, _ := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	fh.Write([]byte{0, 0, 0, 40, 1, 2})
	fh.Close()
	f.secondary.set(false)
	f.open(t, false)
	f.waitSynced(t)
	if got := storagetest.Read(t, f.secondary, "x", 0, -1); string(got) != "1" {
		t.Fatalf("secondary = %q", got)
	}
}

func TestReadAccessServesReadsFromTheSecondary(t *testing.T) {
	f := newFixture(t, true)
	storagetest.Put(t, f.layer, "obj", []byte("replicated"))
	f.waitSynced(t)
	if got := storagetest.Read(t, f.layer.Secondary(), "obj", 0, -1); string(got) != "replicated" {
		t.Fatalf("secondary endpoint read %q", got)
	}
	if err := f.layer.Secondary().Put(bg, "obj", strings.NewReader("x")); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("write to the secondary endpoint = %v", err)
	}
	f.primary.set(true)
	if got := storagetest.Read(t, f.layer, "obj", 0, -1); string(got) != "replicated" {
		t.Fatalf("read with the primary down = %q", got)
	}
	if _, err := f.layer.Stat(bg, "obj"); err != nil {
		t.Fatalf("stat with the primary down: %v", err)
	}
}

func TestWithoutReadAccessTheSecondaryIsClosed(t *testing.T) {
	f := newFixture(t, false)
	storagetest.Put(t, f.layer, "obj", []byte("x"))
	f.waitSynced(t)
	if _, err := f.layer.Secondary().Get(bg, "obj", 0, -1); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("secondary read without RA = %v", err)
	}
	f.primary.set(true)
	if _, err := f.layer.Get(bg, "obj", 0, -1); !errors.Is(err, errCut) {
		t.Fatalf("read with the primary down and no RA = %v, want the primary's error", err)
	}
}

func TestInitialSyncMakesTheSecondaryACopy(t *testing.T) {
	f := newFixture(t, false)
	f.stop()
	f.layer.Close()
	// Data written before geo-replication was on, and a stray object.
	f.primary.Put(bg, "old/1", strings.NewReader("one"))
	f.primary.Put(bg, "old/2", strings.NewReader("two"))
	f.secondary.Put(bg, "stray", strings.NewReader("x"))
	f.open(t, false)
	f.stop()
	if err := f.layer.InitialSync(bg); err != nil {
		t.Fatal(err)
	}
	if st := f.layer.Status(); st.HasLastSyncTime || !st.InitialSync {
		t.Fatalf("status during the initial sync = %+v", st)
	}
	f.start()
	f.waitSynced(t)
	if st := f.layer.Status(); !st.HasLastSyncTime || st.InitialSync {
		t.Fatalf("status after the initial sync = %+v", st)
	}
	var names []string
	f.secondary.List(bg, "", func(oi storage.ObjectInfo) error { names = append(names, oi.Name); return nil })
	if fmt.Sprint(names) != "[old/1 old/2]" {
		t.Fatalf("secondary holds %v", names)
	}
}

// TestKilledWriterLosesNoAcknowledgedChange kills a process that writes
// through the layer (kill -9, no shutdown) and checks that every write it
// acknowledged reaches the secondary once a new process resumes shipping.
func TestKilledWriterLosesNoAcknowledgedChange(t *testing.T) {
	if dir := os.Getenv("GEO_WRITER_DIR"); dir != "" {
		writer(dir)
		return
	}
	dir := t.TempDir()
	exe, _ := os.Executable()
	pr, pw := io.Pipe()
	p, err := proc.Start(proc.Spec{Path: exe, Args: []string{"-test.run", "^TestKilledWriterLosesNoAcknowledgedChange$"},
		Env: []string{"GEO_WRITER_DIR=" + dir}, Stdout: pw, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(pr)
	var acked []string
	for sc.Scan() && len(acked) < 200 {
		if name, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked = append(acked, name)
		}
	}
	p.Kill()
	pw.Close()
	if len(acked) < 200 {
		t.Fatalf("writer acknowledged only %d writes", len(acked))
	}
	pb, _ := local.New(filepath.Join(dir, "primary"))
	sb, _ := local.New(filepath.Join(dir, "secondary"))
	f := &fixture{dir: dir, primary: &switchable{Backend: pb}, secondary: &switchable{Backend: sb}}
	f.open(t, false)
	f.waitSynced(t)
	for _, name := range acked {
		want := storagetest.Read(t, pb, name, 0, -1)
		if got := storagetest.Read(t, sb, name, 0, -1); !bytes.Equal(got, want) {
			t.Fatalf("%s differs in the secondary", name)
		}
	}
}

// writer runs in the child: it writes objects through a geo layer whose
// secondary is slow, printing each acknowledged name, until killed.
func writer(dir string) {
	pb, _ := local.New(filepath.Join(dir, "primary"))
	sb, _ := local.New(filepath.Join(dir, "secondary"))
	l, err := Open(Config{Primary: pb, Secondary: slow{sb}, JournalDir: filepath.Join(dir, "journal"), Workers: 1})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go l.Run(bg)
	for i := 0; ; i++ {
		name := fmt.Sprintf("k/%d", i%150)
		if err := l.Put(bg, name, strings.NewReader(fmt.Sprintf("value %d", i))); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("acked", name)
	}
}

type slow struct{ storage.Backend }

func (s slow) Put(ctx context.Context, n string, r io.Reader) error {
	time.Sleep(2 * time.Millisecond)
	return s.Backend.Put(ctx, n, r)
}

// TestHoldAndRetry: a held layer ships nothing and keeps its backlog; once
// released, a shipper backing off after failures (a long backoff here)
// ships at once when told the secondary is back.
func TestHoldAndRetry(t *testing.T) {
	dir := t.TempDir()
	p, _ := local.New(filepath.Join(dir, "primary"))
	s, _ := local.New(filepath.Join(dir, "secondary"))
	sec := &switchable{Backend: s}
	var mu sync.Mutex
	hold := true
	l, err := Open(Config{Primary: p, Secondary: sec, JournalDir: filepath.Join(dir, "journal"),
		MinBackoff: time.Minute, MaxBackoff: time.Minute,
		Hold: func() bool { mu.Lock(); defer mu.Unlock(); return hold }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; l.Close() })

	storagetest.Put(t, l, "a", []byte("held"))
	time.Sleep(1200 * time.Millisecond) // past a tick of the shipper
	if st := l.Status(); st.Backlog != 1 || !st.Held || st.Shipped != 0 {
		t.Fatalf("held status = %+v", st)
	}
	// Released with the secondary down: the shipment fails and backs off
	// for a minute.
	sec.set(true)
	mu.Lock()
	hold = false
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for l.Status().SecondaryAvailable {
		if time.Now().After(deadline) {
			t.Fatal("the shipment never failed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sec.set(false)
	l.Retry()
	deadline = time.Now().Add(5 * time.Second)
	for l.Status().Backlog > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Retry did not cut the backoff short: %+v", l.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := storagetest.Read(t, sec, "a", 0, -1); string(got) != "held" {
		t.Fatalf("secondary has %q", got)
	}
}

// TestRegionLocalObjectsStayPut: objects Config.Local names are written to
// the primary only; neither a change nor the initial sync ships them, and
// the secondary's own object of that name is left alone.
func TestRegionLocalObjectsStayPut(t *testing.T) {
	f := &fixture{dir: t.TempDir()}
	p, _ := local.New(filepath.Join(f.dir, "primary"))
	s, _ := local.New(filepath.Join(f.dir, "secondary"))
	f.primary, f.secondary = &switchable{Backend: p}, &switchable{Backend: s}
	storagetest.Put(t, f.secondary, "insights-logs-jobs/PT1H.json", []byte("the peer's own records"))
	l, err := Open(Config{Primary: f.primary, Secondary: f.secondary, JournalDir: filepath.Join(f.dir, "journal"),
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Local: func(name string) bool { return strings.HasPrefix(name, "insights-logs-") }})
	if err != nil {
		t.Fatal(err)
	}
	f.layer = l
	f.start()
	t.Cleanup(func() { f.stop(); l.Close() })

	storagetest.Put(t, f.layer, "insights-logs-jobs/PT1H.json", []byte("this region's records"))
	storagetest.Put(t, f.layer, "dbfs/a", []byte("shared"))
	if err := f.layer.InitialSync(bg); err != nil {
		t.Fatal(err)
	}
	f.waitSynced(t)
	if got := storagetest.Read(t, f.secondary, "dbfs/a", 0, -1); string(got) != "shared" {
		t.Fatalf("a shared object did not ship: %q", got)
	}
	if got := storagetest.Read(t, f.secondary, "insights-logs-jobs/PT1H.json", 0, -1); string(got) != "the peer's own records" {
		t.Fatalf("a region-local object reached the secondary: %q", got)
	}
	if got := storagetest.Read(t, f.layer, "insights-logs-jobs/PT1H.json", 0, -1); string(got) != "this region's records" {
		t.Fatalf("the primary's region-local object: %q", got)
	}
	if err := f.layer.Delete(bg, "insights-logs-jobs/PT1H.json"); err != nil {
		t.Fatal(err)
	}
	f.waitSynced(t)
	if _, err := f.secondary.Stat(bg, "insights-logs-jobs/PT1H.json"); err != nil {
		t.Fatalf("deleting a region-local object reached the secondary: %v", err)
	}
}
