package dbfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// ErrAppendConflict is returned by AppendAt when the file does not hold what
// the writer expects: someone else wrote it, deleted it, or it is shorter
// than the writer's cursor.
var ErrAppendConflict = errors.New("the file does not hold what the appender expects")

// appendMergeBelow: an append whose file ends in a block smaller than this
// rewrites that block with the new bytes instead of adding one, so a file
// grown by many small appends (a delivered log) keeps a short block list.
const appendMergeBelow = 1 << 20

// AppendAt appends data to the file at path for a writer that has already
// written the file's first at bytes and whose bytes are deterministic (a log
// delivered from an append-only source). It is idempotent: when the file
// already holds some of data past at (a previous call committed, then the
// writer crashed before recording it), only the rest is appended. at 0
// replaces the file (or makes it, with its parents) with data. It returns
// the file's size.
//
// An append is not a new version of the file: its restore point is its
// latest contents. Replacing (at 0) keeps what the file held as a version.
func (s *Service) AppendAt(ctx context.Context, path string, at int64, data []byte) (int64, error) {
	p, err := CleanPath(path)
	if err != nil {
		return 0, err
	}
	if at == 0 {
		return s.replace(ctx, p, data)
	}
	for attempt := 0; ; attempt++ {
		var n Node
		err := s.Store.View(ctx, func(tx store.Tx) error {
			var err error
			n, err = getNode(tx, p)
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return 0, fmt.Errorf("append to %s at %d: the file is gone: %w", p, at, ErrAppendConflict)
		}
		if err != nil {
			return 0, err
		}
		if n.IsDir || n.Size < at || n.Size > at+int64(len(data)) {
			return n.Size, fmt.Errorf("append %d bytes to %s at %d: it holds %d bytes: %w", len(data), p, at, n.Size, ErrAppendConflict)
		}
		rest := data[n.Size-at:]
		if len(rest) == 0 {
			return n.Size, nil
		}
		blocks, fresh, err := s.appendBlocks(ctx, n, rest)
		if err != nil {
			return 0, fmt.Errorf("append to %s: %w", p, err)
		}
		var size int64
		_, err = s.Store.Update(ctx, func(tx store.Tx) error {
			cur, err := getNode(tx, p)
			if err != nil {
				return err
			}
			if !sameBlocks(cur.Blocks, n.Blocks) {
				return errAppendRaced
			}
			cur.Blocks, cur.Size, cur.ModTime = blocks, n.Size+int64(len(rest)), tx.Now().UnixMilli()
			size = cur.Size
			return store.Put(tx, kindNode, nodeKey(p), cur)
		})
		if err == nil {
			return size, nil
		}
		s.discard(ctx, []storage.Blob{fresh}, err)
		if !errors.Is(err, errAppendRaced) || attempt >= 2 {
			return 0, fmt.Errorf("append to %s: %w", p, err)
		}
	}
}

var errAppendRaced = errors.New("the file changed during the append")

// appendBlocks returns the block list of n with rest appended, and the one
// blob it wrote: the last block rewritten with rest when it is small, a new
// block otherwise. The replaced block is left for the sweep.
func (s *Service) appendBlocks(ctx context.Context, n Node, rest []byte) ([]storage.Blob, storage.Blob, error) {
	blocks := append([]storage.Blob(nil), n.Blocks...)
	var body []byte
	if k := len(blocks); k > 0 && blocks[k-1].Size < appendMergeBelow && blocks[k-1].Size+int64(len(rest)) <= streamBlockSize {
		last := blocks[k-1]
		r, err := s.Storage.Get(ctx, last.Name, 0, last.Size)
		if err != nil {
			return nil, storage.Blob{}, err
		}
		prev, err := io.ReadAll(io.LimitReader(r, last.Size))
		r.Close()
		if err != nil {
			return nil, storage.Blob{}, err
		}
		if int64(len(prev)) != last.Size {
			return nil, storage.Blob{}, fmt.Errorf("block %s is shorter than recorded", last.Name)
		}
		body = append(prev, rest...)
		blocks = blocks[:k-1]
	} else {
		body = rest
	}
	b, err := storage.PutBlob(ctx, s.Storage, blobPrefix, bytes.NewReader(body))
	if err != nil {
		return nil, storage.Blob{}, err
	}
	return append(blocks, b), b, nil
}

func sameBlocks(a, b []storage.Blob) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			return false
		}
	}
	return true
}

// replace makes the file at p hold data, making its parents.
func (s *Service) replace(ctx context.Context, p string, data []byte) (int64, error) {
	var blocks []storage.Blob
	if len(data) > 0 {
		b, err := storage.PutBlob(ctx, s.Storage, blobPrefix, bytes.NewReader(data))
		if err != nil {
			return 0, err
		}
		blocks = []storage.Blob{b}
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		_, err := publish(tx, p, blocks, true)
		return err
	})
	if err != nil {
		s.discard(ctx, blocks, err)
		return 0, fmt.Errorf("write %s: %w", p, err)
	}
	return int64(len(data)), nil
}

// WriteFile makes the file at path hold data (replacing what it held, which
// stays restorable), making its parents: for other services (compute writes
// rotated cluster logs).
func (s *Service) WriteFile(ctx context.Context, path string, data []byte) error {
	p, err := CleanPath(path)
	if err != nil {
		return err
	}
	_, err = s.replace(ctx, p, data)
	return err
}
