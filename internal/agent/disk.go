package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// Local storage autoscaling (enable_elastic_disk). The node's Spark
// scratch space (SPARK_LOCAL_DIRS: shuffle files, spills, cached blocks)
// lives on a capacity-bounded filesystem that starts with one volume; a
// watcher attaches another volume whenever the free space falls below the
// threshold, up to the maximum, and reports EXPANDED_DISK,
// FAILED_TO_EXPAND_DISK or DID_NOT_EXPAND_DISK. Volumes stay until the
// node leaves the cluster (the cluster is deleted, or the instance goes
// back to its pool or away).
//
// Spark's DiskBlockManager spreads files over the local directories it
// was started with (a hash of the file name picks the directory), so a
// directory added later would serve only executors started later. The
// volumes therefore join one filesystem that grows online: running
// executors see the new space at once, in the directories they already
// use. On this host the filesystem is a size-limited tmpfs
// (tmpfsBackend).

// volumeBackend makes the capacity-bounded filesystem of a node's scratch
// space and attaches volumes to it.
type volumeBackend interface {
	// Create makes a filesystem of one volume of size bytes, mounted at
	// dir.
	Create(ctx context.Context, dir string, size int64) error
	// Grow attaches a volume of size bytes to the filesystem at dir,
	// online.
	Grow(ctx context.Context, dir string, size int64) error
	// Release unmounts dir and frees its volumes.
	Release(ctx context.Context, dir string) error
	// Stat returns the filesystem's capacity and free space.
	Stat(dir string) (size, free int64, err error)
}

// diskWatchEvery is how often the watcher looks at the free space (a
// statfs: microseconds).
const diskWatchEvery = 100 * time.Millisecond

// elasticDisk is a node's elastic scratch space.
type elasticDisk struct {
	a       *Agent
	backend volumeBackend
	root    string // the mount point is root/scratch

	mu      sync.Mutex
	cluster string // the cluster the volumes serve; "" when none
	cfg     wire.ElasticDisk
	st      diskState
	events  []wire.DiskEvent
	seq     int64
	cancel  context.CancelFunc
	done    chan struct{}
}

func newElasticDisk(a *Agent, b volumeBackend) *elasticDisk {
	if b == nil {
		b = defaultVolumeBackend()
	}
	if g, ok := b.(*growableBackend); ok {
		g.notify = a.notify // the request goes with the next report, now
	}
	return &elasticDisk{a: a, backend: b, root: filepath.Join(a.dir, "disk"), seq: time.Now().UnixNano()}
}

func (d *elasticDisk) mountPoint() string { return filepath.Join(d.root, "scratch") }

// prepare readies the scratch space for an assignment and returns the
// local directories Spark is to use (nil: the default ones). A new
// generation of the same cluster keeps the volumes (emptied); another
// cluster, or none, releases them.
func (d *elasticDisk) prepare(ctx context.Context, asg wire.Assignment) []string {
	d.mu.Lock()
	cur := d.cluster
	d.mu.Unlock()
	if cur != "" && (asg.ElasticDisk == nil || cur != asg.ClusterID) {
		d.release()
	}
	if asg.ElasticDisk == nil || asg.ClusterID == "" {
		return nil
	}
	local := filepath.Join(d.mountPoint(), "local")
	if cur == asg.ClusterID {
		os.RemoveAll(local)
		if err := os.MkdirAll(local, 0o700); err == nil {
			return []string{local}
		}
		d.release()
	}
	cfg := withDiskDefaults(*asg.ElasticDisk)
	if err := os.MkdirAll(d.mountPoint(), 0o700); err != nil {
		d.failFirst(asg.ClusterID, cfg, err)
		return nil
	}
	if err := d.backend.Create(ctx, d.mountPoint(), cfg.FirstVolumeBytes); err != nil {
		d.failFirst(asg.ClusterID, cfg, err)
		return nil
	}
	size, free, err := d.backend.Stat(d.mountPoint())
	if err == nil {
		err = os.MkdirAll(local, 0o700)
	}
	if err != nil {
		d.backend.Release(context.Background(), d.mountPoint())
		d.failFirst(asg.ClusterID, cfg, err)
		return nil
	}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.mu.Lock()
	d.cluster, d.cfg = asg.ClusterID, cfg
	d.st = observeDisk(diskState{Volumes: 1}, size, free, time.Now())
	d.cancel, d.done = cancel, done
	d.mu.Unlock()
	d.a.log.Info("elastic disk ready", "cluster_id", asg.ClusterID, "size_bytes", size, "path", d.mountPoint())
	go func() {
		defer close(done)
		d.watch(wctx)
	}()
	return []string{local}
}

