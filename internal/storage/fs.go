package storage

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// FS is a read-only fs.FS view of a backend, for tools written against
// files (the audit digest verifier): object names are paths, and the
// prefixes before each "/" are directories. Files are read whole on Open.
// Listing a directory lists every object under it, so walking a large
// account is as slow as listing it.
func FS(ctx context.Context, b Backend) fs.FS { return backendFS{ctx: ctx, b: b} }

type backendFS struct {
	ctx context.Context
	b   Backend
}

var (
	_ fs.ReadDirFS  = backendFS{}
	_ fs.ReadFileFS = backendFS{}
	_ fs.StatFS     = backendFS{}
)

func pathErr(op, name string, err error) error {
	if errors.Is(err, ErrNotFound) {
		err = fs.ErrNotExist
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

func (f backendFS) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) || name == "." {
		return nil, pathErr("read", name, fs.ErrInvalid)
	}
	r, err := f.b.Get(f.ctx, name, 0, -1)
	if err != nil {
		return nil, pathErr("read", name, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, pathErr("read", name, err)
	}
	return data, nil
}

// ReadDir lists the direct children of dir, directories first by name order
// as fs.ReadDir wants (sorted by name).
func (f backendFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(dir) {
		return nil, pathErr("readdir", dir, fs.ErrInvalid)
	}
	prefix := dir + "/"
	if dir == "." {
		prefix = ""
	}
	seen := map[string]fs.DirEntry{}
	err := f.b.List(f.ctx, prefix, func(oi ObjectInfo) error {
		rest := strings.TrimPrefix(oi.Name, prefix)
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			name := rest[:i]
			if _, ok := seen[name]; !ok {
				seen[name] = fs.FileInfoToDirEntry(fileInfo{name: name, dir: true})
			}
			return nil
		}
		seen[rest] = fs.FileInfoToDirEntry(fileInfo{name: rest, size: oi.Size, mod: oi.ModTime})
		return nil
	})
	if err != nil {
		return nil, pathErr("readdir", dir, err)
	}
	if len(seen) == 0 && dir != "." {
		return nil, pathErr("readdir", dir, fs.ErrNotExist)
	}
	out := make([]fs.DirEntry, 0, len(seen))
	for _, e := range seen {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

func (f backendFS) Stat(name string) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, pathErr("stat", name, fs.ErrInvalid)
	}
	if name == "." {
		return fileInfo{name: ".", dir: true}, nil
	}
	oi, err := f.b.Stat(f.ctx, name)
	if err == nil {
		return fileInfo{name: path.Base(name), size: oi.Size, mod: oi.ModTime}, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, pathErr("stat", name, err)
	}
	if _, derr := f.ReadDir(name); derr == nil {
		return fileInfo{name: path.Base(name), dir: true}, nil
	}
	return nil, pathErr("stat", name, fs.ErrNotExist)
}

func (f backendFS) Open(name string) (fs.File, error) {
	info, err := f.Stat(name)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		ents, err := f.ReadDir(name)
		if err != nil && name != "." {
			return nil, err
		}
		return &dirFile{info: info, ents: ents}, nil
	}
	data, err := f.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return &memFile{info: info, data: data}, nil
}

type fileInfo struct {
	name string
	size int64
	mod  time.Time
	dir  bool
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) ModTime() time.Time { return i.mod }
func (i fileInfo) IsDir() bool        { return i.dir }
func (i fileInfo) Sys() any           { return nil }
func (i fileInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}

type memFile struct {
	info fs.FileInfo
	data []byte
	off  int
}

func (m *memFile) Stat() (fs.FileInfo, error) { return m.info, nil }
func (m *memFile) Close() error               { return nil }
func (m *memFile) Read(p []byte) (int, error) {
	if m.off >= len(m.data) {
		return 0, io.EOF
	}
	n := copy(p, m.data[m.off:])
	m.off += n
	return n, nil
}

type dirFile struct {
	info fs.FileInfo
	ents []fs.DirEntry
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.Name(), Err: fs.ErrInvalid}
}
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if n <= 0 {
		ents := d.ents
		d.ents = nil
		return ents, nil
	}
	if len(d.ents) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.ents))
	ents := d.ents[:n]
	d.ents = d.ents[n:]
	return ents, nil
}
