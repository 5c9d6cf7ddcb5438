// Package pyruntime carries the Python side of Tandem: the tandem_runtime
// package that runs notebooks, Python files, SQL and wheel entry points on a
// cluster's driver with spark bound to the cluster and dbutils (fs,
// secrets, widgets, notebook, jobs.taskValues) and display() in scope. The
// files are embedded in the binary; agents write them next to each task.
package pyruntime

import (
	"bytes"
	"embed"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed tandem_runtime/*.py
var files embed.FS

// Extract writes the tandem_runtime package under dir (dir/tandem_runtime)
// and returns dir, the directory to put on PYTHONPATH.
func Extract(dir string) (string, error) {
	err := fs.WalkDir(files, "tandem_runtime", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return writeAtomic(dst, b)
	})
	return dir, err
}

// writeAtomic replaces dst with b unless it holds b already. Tasks that
// start together extract the runtime into the same directory while others
// import it: a file rewritten in place would be read half-written.
func writeAtomic(dst string, b []byte) error {
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, b) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".extract-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
