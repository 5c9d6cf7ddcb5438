// Package azureblob is the storage backend that keeps objects as block
// blobs in one container of an Azure Blob Storage account (or Azurite),
// through the official Azure SDK for Go. A blob is published atomically
// when its block list is committed, so a reader sees the whole old blob or
// the whole new one; a write that fails before the commit leaves only
// uncommitted blocks, which the service discards.
package azureblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/tandemdata/tandem/internal/storage"
)

// Config names a container and the credentials to reach it.
type Config struct {
	// ServiceURL is the blob endpoint: https://ACCOUNT.blob.core.windows.net
	// or Azurite's http://127.0.0.1:10000/devstoreaccount1.
	ServiceURL string `json:"service_url"`
	Account    string `json:"account"`
	// Key is the account's shared key (kept out of logs and responses).
	Key       string `json:"key"`
	Container string `json:"container"`
	// MaxRetries and RetryDelay tune the SDK's retry with exponential
	// backoff for a service that is down (defaults 3 and 200 ms).
	MaxRetries int           `json:"max_retries"`
	RetryDelay time.Duration `json:"retry_delay"`
	// BlockSize is the size of the blocks a Put stages (default 4 MiB).
	BlockSize int64 `json:"block_size"`
}

// Backend is a container of an Azure Blob Storage account.
type Backend struct {
	c     *container.Client
	block int64
	name  string
}

var _ storage.Backend = (*Backend)(nil)

// New connects to the container, creating it if it does not exist.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.ServiceURL == "" || cfg.Account == "" || cfg.Container == "" {
		return nil, errors.New("azureblob: service_url, account and container are required")
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 3
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 200 * time.Millisecond
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 4 << 20
	}
	cred, err := azblob.NewSharedKeyCredential(cfg.Account, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("azureblob: account key: %w", err)
	}
	opts := &azblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry: policy.RetryOptions{MaxRetries: int32(cfg.MaxRetries), RetryDelay: cfg.RetryDelay, MaxRetryDelay: 8 * cfg.RetryDelay},
	}}
	svc, err := azblob.NewClientWithSharedKeyCredential(strings.TrimSuffix(cfg.ServiceURL, "/")+"/", cred, opts)
	if err != nil {
		return nil, fmt.Errorf("azureblob: %w", err)
	}
	b := &Backend{c: svc.ServiceClient().NewContainerClient(cfg.Container), block: cfg.BlockSize, name: cfg.Container}
	if _, err := b.c.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil, fmt.Errorf("azureblob: create container %s: %w", cfg.Container, mapErr(err))
	}
	return b, nil
}

func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\x00") || len(name) > 1024 {
		return fmt.Errorf("%w: %q", storage.ErrInvalidName, name)
	}
	return nil
}

// Put stages the object's blocks and commits them: the commit is the
// atomic publication.
func (b *Backend) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := b.c.NewBlockBlobClient(name).UploadStream(ctx, r, &blockblob.UploadStreamOptions{
		BlockSize: b.block, Concurrency: 2,
	})
	if err != nil {
		return fmt.Errorf("put %s in container %s: %w", name, b.name, mapErr(err))
	}
	return nil
}

// Get downloads a range of the blob.
func (b *Backend) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if offset < 0 {
		offset = 0
	}
	bc := b.c.NewBlobClient(name)
	if length == 0 {
		// A zero Count means "to the end" to the service: answer an empty
		// range ourselves, after checking the blob exists.
		if _, err := b.Stat(ctx, name); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	resp, err := bc.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: offset, Count: max(length, 0)}})
	if err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			// The range starts at or past the end of an existing blob.
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, mapErr(err)
	}
	return resp.Body, nil
}

// Stat reads the blob's properties.
func (b *Backend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := checkName(name); err != nil {
		return storage.ObjectInfo{}, err
	}
	p, err := b.c.NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		return storage.ObjectInfo{}, mapErr(err)
	}
	return storage.ObjectInfo{Name: name, Size: deref(p.ContentLength, 0), ModTime: deref(p.LastModified, time.Time{})}, nil
}

// Delete deletes the blob and its snapshots; a missing blob is not an error.
func (b *Backend) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := b.c.NewBlobClient(name).Delete(ctx, &blob.DeleteOptions{DeleteSnapshots: to.Ptr(blob.DeleteSnapshotsOptionTypeInclude)})
	if err != nil && !errors.Is(mapErr(err), storage.ErrNotFound) {
		return fmt.Errorf("delete %s in container %s: %w", name, b.name, mapErr(err))
	}
	return nil
}

// List lists blobs under prefix; the service returns them in name order.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	pager := b.c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: to.Ptr(prefix)})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list container %s: %w", b.name, mapErr(err))
		}
		for _, it := range page.Segment.BlobItems {
			oi := storage.ObjectInfo{Name: deref(it.Name, "")}
			if it.Properties != nil {
				oi.Size = deref(it.Properties.ContentLength, 0)
				oi.ModTime = deref(it.Properties.LastModified, time.Time{})
			}
			if err := fn(oi); err != nil {
				return err
			}
		}
	}
	return nil
}

func mapErr(err error) error {
	switch {
	case bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound, bloberror.ResourceNotFound):
		return fmt.Errorf("%w: %v", storage.ErrNotFound, err)
	case bloberror.HasCode(err, bloberror.InsufficientAccountPermissions, bloberror.AuthorizationFailure, bloberror.AuthenticationFailed):
		return err
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %v", storage.ErrNotFound, err)
	}
	return err
}

func deref[T any](p *T, zero T) T {
	if p == nil {
		return zero
	}
	return *p
}
