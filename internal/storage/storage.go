// Package storage is a region's storage account: the place that holds DBFS
// file contents, workspace object contents, delivered logs, backups and
// restore points. An Account keeps named objects on one or more Backends
// (a local directory, an Azure Blob container); objects are published
// atomically, so a reader sees the whole old object or the whole new one.
package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound = errors.New("object not found")
	// ErrNoSpace is returned when a backend is out of space; nothing of the
	// object was published.
	ErrNoSpace = errors.New("storage account is out of space")
	// ErrUnavailable is returned when too few copies (or no endpoint) can
	// take a call; the call did nothing and may be retried.
	ErrUnavailable = errors.New("storage account is unavailable")
	// ErrCorrupt is returned when no copy of an object passes its checksum
	// or authentication: its contents are lost from this account.
	ErrCorrupt = errors.New("object is corrupt in every copy")
	// ErrReadOnly is returned for writes to a read-only endpoint (the
	// secondary endpoint of a read-access geo-redundant account).
	ErrReadOnly = errors.New("storage endpoint is read-only")
	// ErrInvalidName is returned for an object name a backend cannot hold
	// or that is reserved for the account's own records.
	ErrInvalidName = errors.New("invalid object name")
)

// ReservedPrefix starts the names of the records the account's layers keep
// beside the objects (wrapped keys, copy markers). Callers of an account
// cannot write or see them.
const ReservedPrefix = ".tandem/"

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Backend is one place objects are kept. Implementations live in
// subpackages (storage/local, storage/azureblob); every one passes the
// behaviour suite in storage/storagetest.
type Backend interface {
	// Put stores the object read from r under name, replacing any object of
	// that name atomically: until Put returns nil, readers see the old object
	// (or none); after, the whole new one.
	Put(ctx context.Context, name string, r io.Reader) error
	// Get reads length bytes from offset (length < 0: to the end).
	Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error)
	// Stat describes one object, or returns ErrNotFound.
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// Delete removes an object; a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// List calls fn for each object whose name starts with prefix, in name order.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}
