package dbfs

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/fspath"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// Routes returns the DBFS API and Tandem's restore-point endpoints.
func (s *Service) Routes() []api.Route {
	r := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "dbfs", Action: action, Handler: h}
	}
	addBlock := r("POST /api/2.0/dbfs/add-block", "addBlock", s.addBlock)
	addBlock.MaxBody, addBlock.Drop = MaxBlock*4/3+64<<10, []string{"data"}
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

func (s *Service) getStatus(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p, err := CleanPath(r.Path)
	if err != nil {
		return nil, err
	}
	var n Node
	err = s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		n, err = lookup(tx, p)
		return err
	})
	return n.info(), err
}

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p, err := CleanPath(r.Path)
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
			// A file lists as itself; clients check the path to tell.
			files = []FileInfo{n.info()}
			return nil
		}
		kids, err := children(tx, p)
		for _, k := range kids {
			files = append(files, k.info())
		}
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
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p, err := CleanPath(r.Path)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error { return mkdirs(tx, p, tx.Now().UnixMilli()) })
	return nil, err
}

// delete removes a file, or a directory (recursively on request), in one
// transaction; deleted files become versions.
func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p, err := CleanPath(r.Path)
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
		all, err := subtree(tx, n)
		if err != nil {
			return err
		}
		if len(all) > 1 && !r.Recursive {
			return api.Errorf(api.IOError, "Directory %s is not empty; use recursive to delete it.", p)
		}
		now := tx.Now().UnixMilli()
		for _, x := range all {
			if err := retire(tx, x, now, true); err != nil {
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

// move renames a file or a directory with everything under it, in one
// transaction.
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
	if src == "/" || dst == "/" || dst == src || (len(dst) > len(src) && dst[:len(src)+1] == src+"/") {
		return nil, api.InvalidParam("Cannot move %s to %s.", src, dst)
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		n, err := lookup(tx, src)
		if err != nil {
			return err
		}
		if _, err := getNode(tx, dst); err == nil {
			return exists400("A file or directory already exists at the destination path %s.", dst)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
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
			if err := tx.Delete(kindNode, nodeKey(x.Path)); err != nil {
				return err
			}
			x.Path = dst + x.Path[len(src):]
			if err := store.Put(tx, kindNode, nodeKey(x.Path), x); err != nil {
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
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p, err := CleanPath(r.Path)
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
		id, err := tx.NextID("dbfs.handle")
		if err != nil {
			return err
		}
		h = Handle{ID: id, Path: p, Overwrite: r.Overwrite, Owner: caller(ctx).ID, LastUsed: tx.Now().UnixMilli()}
		return store.Put(tx, kindHandle, strconv.FormatInt(id, 10), h)
	})
	if err != nil {
		return nil, err
	}
	return map[string]int64{"handle": h.ID}, nil
}

func handleNotFound(id int64) error {
	return api.NotFound("Handle %d does not exist or has expired.", id)
}

// handle loads an upload handle of the caller.
func handle(tx store.Tx, p principal.Principal, id int64, now time.Time) (Handle, error) {
	h, err := store.Get[Handle](tx, kindHandle, strconv.FormatInt(id, 10))
	if errors.Is(err, store.ErrNotFound) {
		return h, handleNotFound(id)
	}
	if err != nil {
		return h, err
	}
	// Another principal's handle, or an expired one, does not exist for the caller.
	if h.Owner != p.ID || now.UnixMilli()-h.LastUsed > HandleIdle.Milliseconds() {
		return h, handleNotFound(id)
	}
	return h, nil
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
	// Check the handle before writing anything.
	err = s.Store.View(ctx, func(tx store.Tx) error {
		_, err := handle(tx, caller(ctx), r.Handle, time.Now())
		return err
	})
	if err != nil {
		return nil, err
	}
	b, err := storage.PutBlob(ctx, s.Storage, blobPrefix, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		h, err := handle(tx, caller(ctx), r.Handle, tx.Now())
		if err != nil {
			return err
		}
		h.Blocks = append(h.Blocks, b)
		h.Size += b.Size
		h.LastUsed = tx.Now().UnixMilli()
		return store.Put(tx, kindHandle, strconv.FormatInt(h.ID, 10), h)
	})
	if err != nil {
		s.deleteBlobs(ctx, []storage.Blob{b})
	}
	return nil, err
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
		h, err := handle(tx, caller(ctx), r.Handle, tx.Now())
		if err != nil {
			return err
		}
		req.SetAuditParam("path", h.Path)
		if _, err := publish(tx, h.Path, h.Blocks, h.Overwrite); err != nil {
			return err
		}
		return tx.Delete(kindHandle, strconv.FormatInt(h.ID, 10))
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
	var r putRequest
	var blocks []storage.Blob
	mt, params, _ := mime.ParseMediaType(req.HTTP.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		var err error
		r, blocks, err = s.readMultipart(ctx, req.HTTP.Body, params["boundary"])
		if err != nil {
			return nil, err
		}
	} else {
		body, err := io.ReadAll(io.LimitReader(req.HTTP.Body, MaxBlock*4/3+64<<10+1))
		if err != nil {
			return nil, api.Errorf(api.MalformedRequest, "Could not read the request body: %v", err)
		}
		if len(body) > MaxBlock*4/3+64<<10 {
			return nil, api.Errorf(api.MaxBlockSizeExceeded, "contents may hold at most %d bytes; upload bigger files as a multipart form or with create, add-block and close.", MaxBlock)
		}
		if err := api.DecodeJSON(body, &r); err != nil {
			return nil, err
		}
		data, err := base64.StdEncoding.DecodeString(r.Contents)
		if err != nil {
			return nil, api.Errorf(api.MalformedRequest, "contents is not valid base64: %v", err)
		}
		if len(data) > MaxBlock {
			return nil, api.Errorf(api.MaxBlockSizeExceeded, "contents may hold at most %d bytes; upload bigger files as a multipart form or with create, add-block and close.", MaxBlock)
		}
		if r.Path == "" {
			return nil, api.MissingField("path")
		}
		if _, err := CleanPath(r.Path); err != nil {
			return nil, err
		}
		if len(data) > 0 {
			b, err := storage.PutBlob(ctx, s.Storage, blobPrefix, bytes.NewReader(data))
			if err != nil {
				return nil, err
			}
			blocks = []storage.Blob{b}
		}
	}
	req.SetAuditParam("path", r.Path)
	req.SetAuditParam("overwrite", strconv.FormatBool(r.Overwrite))
	p, err := CleanPath(r.Path)
	if err != nil {
		s.deleteBlobs(ctx, blocks)
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		_, err := publish(tx, p, blocks, r.Overwrite)
		return err
	})
	if err != nil {
		s.deleteBlobs(ctx, blocks)
	}
	return nil, err
}

