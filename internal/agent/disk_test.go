package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// fakeVolumes is a volume backend whose filesystem is a number: its size
// grows with each volume, its use is set by the test.
type fakeVolumes struct {
	mu       sync.Mutex
	size     int64
	used     int64
	failGrow error
	creates  int
	releases int
}

func (f *fakeVolumes) Create(ctx context.Context, dir string, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	f.size, f.used = size, 0
	return nil
}

func (f *fakeVolumes) Grow(ctx context.Context, dir string, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failGrow != nil {
		return f.failGrow
	}
	f.size += size
	return nil
}

func (f *fakeVolumes) Release(ctx context.Context, dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases++
	return nil
}

func (f *fakeVolumes) Stat(dir string) (int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.size, f.size - f.used, nil
}

func (f *fakeVolumes) use(n int64) {
	f.mu.Lock()
	f.used = n
	f.mu.Unlock()
}

func testAgent(t *testing.T) *Agent {
	return &Agent{dir: t.TempDir(), log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), changed: make(chan struct{}, 1)}
}

func eventTypes(evs []wire.DiskEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// TestElasticDiskExpandsReportsAndKeepsVolumes walks a node's scratch
// space through a shortage: a volume is attached (EXPANDED_DISK), a failed
// attempt is reported with its reason, the maximum is reported once
// (DID_NOT_EXPAND_DISK); a restart of the same cluster keeps the volumes,
// another cluster releases them.
func TestElasticDiskExpandsReportsAndKeepsVolumes(t *testing.T) {
	const mb = 1 << 20
	fv := &fakeVolumes{}
	d := newElasticDisk(testAgent(t), fv)
	cfg := &wire.ElasticDisk{FirstVolumeBytes: 100 * mb, VolumeBytes: 50 * mb, MaxVolumes: 3, FreeBelowBytes: 20 * mb}
	asg := wire.Assignment{Generation: 1, ClusterID: "c1", ElasticDisk: cfg}
	dirs := d.prepare(context.Background(), asg)
	defer d.release()
	if len(dirs) != 1 || !strings.HasPrefix(dirs[0], d.mountPoint()) {
		t.Fatalf("local dirs %v", dirs)
	}
	if _, err := os.Stat(dirs[0]); err != nil {
		t.Fatal(err)
	}
	d.cancel() // the test steps the watcher itself
	<-d.done
	now := time.Now()

	d.step(context.Background(), now)
	if evs := d.pending(); len(evs) != 0 {
		t.Fatalf("events with free space: %v", evs)
	}
	fv.use(90 * mb)
	d.step(context.Background(), now)
	evs := d.pending()
	if len(evs) != 1 || evs[0].Type != wire.DiskExpanded || evs[0].DiskSize != 150*mb || evs[0].PreviousDiskSize != 100*mb ||
		evs[0].FreeSpace != 60*mb || evs[0].ClusterID != "c1" {
		t.Fatalf("after a shortage: %+v", evs)
	}
	if st := d.status(); st.Volumes != 2 || st.SizeBytes != 150*mb {
		t.Fatalf("status %+v", st)
	}
	d.ack(evs[0].Seq)
	if len(d.pending()) != 0 {
		t.Fatal("acknowledged events stay")
	}

	fv.use(140 * mb)
	fv.failGrow = errors.New("no loop device")
	d.step(context.Background(), now)
	d.step(context.Background(), now.Add(time.Second)) // backing off
	evs = d.pending()
	if len(evs) != 1 || evs[0].Type != wire.DiskFailedExpand || !strings.Contains(evs[0].Reason, "no loop device") {
		t.Fatalf("after a failure: %+v", evs)
	}
	fv.failGrow = nil
	d.step(context.Background(), now.Add(diskRetryAfter))
	fv.use(195 * mb)
	d.step(context.Background(), now.Add(diskRetryAfter))
	d.step(context.Background(), now.Add(diskRetryAfter)) // reported once
	if got := eventTypes(d.pending()); strings.Join(got, ",") != "FAILED_TO_EXPAND_DISK,EXPANDED_DISK,DID_NOT_EXPAND_DISK" {
		t.Fatalf("events %v", got)
	}
	if last := d.pending()[2]; !strings.Contains(last.Reason, "maximum of 3 volumes") {
		t.Fatalf("reason %q", last.Reason)
	}

	// A new generation of the same cluster keeps the volumes.
	asg.Generation = 2
	d.prepare(context.Background(), asg)
	if fv.creates != 1 || fv.releases != 0 || d.status().Volumes != 3 {
		t.Fatalf("restart: creates %d releases %d %+v", fv.creates, fv.releases, d.status())
	}
	// Another cluster starts over; no elastic disk releases them.
	d.prepare(context.Background(), wire.Assignment{Generation: 3, ClusterID: "c2", ElasticDisk: cfg})
	if fv.creates != 2 || fv.releases != 1 || d.status().Volumes != 1 {
		t.Fatalf("other cluster: creates %d releases %d %+v", fv.creates, fv.releases, d.status())
	}
	if dirs := d.prepare(context.Background(), wire.Assignment{Generation: 4, ClusterID: "c3"}); dirs != nil || fv.releases != 2 || d.status() != nil {
		t.Fatalf("without elastic disk: %v releases %d", dirs, fv.releases)
	}
}

// TestTmpfsBackendIsBoundedAndGrowsOnline mounts a real size-limited
// tmpfs (root only), fills it, attaches a second volume while a file is
// open on it, and checks the bound and the growth.
func TestTmpfsBackendIsBoundedAndGrowsOnline(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	const mb = 1 << 20
	b := tmpfsBackend{}
	dir := filepath.Join(t.TempDir(), "scratch")
	os.MkdirAll(dir, 0o700)
	ctx := context.Background()
	if err := b.Create(ctx, dir, 32*mb); err != nil {
		t.Skipf("cannot mount here: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Release(context.Background(), dir); err != nil {
			t.Error(err)
		}
		if mounted(dir) {
			t.Error("still mounted after release")
		}
	})
	if !mounted(dir) {
		t.Fatal("not mounted")
	}
	size1, _, err := b.Stat(dir)
	if err != nil || size1 != 32*mb {
		t.Fatalf("first volume: %d %v", size1, err)
	}
	f, err := os.Create(filepath.Join(dir, "spill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{7}, mb)
	var written int64
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write: %v", err)
			}
			break
		}
		written += mb
		if written > 64*mb {
			t.Fatal("the volume is not bounded")
		}
	}
	if err := b.Grow(ctx, dir, 32*mb); err != nil {
		t.Fatal(err)
	}
	size2, free2, _ := b.Stat(dir)
	if size2 != 64*mb || free2 < 31*mb {
		t.Fatalf("after growing: size %d (was %d), free %d", size2, size1, free2)
	}
	// The open file goes on where it stopped.
	if _, err := f.Write(chunk); err != nil {
		t.Fatalf("write after growing: %v", err)
	}
}

