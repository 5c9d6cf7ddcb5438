package dbfs

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/fspath"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// Request body limits: an add-block carries 1 MiB as base64 in JSON; a put
// is read by its handler, as JSON (1 MB of contents) or as a streamed
// multipart form (2 GB of file and a little form around it).
const (
	maxBlockBody = MaxBlock*4/3 + 64<<10
	maxPutBody   = MaxPut + 1<<20
)

// Routes returns the DBFS API and Tandem's restore-point endpoints.
func (s *Service) Routes() []api.Route {
	r := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "dbfs", Action: action, Handler: h}
	}
	addBlock := r("POST /api/2.0/dbfs/add-block", "addBlock", s.addBlock)
	addBlock.MaxBody, addBlock.Drop = maxBlockBody, []string{"data"}
	put := r("POST /api/2.0/dbfs/put", "put", s.put)
	put.Stream, put.Drop = true, []string{"contents"}
	read := r("GET /api/2.0/dbfs/read", "read", s.read)
	read.NoResult = true
	return []api.Route{
		r("GET /api/2.0/dbfs/get-status", "getStatus", s.getStatus),
		r("GET /api/2.0/dbfs/list", "list", s.list),
		r("POST /api/2.0/dbfs/mkdirs", "mkdirs", s.mkdirsHandler),
		r("POST /api/2.0/dbfs/delete", "delete", s.delete),
		r("POST /api/2.0/dbfs/move", "move", s.move),
		r("POST /api/2.0/dbfs/create", "create", s.create),
		r("POST /api/2.0/dbfs/close", "close", s.close),
		addBlock, put, read,
		r("GET /api/2.0/tandem/dbfs/versions", "listVersions", s.versions),
		r("POST /api/2.0/tandem/dbfs/restore", "restore", s.restoreHandler),
	}
}

type pathRequest struct {
	Path      string `json:"path"`
	Recursive bool   `json:"recursive"`
	Overwrite bool   `json:"overwrite"`
	Offset    int64  `json:"offset"`
	Length    int64  `json:"length"`
}

// decodePath decodes a request and cleans its path.
func decodePath(req *api.Request) (pathRequest, string, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return r, "", err
	}
	p, err := CleanPath(r.Path)
	return r, p, err
}

func (s *Service) getStatus(ctx context.Context, req *api.Request) (any, error) {
	_, p, err := decodePath(req)
	if err != nil {
		return nil, err
	}
	var n Node
	err = s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		n, err = lookup(tx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return n.info(), nil
}

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	_, p, err := decodePath(req)
	if err != nil {
		return nil, err
	}
	var files []FileInfo
	err = s.Store.View(ctx, func(tx store.Tx) error {
		n, err := lookup(tx, p)
		if err != nil {
			return err
		}
		if !n.IsDir {
			// A file lists as itself: clients tell a file from a directory
			// by one entry whose path is the one they asked for.
			files = []FileInfo{n.info()}
			return nil
		}
		files, err = childInfos(tx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return map[string]any{}, nil
	}
	return map[string]any{"files": files}, nil
}

func (s *Service) mkdirsHandler(ctx context.Context, req *api.Request) (any, error) {
	_, p, err := decodePath(req)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error { return mkdirs(tx, p, tx.Now().UnixMilli()) })
	return nil, err
}

// delete removes a file, or a directory (with everything under it when
// recursive), in one transaction; deleted files become versions.
func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	r, p, err := decodePath(req)
	if err != nil {
		return nil, err
	}
	if p == "/" {
		return nil, api.InvalidParam("The DBFS root cannot be deleted.")
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		n, err := lookup(tx, p)
		if err != nil {
			return err
		}
		if n.IsDir && !r.Recursive {
			full, err := hasChildren(tx, p)
			if err != nil {
				return err
			}
			if full {
				return api.Errorf(api.IOError, "Directory %s is not empty; delete it with recursive set to true.", p)
			}
		}
		all, err := subtree(tx, n)
		if err != nil {
			return err
		}
		now := tx.Now().UnixMilli()
		for _, x := range all {
			if err := retire(tx, x, now, true, ""); err != nil {
				return err
			}
			if err := tx.Delete(kindNode, nodeKey(x.Path)); err != nil {
				return err
			}
		}
		return nil
	})
	return nil, err
}

type moveRequest struct {
	SourcePath      string `json:"source_path"`
	DestinationPath string `json:"destination_path"`
}