// failFirst reports that the node could not make its first volume: Spark
// uses the default local directory, unbounded and without expansion.
func (d *elasticDisk) failFirst(cluster string, cfg wire.ElasticDisk, err error) {
	d.a.log.Warn("elastic disk unavailable", "cluster_id", cluster, "err", err)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addEvent(wire.DiskEvent{ClusterID: cluster, Type: wire.DiskFailedExpand,
		Reason: fmt.Sprintf("Could not make the node's first %s scratch volume (%v); Spark uses the node's default local directory.",
			bytesText(cfg.FirstVolumeBytes), err)})
}

// addEvent queues an event for the control plane; d.mu is held.
func (d *elasticDisk) addEvent(ev wire.DiskEvent) {
	d.seq++
	ev.Seq, ev.TimeMillis = d.seq, time.Now().UnixMilli()
	d.events = append(d.events, ev)
	if len(d.events) > 100 {
		d.events = d.events[len(d.events)-100:]
	}
	d.a.notify()
}

// watch attaches volumes while the scratch space runs low.
func (d *elasticDisk) watch(ctx context.Context) {
	t := time.NewTicker(diskWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.step(ctx, time.Now())
	}
}

// step looks at the free space once and acts on it.
func (d *elasticDisk) step(ctx context.Context, now time.Time) {
	size, free, err := d.backend.Stat(d.mountPoint())
	if err != nil {
		return
	}
	d.mu.Lock()
	d.st = observeDisk(d.st, size, free, now)
	if free >= d.cfg.FreeBelowBytes {
		d.st.Refused = false
	}
	action, n, reason := decideDisk(d.cfg, d.st, now)
	cfg, st, cluster := d.cfg, d.st, d.cluster
	switch action {
	case diskRefuse:
		d.st.Refused = true
		d.addEvent(wire.DiskEvent{ClusterID: cluster, Type: wire.DiskDidNotExpand, Reason: reason, DiskSize: size, FreeSpace: free})
	}
	d.mu.Unlock()
	if action != diskExpand {
		return
	}
	err = d.backend.Grow(ctx, d.mountPoint(), int64(n)*cfg.VolumeBytes)
	newSize, newFree, serr := d.backend.Stat(d.mountPoint())
	if err == nil && serr == nil && newSize <= size {
		err = fmt.Errorf("the filesystem did not grow (%d bytes)", newSize)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		d.st.LastFailure = now
		d.a.log.Warn("elastic disk: expansion failed", "cluster_id", cluster, "err", err)
		d.addEvent(wire.DiskEvent{ClusterID: cluster, Type: wire.DiskFailedExpand, DiskSize: size, FreeSpace: free,
			Reason: fmt.Sprintf("Could not attach %s: %v", volumesText(n, cfg.VolumeBytes), err)})
		return
	}
	d.st.Volumes = st.Volumes + n
	d.st.Size, d.st.Free, d.st.LastFailure = newSize, newFree, time.Time{}
	d.a.log.Info("elastic disk expanded", "cluster_id", cluster, "volumes", d.st.Volumes, "size_bytes", newSize)
	d.addEvent(wire.DiskEvent{ClusterID: cluster, Type: wire.DiskExpanded, DiskSize: newSize, PreviousDiskSize: size, FreeSpace: newFree})
}

// release stops the watcher and frees the volumes.
func (d *elasticDisk) release() {
	d.mu.Lock()
	cancel, done, cluster := d.cancel, d.done, d.cluster
	d.cancel, d.done, d.cluster, d.st = nil, nil, "", diskState{}
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if cluster == "" {
		return
	}
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	if err := d.backend.Release(ctx, d.mountPoint()); err != nil {
		d.a.log.Warn("elastic disk: release", "cluster_id", cluster, "err", err)
	}
}