func (s *Service) readMultipart(ctx context.Context, body io.Reader, boundary string) (putRequest, []storage.Blob, error) {
	var r putRequest
	var blocks []storage.Blob
	fail := func(err error) (putRequest, []storage.Blob, error) {
		s.deleteBlobs(ctx, blocks)
		return r, nil, err
	}
	mr := multipart.NewReader(body, boundary)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(api.Errorf(api.MalformedRequest, "Invalid multipart form: %v", err))
		}
		switch part.FormName() {
		case "contents", "file":
			bs, err := s.writeBlocks(ctx, part, streamBlockSize, MaxPut)
			if err != nil {
				return fail(err)
			}
			blocks = append(blocks, bs...)
		case "path", "overwrite":
			v, err := io.ReadAll(io.LimitReader(part, 8192))
			if err != nil {
				return fail(api.Errorf(api.MalformedRequest, "Invalid multipart form: %v", err))
			}
			if part.FormName() == "path" {
				r.Path = string(v)
			} else {
				r.Overwrite, _ = strconv.ParseBool(string(v))
			}
		}
	}
	if r.Path == "" {
		return fail(api.MissingField("path"))
	}
	return r, blocks, nil
}

func (s *Service) read(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p, err := CleanPath(r.Path)
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

// versionInfo is one restorable version of a file.
type versionInfo struct {
	ModificationTime int64 `json:"modification_time"`
	ReplacedTime     int64 `json:"replaced_time,omitempty"`
	FileSize         int64 `json:"file_size"`
	Deleted          bool  `json:"deleted,omitempty"`
	Current          bool  `json:"current,omitempty"`
}

func (s *Service) versions(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p, err := CleanPath(r.Path)
	if err != nil {
		return nil, err
	}
	out := []versionInfo{}
	err = s.Store.View(ctx, func(tx store.Tx) error {
		if n, err := getNode(tx, p); err == nil && !n.IsDir {
			out = append(out, versionInfo{ModificationTime: n.ModTime, FileSize: n.Size, Current: true})
		}
		vs, err := versionsOf(tx, p)
		for i := len(vs) - 1; i >= 0; i-- {
			v := vs[i]
			out = append(out, versionInfo{ModificationTime: v.Node.ModTime, ReplacedTime: v.Replaced, FileSize: v.Node.Size, Deleted: v.Deleted})
		}
		if err == nil && len(out) == 0 {
			return notFound(p)
		}
		return err
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
	if r.Timestamp <= 0 {
		return nil, api.MissingField("timestamp")
	}
	if r.Timestamp > time.Now().UnixMilli() {
		return nil, api.InvalidParam("timestamp is in the future.")
	}
	n, err := s.restore(ctx, p, r.Timestamp)
	if err != nil {
		return nil, err
	}
	return map[string]int{"restored_paths": n}, nil
}