// move renames a file, or a directory with everything under it, in one
// transaction. The files' history stays with their old paths, which record
// where they went, so restoring either place to a time before the move
// undoes it there.
func (s *Service) move(ctx context.Context, req *api.Request) (any, error) {
	var r moveRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.SourcePath == "" {
		return nil, api.MissingField("source_path")
	}
	if r.DestinationPath == "" {
		return nil, api.MissingField("destination_path")
	}
	src, err := CleanPath(r.SourcePath)
	if err != nil {
		return nil, err
	}
	dst, err := CleanPath(r.DestinationPath)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		n, err := lookup(tx, src)
		if err != nil {
			return err
		}
		if src == "/" {
			return api.InvalidParam("The DBFS root cannot be moved.")
		}
		if _, err := getNode(tx, dst); err == nil {
			return exists400("A file or directory already exists at the destination path %s.", dst)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if len(dst) > len(src) && dst[:len(src)+1] == src+"/" {
			return api.InvalidParam("Cannot move %s into itself (%s).", src, dst)
		}
		now := tx.Now().UnixMilli()
		parent, _ := fspath.Split(dst)
		if err := mkdirs(tx, parent, now); err != nil {
			return err
		}
		all, err := subtree(tx, n)
		if err != nil {
			return err
		}
		for _, x := range all {
			to := dst + x.Path[len(src):]
			if err := tx.Delete(kindNode, nodeKey(x.Path)); err != nil {
				return err
			}
			if err := retire(tx, x, now, true, to); err != nil {
				return err
			}
			x.Path, x.Since = to, now
			if err := store.Put(tx, kindNode, nodeKey(to), x); err != nil {
				return err
			}
		}
		return nil
	})
	return nil, err
}

func caller(ctx context.Context) principal.Principal { return principal.MustFrom(ctx) }