// status is the scratch space for the report.
func (d *elasticDisk) status() *wire.DiskStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cluster == "" {
		return nil
	}
	st := &wire.DiskStatus{Volumes: d.st.Volumes, SizeBytes: d.st.Size, FreeBytes: d.st.Free, Path: d.mountPoint()}
	if g, ok := d.backend.(*growableBackend); ok {
		st.WantBytes = g.wanted()
	}
	return st
}

// growAnswer passes the control plane's answer to a growth request on.
func (d *elasticDisk) growAnswer(granted int64, refusal string) {
	if g, ok := d.backend.(*growableBackend); ok && (granted > 0 || refusal != "") {
		g.answered(granted, refusal)
	}
}

// pending are the events the control plane has not acknowledged.
func (d *elasticDisk) pending() []wire.DiskEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wire.DiskEvent(nil), d.events...)
}

// ack forgets the events up to seq.
func (d *elasticDisk) ack(seq int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := 0
	for i < len(d.events) && d.events[i].Seq <= seq {
		i++
	}
	d.events = d.events[i:]
}

// tmpfsBackend makes the scratch filesystem a tmpfs mounted with a size
// limit: the first volume is its first size bytes, and attaching a volume
// remounts it with the limit raised, which the kernel does online (files
// and open descriptors stay). The limit is a real bound (writes past it
// fail with ENOSPC). It needs CAP_SYS_ADMIN (root); the space is the
// host's memory and swap, used only as far as files fill it.
//
// An ext4 filesystem on a loop device would keep scratch data on disk,
// but growing it online (resize2fs) needs CAP_SYS_RESOURCE, which
// containers such as our CI's commonly drop; docs/autoscaling.md has the
// comparison.
type tmpfsBackend struct{}

func (b tmpfsBackend) Create(ctx context.Context, dir string, size int64) error {
	b.Release(ctx, dir) // what an earlier run of the agent left
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV,
		fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		return fmt.Errorf("mount a %s tmpfs at %s: %w", bytesText(size), dir, err)
	}
	return nil
}

func (b tmpfsBackend) Grow(ctx context.Context, dir string, size int64) error {
	cur, _, err := b.Stat(dir)
	if err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT|syscall.MS_NOSUID|syscall.MS_NODEV,
		fmt.Sprintf("size=%d,mode=0700", cur+size)); err != nil {
		return fmt.Errorf("raise the tmpfs at %s to %s: %w", dir, bytesText(cur+size), err)
	}
	return nil
}

func (b tmpfsBackend) Release(ctx context.Context, dir string) error {
	var errs []error
	for i := 0; i < 8 && mounted(dir); i++ { // stacked mounts of earlier runs too
		if err := syscall.Unmount(dir, 0); err != nil {
			// Busy (a process still has files open): detach it lazily.
			if err2 := syscall.Unmount(dir, syscall.MNT_DETACH); err2 != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", dir, err2))
				break
			}
		}
	}
	return errors.Join(errs...)
}

func (tmpfsBackend) Stat(dir string) (int64, int64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, 0, err
	}
	return int64(fs.Blocks) * fs.Bsize, int64(fs.Bavail) * fs.Bsize, nil
}

