package dbfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// Handle is an upload in progress: one opened with create (add-block,
// close), or the upload behind a multipart put. It lives in the store, so
// an upload survives a restart of the server and its blocks are never swept
// while it lives; its file becomes visible only when it is closed. Each
// block is its own document (kindHandleBlock), so adding one writes a few
// hundred bytes however long the upload is.
type Handle struct {
	ID        int64  `json:"id"`
	Path      string `json:"path"`
	Overwrite bool   `json:"overwrite"`
	Owner     string `json:"owner"` // principal id
	// Stream marks the upload of a multipart put: the API's add-block and
	// close do not see it.
	Stream   bool  `json:"stream,omitempty"`
	Blocks   int   `json:"blocks"` // how many blocks so far
	Size     int64 `json:"size"`
	LastUsed int64 `json:"last_used"` // ms
}

func handleKey(id int64) string { return strconv.FormatInt(id, 10) }

func blockKey(id int64, i int) string { return fmt.Sprintf("%d%s%010d", id, sep, i) }

// usable decides whether a caller may use an upload handle at now (ms):
// only its creator, only through the way it was opened, and only until it
// has been idle for HandleIdle. It is pure.
func usable(h Handle, owner string, stream bool, now int64) bool {
	return h.Owner == owner && h.Stream == stream && now-h.LastUsed <= HandleIdle.Milliseconds()
}

func handleNotFound(id int64) error {
	return api.NotFound("Handle %d does not exist or has expired.", id)
}

// loadHandle returns a handle the caller may use, or RESOURCE_DOES_NOT_EXIST:
// another principal's handle and an expired one do not exist for the caller.
func loadHandle(tx store.Tx, id int64, owner string, stream bool) (Handle, error) {
	h, err := store.Get[Handle](tx, kindHandle, handleKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return h, handleNotFound(id)
	}
	if err != nil {
		return h, err
	}
	if !usable(h, owner, stream, tx.Now().UnixMilli()) {
		return h, handleNotFound(id)
	}
	return h, nil
}

// openHandle starts an upload in tx.
func openHandle(tx store.Tx, p string, overwrite bool, owner string, stream bool) (Handle, error) {
	id, err := tx.NextID("dbfs.handle")
	if err != nil {
		return Handle{}, err
	}
	h := Handle{ID: id, Path: p, Overwrite: overwrite, Owner: owner, Stream: stream, LastUsed: tx.Now().UnixMilli()}
	return h, store.Put(tx, kindHandle, handleKey(id), h)
}

// appendBlock adds a stored blob to an upload.
func (s *Service) appendBlock(ctx context.Context, id int64, owner string, stream bool, b storage.Blob) error {
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		h, err := loadHandle(tx, id, owner, stream)
		if err != nil {
			return err
		}
		if err := store.Put(tx, kindHandleBlock, blockKey(id, h.Blocks), b); err != nil {
			return err
		}
		h.Blocks++
		h.Size += b.Size
		h.LastUsed = tx.Now().UnixMilli()
		return store.Put(tx, kindHandle, handleKey(id), h)
	})
	return err
}

func handleBlocks(tx store.Tx, id int64) ([]storage.Blob, error) {
	return store.List[storage.Blob](tx, kindHandleBlock, handleKey(id)+sep)
}

// dropHandle removes an upload and its block documents in tx (its blobs
// are left to the caller or the sweep).
func dropHandle(tx store.Tx, id int64) error {
	var keys []string
	err := tx.Scan(kindHandleBlock, handleKey(id)+sep, "", func(key string, _ json.RawMessage) error {
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(kindHandleBlock, k); err != nil {
			return err
		}
	}
	return tx.Delete(kindHandle, handleKey(id))
}

// finish publishes an upload's file at h.Path and ends the upload, in tx.
func finish(tx store.Tx, h Handle) error {
	blocks, err := handleBlocks(tx, h.ID)
	if err != nil {
		return err
	}
	if len(blocks) != h.Blocks {
		return fmt.Errorf("upload %d records %d blocks but has %d", h.ID, h.Blocks, len(blocks))
	}
	if _, err := publish(tx, h.Path, blocks, h.Overwrite); err != nil {
		return err
	}
	return dropHandle(tx, h.ID)
}

// putStream stores a multipart put's file part as blocks of an upload of
// its own, registered block by block so that an upload slower than the
// sweep's grace keeps its blocks, then publishes it. It returns the form's
// path and overwrite fields as the audit record should show them. On error
// nothing is published and what was written is removed.
func (s *Service) putStream(ctx context.Context, owner string, mr *multipart.Reader) (putRequest, error) {
	var r putRequest
	var h Handle
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		var err error
		h, err = openHandle(tx, "", false, owner, true)
		return err
	})
	if err != nil {
		return r, err
	}
	var written []storage.Blob
	abort := func(cause error) (putRequest, error) {
		_, err := s.Store.Update(context.WithoutCancel(ctx), func(tx store.Tx) error { return dropHandle(tx, h.ID) })
		switch {
		case err == nil:
			// The upload is gone and nothing else ever named its blocks.
			s.deleteBlobs(ctx, written)
		case errors.Is(err, store.ErrNotFound):
			// Something consumed the upload: the purge, or a commit of
			// finish whose success we did not hear of. The sweep decides.
		default:
			// The purge removes it once it has been idle long enough.
			s.Log.Warn("drop abandoned DBFS upload", "handle", h.ID, "err", err)
		}
		return r, cause
	}
	var total int64
	buf := make([]byte, streamBlockSize)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return abort(formError(err))
		}
		switch part.FormName() {
		case "contents", "file":
			for {
				n, rerr := io.ReadFull(part, buf)
				if n > 0 {
					if total += int64(n); total > MaxPut {
						return abort(tooLarge())
					}
					b, err := storage.PutBlob(ctx, s.Storage, blobPrefix, bytes.NewReader(buf[:n]))
					if err != nil {
						return abort(err)
					}
					written = append(written, b)
					if err := s.appendBlock(ctx, h.ID, owner, true, b); err != nil {
						return abort(err)
					}
				}
				if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
					break
				}
				if rerr != nil {
					return abort(formError(rerr))
				}
			}
		case "path", "overwrite":
			v, err := io.ReadAll(io.LimitReader(part, 8192))
			if err != nil {
				return abort(formError(err))
			}
			if part.FormName() == "path" {
				r.Path = string(v)
			} else if r.Overwrite, err = strconv.ParseBool(string(v)); err != nil {
				return abort(api.InvalidParam("overwrite must be true or false, not %q.", v))
			}
		}
	}
	if r.Path == "" {
		return abort(api.MissingField("path"))
	}
	p, err := CleanPath(r.Path)
	if err != nil {
		return abort(err)
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		h, err := loadHandle(tx, h.ID, owner, true)
		if err != nil {
			return err
		}
		h.Path, h.Overwrite = p, r.Overwrite
		return finish(tx, h)
	})
	if err != nil {
		return abort(err)
	}
	return r, nil
}

func tooLarge() error {
	return api.Errorf(api.RequestTooLarge, "The file is larger than the %d-byte limit of a single put; upload it with create, add-block and close.", int64(MaxPut))
}

// formError explains why a multipart body could not be read.
func formError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return tooLarge()
	}
	return api.Errorf(api.MalformedRequest, "Invalid multipart form: %v", err)
}