// TestGrowableBackendAsksAndWaitsForTheFilesystem: on a volume its
// provider grows (a Kubernetes claim), Grow asks for the new size through
// the report and returns once the filesystem has it, or with the control
// plane's refusal, or after its wait.
func TestGrowableBackendAsksAndWaitsForTheFilesystem(t *testing.T) {
	const mib = int64(1 << 20)
	cases := []struct {
		name     string
		answer   func(b *growableBackend, size *atomic.Int64) // what the control plane and the volume do
		wantErr  string
		wantSize int64
	}{
		{"the claim grows and the filesystem follows", func(b *growableBackend, size *atomic.Int64) {
			b.answered(b.wanted(), "")
			size.Store(b.wanted())
		}, "", 96 * mib},
		{"the filesystem grows a little more than asked (rounding)", func(b *growableBackend, size *atomic.Int64) {
			size.Store(b.wanted() + mib)
		}, "", 97 * mib},
		{"the control plane refuses", func(b *growableBackend, size *atomic.Int64) {
			b.answered(0, "storageclass fast does not allow volume expansion")
		}, "storageclass fast does not allow volume expansion", 64 * mib},
		{"granted, but the filesystem never grows", func(b *growableBackend, size *atomic.Int64) {
			b.answered(b.wanted(), "")
		}, "did not grow to 96 MiB", 64 * mib},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var size atomic.Int64
			size.Store(64 * mib)
			notified := make(chan struct{}, 1)
			b := newGrowableBackend()
			b.wait, b.poll = 500*time.Millisecond, 10*time.Millisecond
			b.notify = func() { notified <- struct{}{} }
			b.stat = func(string) (int64, int64, error) { return size.Load(), 0, nil }
			go func() {
				<-notified // the request is out: the report carries it
				if got := b.wanted(); got != 96*mib {
					t.Errorf("wanted %d, want %d", got, 96*mib)
				}
				c.answer(b, &size)
			}()
			err := b.Grow(context.Background(), "/scratch", 32*mib)
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("Grow = %v, want %q", err, c.wantErr)
			}
			if size.Load() != c.wantSize {
				t.Fatalf("size %d, want %d", size.Load(), c.wantSize)
			}
			if b.wanted() != 0 {
				t.Fatal("the reports still ask after Grow returned")
			}
		})
	}
}
