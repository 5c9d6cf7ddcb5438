package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"time"
)

// Blob names immutable contents stored under a unique name, as workspace
// objects and DBFS files keep them: the metadata store holds the Blob, the
// account holds the bytes. Contents are written first and referenced only
// once the metadata transaction commits, so a crash leaves at most an
// unreferenced blob, which Sweep removes.
type Blob struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// PutBlob stores r under prefix followed by a fresh random name.
func PutBlob(ctx context.Context, b Backend, prefix string, r io.Reader) (Blob, error) {
	var id [16]byte
	rand.Read(id[:])
	name := prefix + hex.EncodeToString(id[:])
	cr := &countingReader{r: r, h: sha256.New()}
	if err := b.Put(ctx, name, cr); err != nil {
		return Blob{}, err
	}
	return Blob{Name: name, Size: cr.n, SHA256: hex.EncodeToString(cr.h.Sum(nil))}, nil
}

type countingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.h.Write(p[:n])
	return n, err
}

// Sweep deletes the objects under prefix that are older than grace and that
// live reports as unreferenced. It returns how many it deleted.
func Sweep(ctx context.Context, b Backend, prefix string, grace time.Duration, now time.Time, live func(name string) (bool, error)) (int, error) {
	var dead []string
	err := b.List(ctx, prefix, func(oi ObjectInfo) error {
		if now.Sub(oi.ModTime) < grace {
			return nil
		}
		ok, err := live(oi.Name)
		if err != nil {
			return err
		}
		if !ok {
			dead = append(dead, oi.Name)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range dead {
		if err := b.Delete(ctx, name); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
