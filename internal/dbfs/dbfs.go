// Package dbfs is the DBFS API: a file system whose namespace lives in the
// metadata store and whose file contents are immutable blocks in the
// region's storage account. A file is an ordered list of blocks, so a
// streamed upload never rewrites what it already sent and a read at an
// offset touches only the blocks it needs. Moves, overwrites and recursive
// deletes are single store transactions. Replaced and deleted files keep
// their contents as versions for a retention period, and a path or a whole
// folder can be restored to a point in time (Tandem's restore points).
//
// Like Databricks' DBFS, it has no per-file access control: every
// authenticated workspace user may use it.
package dbfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/fspath"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// Store kinds owned by this package.
const (
	kindNode    = "dbfs.node"    // parent \x1f name -> Node
	kindHandle  = "dbfs.handle"  // handle -> Handle (uploads in progress)
	kindVersion = "dbfs.version" // path \x1f replaced-at (20 digits) -> Version
)

const sep = "\x1f"

// blobPrefix is where file contents live in the storage account.
const blobPrefix = "dbfs/"

// Limits of the API, as Databricks has them.
const (
	MaxBlock        = 1 << 20 // add-block and JSON put
	MaxRead         = 1 << 20
	DefaultRead     = 512 << 10
	MaxPut          = 2 << 30 // multipart put
	streamBlockSize = 8 << 20 // block size of streamed uploads
	HandleIdle      = 10 * time.Minute
)

// Node is a file or directory.
type Node struct {
	Path    string         `json:"path"`
	IsDir   bool           `json:"is_dir"`
	Size    int64          `json:"size"`
	ModTime int64          `json:"mtime"` // ms; for a file, when its contents were written
	Blocks  []storage.Blob `json:"blocks,omitempty"`
}

// Version is a past state of a file: its contents from ModTime until
// Replaced, when it was overwritten or deleted.
type Version struct {
	Node     Node  `json:"node"`
	Replaced int64 `json:"replaced"` // ms
	Deleted  bool  `json:"deleted"`  // deleted rather than overwritten
}

// Handle is an upload in progress (create, add-block, close).
type Handle struct {
	ID        int64          `json:"id"`
	Path      string         `json:"path"`
	Overwrite bool           `json:"overwrite"`
	Owner     string         `json:"owner"` // principal id
	Blocks    []storage.Blob `json:"blocks,omitempty"`
	Size      int64          `json:"size"`
	LastUsed  int64          `json:"last_used"` // ms
}

// FileInfo is the API's view of a node.
type FileInfo struct {
	Path             string `json:"path"`
	IsDir            bool   `json:"is_dir"`
	FileSize         *int64 `json:"file_size,omitempty"`
	ModificationTime int64  `json:"modification_time"`
}

func (n Node) info() FileInfo {
	fi := FileInfo{Path: n.Path, IsDir: n.IsDir, ModificationTime: n.ModTime}
	if !n.IsDir {
		size := n.Size
		fi.FileSize = &size
	}
	return fi
}

func nodeKey(p string) string {
	dir, name := fspath.Split(p)
	return dir + sep + name
}

func versionKey(p string, replaced int64) string { return fmt.Sprintf("%s%s%020d", p, sep, replaced) }

var rootNode = Node{Path: "/", IsDir: true}

// CleanPath accepts "dbfs:/x" and "/x" and returns the clean absolute path.
func CleanPath(p string) (string, error) {
	if rest, ok := strings.CutPrefix(p, "dbfs:"); ok {
		p = rest
		if p == "" {
			p = "/"
		}
	}
	return fspath.Clean(p)
}

