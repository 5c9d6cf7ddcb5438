// Package local is the storage backend that keeps objects as files under a
// directory of the host: the default storage account of a region.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/storage"
)

// Backend keeps objects under Root. Object names are slash-separated paths;
// temporary files of writes in progress live in Root/.tmp and never show in
// listings.
type Backend struct {
	Root string
}

var _ storage.Backend = (*Backend)(nil)

// New returns a backend rooted at dir, creating it.
func New(dir string) (*Backend, error) {
	if err := os.MkdirAll(filepath.Join(dir, ".tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("create storage directory %s: %w", dir, err)
	}
	// Temporary files left by a crash are never published: clear them.
	tmps, _ := os.ReadDir(filepath.Join(dir, ".tmp"))
	for _, t := range tmps {
		os.Remove(filepath.Join(dir, ".tmp", t.Name()))
	}
	return &Backend{Root: dir}, nil
}

func (b *Backend) path(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\x00") || strings.HasPrefix(name, ".tmp") {
		return "", fmt.Errorf("invalid object name %q", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("invalid object name %q", name)
		}
	}
	return filepath.Join(b.Root, filepath.FromSlash(name)), nil
}

// Put writes the object to a temporary file, syncs it and renames it into place.
func (b *Backend) Put(ctx context.Context, name string, r io.Reader) error {
	p, err := b.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return mapErr(err)
	}
	tmp, err := os.CreateTemp(filepath.Join(b.Root, ".tmp"), "put-*")
	if errors.Is(err, fs.ErrNotExist) {
		// The directory was removed under us (a lost zone being rebuilt):
		// make it again rather than fail every write from now on.
		if err = os.MkdirAll(filepath.Join(b.Root, ".tmp"), 0o700); err == nil {
			tmp, err = os.CreateTemp(filepath.Join(b.Root, ".tmp"), "put-*")
		}
	}
	if err != nil {
		return mapErr(err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, ctxReader{ctx, r}); err != nil {
		tmp.Close()
		return mapErr(err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return mapErr(err)
	}
	if err := tmp.Close(); err != nil {
		return mapErr(err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return mapErr(err)
	}
	return atomicfile.SyncDir(filepath.Dir(p))
}

// Get opens the object and returns a reader of the requested range.
func (b *Backend) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	p, err := b.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, mapErr(err)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	if length < 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

// Stat describes an object.
func (b *Backend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	p, err := b.path(name)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return storage.ObjectInfo{}, mapErr(err)
	}
	if fi.IsDir() {
		return storage.ObjectInfo{}, storage.ErrNotFound
	}
	return storage.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete removes an object and the directories it leaves empty.
func (b *Backend) Delete(ctx context.Context, name string) error {
	p, err := b.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return mapErr(err)
	}
	for dir := filepath.Dir(p); dir != b.Root && strings.HasPrefix(dir, b.Root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// List walks the objects under prefix in name order.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	// Start the walk at the deepest directory the prefix names.
	start := b.Root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(b.Root, filepath.FromSlash(prefix[:i]))
	}
	var infos []storage.ObjectInfo
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(b.Root, p)
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			if name == ".tmp" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed during the walk
		}
		infos = append(infos, storage.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return mapErr(err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	for _, oi := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}

func mapErr(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return storage.ErrNotFound
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %v", storage.ErrNoSpace, err)
	}
	return err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Append adds what r holds at the end of the object, creating it if it is
// absent, and syncs it: the local form of Azure's append blobs, which the
// audit storage-account destination fills as records arrive. Unlike Put it
// is not atomic: a crash during Append can leave part of the bytes, and
// readers see the object grow; callers that need whole records check the
// tail after a restart.
func (b *Backend) Append(ctx context.Context, name string, r io.Reader) error {
	p, err := b.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return mapErr(err)
	}
	_, statErr := os.Stat(p)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return mapErr(err)
	}
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		f.Close()
		return mapErr(err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return mapErr(err)
	}
	if err := f.Close(); err != nil {
		return mapErr(err)
	}
	if statErr != nil {
		return atomicfile.SyncDir(filepath.Dir(p))
	}
	return nil
}

// WriteTo lets a source that writes whole buffers (the encryption layer's
// stream) write them to the file directly, checking ctx between writes.
func (c ctxReader) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.r.(io.WriterTo); ok {
		return wt.WriteTo(ctxWriter{c.ctx, w})
	}
	return io.CopyBuffer(w, struct{ io.Reader }{c}, make([]byte, 256<<10))
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
