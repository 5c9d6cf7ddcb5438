package dbfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/fspath"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// Store kinds owned by this package. Keys put the thing looked up by first:
// a directory's children share the prefix "dir\x1f", a file's versions
// "path\x1f", an upload's blocks "handle\x1f", and the version expiry index
// sorts by time so the purge reads only what has expired.
const (
	kindNode        = "dbfs.node"         // parent \x1f name -> Node
	kindHandle      = "dbfs.handle"       // handle id -> Handle
	kindHandleBlock = "dbfs.handle_block" // handle id \x1f index (10 digits) -> storage.Blob
	kindVersion     = "dbfs.version"      // path \x1f replaced-at (20 digits) -> Version
	kindVersionTime = "dbfs.version_time" // replaced-at (20 digits) \x1f path -> version key
)

// sep separates key parts. Paths cannot hold it (fspath refuses control
// characters), so "dir\x1f" never matches a sibling such as "dir2".
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
	Path  string `json:"path"`
	IsDir bool   `json:"is_dir"`
	Size  int64  `json:"size"`
	// ModTime (ms) is when a file's contents were written or a directory
	// made; a move keeps it, as a rename does.
	ModTime int64 `json:"mtime"`
	// Since (ms) is when this path began to hold this node: the write, the
	// move or the restore that put it here. Restore points go by it.
	Since  int64          `json:"since,omitempty"`
	Blocks []storage.Blob `json:"blocks,omitempty"`
}

// since is Since, or ModTime for nodes written before Since existed.
func (n Node) since() int64 {
	if n.Since != 0 {
		return n.Since
	}
	return n.ModTime
}

// Version is a past state of a file path: the contents it held from
// Node.since() until Replaced, when they were overwritten, deleted or moved
// away.
type Version struct {
	Node     Node   `json:"node"`
	Replaced int64  `json:"replaced"` // ms
	Deleted  bool   `json:"deleted"`  // the path held nothing afterwards
	MovedTo  string `json:"moved_to,omitempty"`
}

// FileInfo is the API's view of a node. file_size is always present, 0 for
// a directory, as Databricks answers: the legacy CLI reads it on every entry
// of a listing.
type FileInfo struct {
	Path             string `json:"path"`
	IsDir            bool   `json:"is_dir"`
	FileSize         int64  `json:"file_size"`
	ModificationTime int64  `json:"modification_time"`
}

// nodeInfo decodes a node without its block list, for listings.
type nodeInfo struct {
	Path    string `json:"path"`
	IsDir   bool   `json:"is_dir"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime"`
}

func (n nodeInfo) info() FileInfo {
	fi := FileInfo{Path: n.Path, IsDir: n.IsDir, ModificationTime: n.ModTime}
	if !n.IsDir {
		fi.FileSize = n.Size
	}
	return fi
}

func (n Node) info() FileInfo {
	return nodeInfo{Path: n.Path, IsDir: n.IsDir, Size: n.Size, ModTime: n.ModTime}.info()
}

func nodeKey(p string) string {
	dir, name := fspath.Split(p)
	return dir + sep + name
}

func versionKey(p string, replaced int64) string { return fmt.Sprintf("%s%s%020d", p, sep, replaced) }

func versionTimeKey(p string, replaced int64) string {
	return fmt.Sprintf("%020d%s%s", replaced, sep, p)
}

var rootNode = Node{Path: "/", IsDir: true}

// Service is a region's DBFS.
type Service struct {
	Store   store.Store
	Storage storage.Backend
	Log     *slog.Logger
	// Retention is how long replaced and deleted files stay restorable.
	Retention time.Duration
	// Now is the clock of the background loop and of restore's retention
	// check (tests replace it).
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

// exists400 is RESOURCE_ALREADY_EXISTS with the 400 status the CLIs expect
// from DBFS (the generic status of the code is 409).
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

func childInfos(tx store.Tx, dir string) ([]FileInfo, error) {
	var out []FileInfo
	err := store.ScanPrefix(tx, kindNode, dir+sep, func(_ string, n nodeInfo) error {
		out = append(out, n.info())
		return nil
	})
	return out, err
}

func hasChildren(tx store.Tx, dir string) (bool, error) {
	found := false
	err := tx.Scan(kindNode, dir+sep, "", func(string, json.RawMessage) error {
		found = true
		return store.ErrStopScan
	})
	return found, err
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
	return store.Put(tx, kindNode, nodeKey(p), Node{Path: p, IsDir: true, ModTime: now, Since: now})
}

// checkParents refuses a path under a file, before an upload starts.
func checkParents(tx store.Tx, p string) error {
	for _, d := range fspath.Ancestors(p) {
		n, err := getNode(tx, d)
		switch {
		case err == nil && !n.IsDir:
			return exists400("A file exists at %s, so it cannot be a directory.", d)
		case err == nil:
			return nil // an existing directory: the rest above it are directories too
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	return nil
}

// retire records what a file path held until now as a version. movedTo
// names where a moved file went.
func retire(tx store.Tx, n Node, now int64, deleted bool, movedTo string) error {
	if n.IsDir {
		return nil
	}
	// Two changes of a path in one millisecond: keep both by nudging the key.
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
	v := Version{Node: n, Replaced: at, Deleted: deleted, MovedTo: movedTo}
	if err := store.Put(tx, kindVersion, versionKey(n.Path, at), v); err != nil {
		return err
	}
	return store.Put(tx, kindVersionTime, versionTimeKey(n.Path, at), versionKey(n.Path, at))
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
		if err := retire(tx, existing, now, false, ""); err != nil {
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
	n := Node{Path: p, Size: size, ModTime: now, Since: now, Blocks: blocks}
	return n, store.Put(tx, kindNode, nodeKey(p), n)
}

// discard deletes blobs written for a change that failed, when the failure
// is certain to have committed nothing: a refusal of ours (an API error such
// as RESOURCE_ALREADY_EXISTS). After any other error (a lost reply from a
// PostgreSQL commit, say) the change may have committed and named them, so
// they are left for the sweep, which deletes them only if nothing does.
func (s *Service) discard(ctx context.Context, blocks []storage.Blob, cause error) {
	var refused *api.Error
	if errors.As(cause, &refused) {
		s.deleteBlobs(ctx, blocks)
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
	length = min(length, n.Size-offset)
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
			chunk, err := io.ReadAll(io.LimitReader(r, to-from))
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