// mounted reports whether dir is a mount point (in /proc/self/mountinfo).
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	abs, _ := filepath.Abs(dir)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == abs {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline
// and backslash.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// localDirs is SPARK_LOCAL_DIRS for a launch.
func localDirs(l Launch) string {
	if len(l.LocalDirs) > 0 {
		return strings.Join(l.LocalDirs, ",")
	}
	return filepath.Join(l.Dir, "local")
}

// EnvScratchProvisioned, set to 1 in an agent's environment, says its
// elastic disk mount point is provisioned by the instance (a Kubernetes
// pod's size-limited emptyDir): the agent uses it as it is and cannot
// attach volumes.
const EnvScratchProvisioned = "TANDEM_SCRATCH_PROVISIONED"

// provisionedBackend uses a scratch filesystem the instance was given.
type provisionedBackend struct{ tmpfsBackend }

func (provisionedBackend) Create(ctx context.Context, dir string, size int64) error {
	if !mounted(dir) {
		return fmt.Errorf("%s is not the provisioned scratch volume (not a mount point)", dir)
	}
	return nil
}

func (provisionedBackend) Grow(ctx context.Context, dir string, size int64) error {
	return errors.New("the scratch volume is provisioned by the instance at its full size: it cannot grow")
}

func (provisionedBackend) Release(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// EnvScratchGrowable, set to 1 beside EnvScratchProvisioned, says the
// instance's provider grows the provisioned volume on request (a
// Kubernetes claim of an expandable StorageClass): the agent asks through
// its report and watches the filesystem grow.
const EnvScratchGrowable = "TANDEM_SCRATCH_GROWABLE"

// growWait bounds how long a requested growth may take, from the request
// to the filesystem's new size (the claim's resize, then the kubelet's
// online filesystem expansion).
const growWait = 3 * time.Minute

// growableBackend is a provisioned volume that the instance's provider
// grows: Grow records the size wanted, which the agent's report carries
// to the control plane (wire.DiskStatus.WantBytes), and waits for the
// filesystem to reach it, or for the control plane to say why it cannot.
type growableBackend struct {
	provisionedBackend
	wait time.Duration // growWait, unless a test says otherwise
	poll time.Duration

	notify func()
	// stat replaces the filesystem's statfs (tests).
	stat func(dir string) (int64, int64, error)

	mu     sync.Mutex
	want   int64
	err    string // the control plane's refusal of want, if any
	answer chan struct{}
}

func newGrowableBackend() *growableBackend {
	return &growableBackend{wait: growWait, poll: time.Second, answer: make(chan struct{}, 1)}
}

func (b *growableBackend) Grow(ctx context.Context, dir string, size int64) error {
	cur, _, err := b.Stat(dir)
	if err != nil {
		return err
	}
	target := cur + size
	b.mu.Lock()
	b.want, b.err = target, ""
	b.mu.Unlock()
	defer func() { // answered or given up: the reports stop asking
		b.mu.Lock()
		b.want, b.err = 0, ""
		b.mu.Unlock()
	}()
	if b.notify != nil {
		b.notify()
	}
	ctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	t := time.NewTicker(b.poll)
	defer t.Stop()
	for {
		if now, _, err := b.Stat(dir); err == nil && now >= target {
			return nil
		}
		b.mu.Lock()
		refused := b.err
		b.mu.Unlock()
		if refused != "" {
			return errors.New(refused)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the volume did not grow to %s within %s", bytesText(target), b.wait)
		case <-t.C:
		case <-b.answer:
		}
	}
}

func (b *growableBackend) Stat(dir string) (int64, int64, error) {
	if b.stat != nil {
		return b.stat(dir)
	}
	return b.provisionedBackend.Stat(dir)
}

// wanted is the size asked for, 0 when none is pending.
func (b *growableBackend) wanted() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != "" {
		return 0
	}
	return b.want
}

// answered takes the control plane's answer to the size asked for: the
// size it granted, or why it could not.
func (b *growableBackend) answered(granted int64, refusal string) {
	b.mu.Lock()
	if refusal != "" && granted < b.want {
		b.err = refusal
	}
	b.mu.Unlock()
	select {
	case b.answer <- struct{}{}:
	default:
	}
}

// defaultVolumeBackend is the provisioned scratch volume when the
// instance says it has one (growable when its provider grows it), else
// size-limited tmpfs volumes.
func defaultVolumeBackend() volumeBackend {
	if os.Getenv(EnvScratchProvisioned) == "1" {
		if os.Getenv(EnvScratchGrowable) == "1" {
			return newGrowableBackend()
		}
		return provisionedBackend{}
	}
	return tmpfsBackend{}
}

// ElasticDiskAvailable reports why this host cannot give nodes elastic
// disks (size-limited tmpfs volumes need root and the right to mount), or
// nil when it can: it mounts and unmounts a 1 MiB volume under dir.
func ElasticDiskAvailable(ctx context.Context, dir string) error {
	if os.Geteuid() != 0 {
		return errors.New("mounting tmpfs volumes needs root")
	}
	probe := filepath.Join(dir, "elastic-disk-probe")
	if err := os.MkdirAll(probe, 0o700); err != nil {
		return err
	}
	defer os.Remove(probe)
	b := tmpfsBackend{}
	if err := b.Create(ctx, probe, 1<<20); err != nil {
		return err
	}
	return b.Release(ctx, probe)
}