// Service is a region's DBFS.
type Service struct {
	Store   store.Store
	Storage storage.Backend
	Log     *slog.Logger
	// Retention is how long replaced and deleted files stay restorable.
	Retention time.Duration
	// Now is the clock of the background loop (tests replace it).
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func getNode(tx store.Tx, p string) (Node, error) {
	if p == "/" {
		return rootNode, nil
	}
	return store.Get[Node](tx, kindNode, nodeKey(p))
}

func notFound(p string) error {
	return api.NotFound("No file or directory exists on path %s.", p)
}

// exists400 is RESOURCE_ALREADY_EXISTS with the 400 status the CLI expects
// from DBFS.
func exists400(format string, args ...any) error {
	return api.Errorf(api.ResourceAlreadyExists, format, args...).WithStatus(400)
}

// lookup finds a node or answers RESOURCE_DOES_NOT_EXIST.
func lookup(tx store.Tx, p string) (Node, error) {
	n, err := getNode(tx, p)
	if errors.Is(err, store.ErrNotFound) {
		return n, notFound(p)
	}
	return n, err
}

func children(tx store.Tx, dir string) ([]Node, error) {
	return store.List[Node](tx, kindNode, dir+sep)
}

// subtree returns a node and everything under it, parents first.
func subtree(tx store.Tx, n Node) ([]Node, error) {
	out := []Node{n}
	if !n.IsDir {
		return out, nil
	}
	kids, err := children(tx, n.Path)
	if err != nil {
		return nil, err
	}
	for _, k := range kids {
		sub, err := subtree(tx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// mkdirs creates a directory and its parents; a file in the way is
// RESOURCE_ALREADY_EXISTS.
func mkdirs(tx store.Tx, p string, now int64) error {
	if p == "/" {
		return nil
	}
	n, err := getNode(tx, p)
	if err == nil {
		if !n.IsDir {
			return exists400("A file exists at %s, so it cannot be a directory.", p)
		}
		return nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	parent, _ := fspath.Split(p)
	if err := mkdirs(tx, parent, now); err != nil {
		return err
	}
	return store.Put(tx, kindNode, nodeKey(p), Node{Path: p, IsDir: true, ModTime: now})
}

// retire records a file's current contents as a version, replaced at now.
func retire(tx store.Tx, n Node, now int64, deleted bool) error {
	if n.IsDir {
		return nil
	}
	// Two changes in one millisecond: keep both by nudging the key.
	at := now
	for {
		ok, err := store.Exists(tx, kindVersion, versionKey(n.Path, at))
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		at++
	}
	return store.Put(tx, kindVersion, versionKey(n.Path, at), Version{Node: n, Replaced: at, Deleted: deleted})
}

// publish makes a file at p with the given blocks, in tx: parents are
// created, a file it replaces becomes a version, a directory in the way is
// refused.
func publish(tx store.Tx, p string, blocks []storage.Blob, overwrite bool) (Node, error) {
	now := tx.Now().UnixMilli()
	if p == "/" {
		return Node{}, exists400("/ is a directory.")
	}
	existing, err := getNode(tx, p)
	switch {
	case err == nil && existing.IsDir:
		return Node{}, exists400("A directory exists at %s.", p)
	case err == nil && !overwrite:
		return Node{}, exists400("A file or directory already exists at the input path %s.", p)
	case err == nil:
		if err := retire(tx, existing, now, false); err != nil {
			return Node{}, err
		}
	case !errors.Is(err, store.ErrNotFound):
		return Node{}, err
	}
	parent, _ := fspath.Split(p)
	if err := mkdirs(tx, parent, now); err != nil {
		return Node{}, err
	}
	var size int64
	for _, b := range blocks {
		size += b.Size
	}
	n := Node{Path: p, Size: size, ModTime: now, Blocks: blocks}
	return n, store.Put(tx, kindNode, nodeKey(p), n)
}

// writeBlocks stores r as blocks of at most size bytes, up to max bytes in
// all. On error it deletes what it wrote.
func (s *Service) writeBlocks(ctx context.Context, r io.Reader, size, max int64) ([]storage.Blob, error) {
	var blocks []storage.Blob
	var total int64
	buf := make([]byte, size)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			total += int64(n)
			if total > max {
				s.deleteBlobs(ctx, blocks)
				return nil, api.Errorf(api.RequestTooLarge, "The file is larger than the %d-byte limit of a single upload; use create, add-block and close.", max)
			}
			b, perr := storage.PutBlob(ctx, s.Storage, blobPrefix, bytes.NewReader(buf[:n]))
			if perr != nil {
				s.deleteBlobs(ctx, blocks)
				return nil, perr
			}
			blocks = append(blocks, b)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return blocks, nil
		}
		if err != nil {
			s.deleteBlobs(ctx, blocks)
			return nil, fmt.Errorf("read upload: %w", err)
		}
	}
}

func (s *Service) deleteBlobs(ctx context.Context, blocks []storage.Blob) {
	ctx = context.WithoutCancel(ctx)
	for _, b := range blocks {
		if err := s.Storage.Delete(ctx, b.Name); err != nil {
			s.Log.Warn("delete DBFS block", "blob", b.Name, "err", err)
		}
	}
}

// readAt reads up to length bytes of a file from offset, touching only the
// blocks that hold them.
func (s *Service) readAt(ctx context.Context, n Node, offset, length int64) ([]byte, error) {
	if offset >= n.Size || length <= 0 {
		return nil, nil
	}
	if offset+length > n.Size {
		length = n.Size - offset
	}
	out := make([]byte, 0, length)
	var start int64
	for _, b := range n.Blocks {
		end := start + b.Size
		if end > offset && start < offset+length {
			from := max(offset-start, 0)
			to := min(offset+length-start, b.Size)
			r, err := s.Storage.Get(ctx, b.Name, from, to-from)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", n.Path, err)
			}
			chunk, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", n.Path, err)
			}
			if int64(len(chunk)) != to-from {
				return nil, fmt.Errorf("read %s: block %s is shorter than recorded", n.Path, b.Name)
			}
			out = append(out, chunk...)
		}
		start = end
		if start >= offset+length {
			break
		}
	}
	return out, nil
}
