package local

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestUnmountUnderFreesLeftVolumes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	inner := filepath.Join(dir, "disk", "scratch")
	os.MkdirAll(inner, 0o700)
	if err := syscall.Mount("tmpfs", inner, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount here: %v", err)
	}
	// A second mount stacked on the first, as a killed agent may leave.
	if err := syscall.Mount("tmpfs", inner, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := syscall.Mount("tmpfs", outside, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(outside, 0)
	unmountUnder(dir)
	unmountUnder(dir)
	var st, parent syscall.Stat_t
	syscall.Stat(inner, &st)
	syscall.Stat(filepath.Dir(inner), &parent)
	if st.Dev != parent.Dev {
		t.Fatal("still mounted")
	}
	var o, op syscall.Stat_t
	syscall.Stat(outside, &o)
	syscall.Stat(filepath.Dir(outside), &op)
	if o.Dev == op.Dev {
		t.Fatal("a mount outside the instance directory was unmounted")
	}
}