// create opens an upload handle. Handles are stored, so an upload survives
// a restart of the server; one idle for ten minutes expires.
func (s *Service) create(ctx context.Context, req *api.Request) (any, error) {
	r, p, err := decodePath(req)
	if err != nil {
		return nil, err
	}
	var h Handle
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if n, err := getNode(tx, p); err == nil {
			if n.IsDir {
				return exists400("A directory exists at %s.", p)
			}
			if !r.Overwrite {
				return exists400("A file or directory already exists at the input path %s.", p)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := checkParents(tx, p); err != nil {
			return err
		}
		h, err = openHandle(tx, p, r.Overwrite, caller(ctx).ID, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]int64{"handle": h.ID}, nil
}

type blockRequest struct {
	Handle int64  `json:"handle"`
	Data   string `json:"data"`
}

func (s *Service) addBlock(ctx context.Context, req *api.Request) (any, error) {
	var r blockRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.Handle == 0 {
		return nil, api.MissingField("handle")
	}
	if base64.StdEncoding.DecodedLen(len(r.Data)) > MaxBlock+3 {
		return nil, api.Errorf(api.MaxBlockSizeExceeded, "A block may hold at most %d bytes.", MaxBlock)
	}
	data, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return nil, api.Errorf(api.MalformedRequest, "data is not valid base64: %v", err)
	}
	if len(data) > MaxBlock {
		return nil, api.Errorf(api.MaxBlockSizeExceeded, "A block may hold at most %d bytes; this one has %d.", MaxBlock, len(data))
	}
	owner := caller(ctx).ID
	// Check the handle before writing anything.
	err = s.Store.View(ctx, func(tx store.Tx) error {
		h, err := loadHandle(tx, r.Handle, owner, false)
		if err == nil {
			req.SetAuditParam("path", h.Path)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	b, err := storage.PutBlob(ctx, s.Storage, blobPrefix, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if err := s.appendBlock(ctx, r.Handle, owner, false, b); err != nil {
		s.discard(ctx, []storage.Blob{b}, err)
		return nil, err
	}
	return nil, nil
}

// close publishes the upload: the file appears whole, at once.
func (s *Service) close(ctx context.Context, req *api.Request) (any, error) {
	var r blockRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.Handle == 0 {
		return nil, api.MissingField("handle")
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		h, err := loadHandle(tx, r.Handle, caller(ctx).ID, false)
		if err != nil {
			return err
		}
		req.SetAuditParam("path", h.Path)
		return finish(tx, h)
	})
	return nil, err
}

type putRequest struct {
	Path      string `json:"path"`
	Contents  string `json:"contents"`
	Overwrite bool   `json:"overwrite"`
}

// put uploads a whole file: base64 contents in JSON (up to 1 MB), or a
// multipart form streamed into blocks (up to 2 GB).
func (s *Service) put(ctx context.Context, req *api.Request) (any, error) {
	body := http.MaxBytesReader(nil, req.HTTP.Body, maxPutBody)
	mt, params, _ := mime.ParseMediaType(req.HTTP.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		r, err := s.putStream(ctx, caller(ctx).ID, multipart.NewReader(body, params["boundary"]))
		req.SetAuditParam("path", r.Path)
		req.SetAuditParam("overwrite", strconv.FormatBool(r.Overwrite))
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(body, maxBlockBody+1))
	if err != nil {
		return nil, api.Errorf(api.MalformedRequest, "Could not read the request body: %v", err)
	}
	if len(raw) > maxBlockBody {
		return nil, api.Errorf(api.MaxBlockSizeExceeded, "contents may hold at most %d bytes; upload bigger files as a multipart form or with create, add-block and close.", MaxBlock)
	}
	var r putRequest
	if err := api.DecodeJSON(raw, &r); err != nil {
		return nil, err
	}
	req.SetAuditParam("path", r.Path)
	req.SetAuditParam("overwrite", strconv.FormatBool(r.Overwrite))
	p, err := CleanPath(r.Path)
	if err != nil {
		return nil, err
	}
	data, err := base64.StdEncoding.DecodeString(r.Contents)
	if err != nil {
		return nil, api.Errorf(api.MalformedRequest, "contents is not valid base64: %v", err)
	}
	if len(data) > MaxBlock {
		return nil, api.Errorf(api.MaxBlockSizeExceeded, "contents may hold at most %d bytes; upload bigger files as a multipart form or with create, add-block and close.", MaxBlock)
	}
	var blocks []storage.Blob
	if len(data) > 0 {
		b, err := storage.PutBlob(ctx, s.Storage, blobPrefix, bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		blocks = []storage.Blob{b}
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		_, err := publish(tx, p, blocks, r.Overwrite)
		return err
	})
	if err != nil {
		s.discard(ctx, blocks, err)
	}
	return nil, err
}

func (s *Service) read(ctx context.Context, req *api.Request) (any, error) {
	r, p, err := decodePath(req)
	if err != nil {
		return nil, err
	}
	if r.Offset < 0 || r.Length < 0 {
		return nil, api.InvalidParam("offset and length must not be negative.")
	}
	if r.Length > MaxRead {
		return nil, api.Errorf(api.MaxReadSizeExceeded, "length may be at most %d bytes.", MaxRead)
	}
	if r.Length == 0 {
		r.Length = DefaultRead
	}
	var n Node
	err = s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		n, err = lookup(tx, p)
		if err == nil && n.IsDir {
			return api.InvalidParam("%s is a directory.", p)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	data, err := s.readAt(ctx, n, r.Offset, r.Length)
	if err != nil {
		return nil, err
	}
	return map[string]any{"bytes_read": len(data), "data": base64.StdEncoding.EncodeToString(data)}, nil
}

// versionInfo is one restorable state of a file path.
type versionInfo struct {
	ModificationTime int64  `json:"modification_time"`
	ReplacedTime     int64  `json:"replaced_time,omitempty"`
	FileSize         int64  `json:"file_size"`
	Deleted          bool   `json:"deleted,omitempty"`
	MovedTo          string `json:"moved_to,omitempty"`
	Current          bool   `json:"current,omitempty"`
}

// versions lists a file path's current contents and its retained versions,
// newest first.
func (s *Service) versions(ctx context.Context, req *api.Request) (any, error) {
	_, p, err := decodePath(req)
	if err != nil {
		return nil, err
	}
	out := []versionInfo{}
	err = s.Store.View(ctx, func(tx store.Tx) error {
		n, err := getNode(tx, p)
		isDir := err == nil && n.IsDir
		switch {
		case err == nil && !n.IsDir:
			out = append(out, versionInfo{ModificationTime: n.ModTime, FileSize: n.Size, Current: true})
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
		vs, err := versionsOf(tx, p)
		if err != nil {
			return err
		}
		for i := len(vs) - 1; i >= 0; i-- {
			v := vs[i]
			out = append(out, versionInfo{ModificationTime: v.Node.ModTime, ReplacedTime: v.Replaced, FileSize: v.Node.Size, Deleted: v.Deleted, MovedTo: v.MovedTo})
		}
		switch {
		case len(out) == 0 && isDir:
			return api.InvalidParam("%s is a directory; versions are kept per file.", p)
		case len(out) == 0:
			return notFound(p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"versions": out}, nil
}

type restoreRequest struct {
	Path      string `json:"path"`
	Timestamp int64  `json:"timestamp"`
}

func (s *Service) restoreHandler(ctx context.Context, req *api.Request) (any, error) {
	var r restoreRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p, err := CleanPath(r.Path)
	if err != nil {
		return nil, err
	}
	if err := s.checkRestoreTime(r.Timestamp); err != nil {
		return nil, err
	}
	n, err := s.restore(ctx, p, r.Timestamp)
	if err != nil {
		return nil, err
	}
	return map[string]int{"restored_paths": n}, nil
}
