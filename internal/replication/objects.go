package replication

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/storage"
)

// The storage account's geo-replication writes its secondary copy into the
// peer region through these peer-only endpoints: RemoteBackend is that
// secondary, a storage.Backend whose objects live in the peer region's
// Service.Objects. Objects cross as the geo layer hands them over (already
// encrypted by the account's layers above it) inside the mutual-TLS link.
const ObjectsPath = "/api/2.0/tandem/replication/objects"

// HeaderAccountKey carries the id (not the material) of the sender's
// account key with each write: a region takes objects only sealed under its
// own account key, and only while it does not lead.
const HeaderAccountKey = "X-Tandem-Account-Key"

// maxRange bounds one read of an object over the link; RemoteBackend reads
// larger objects range by range.
const maxRange = 16 << 20

// ObjectInfo is an object's description on the wire.
type objectInfo struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mod_time"` // epoch ms
}

type objectList struct {
	Objects []objectInfo `json:"objects"`
	// Next is the name to list after for the next page ("" at the end).
	Next string `json:"next,omitempty"`
}

func (s *Service) objectRoutes() []api.Route {
	r := func(pattern string, h api.Handler, stream bool) api.Route {
		return api.Route{Pattern: pattern, Public: true, NoAudit: true, DR: true, Stream: stream, Handler: h}
	}
	return []api.Route{
		r("PUT "+ObjectsPath, s.putObject, true),
		r("GET "+ObjectsPath, s.getObject, false),
		r("DELETE "+ObjectsPath, s.deleteObject, false),
		r("GET "+ObjectsPath+"/stat", s.statObject, false),
		r("GET "+ObjectsPath+"/list", s.listObjects, false),
	}
}

func (s *Service) objects(req *api.Request) (storage.Backend, string, error) {
	if err := s.authenticate(req, -1); err != nil {
		return nil, "", err
	}
	if s.Objects == nil {
		return nil, "", api.Errorf(api.FeatureDisabled, "This region keeps no geo-replicated storage for its peer.")
	}
	return s.Objects, req.HTTP.URL.Query().Get("name"), nil
}

// receiving checks a write of the peer's geo-replication: a region that
// leads takes none (its account is the workspace's), and objects sealed
// under another account key would be unreadable here.
func (s *Service) receiving(req *api.Request) error {
	if s.Self != nil {
		if self := s.Self(); self.Role == "active" || self.Role == "draining" {
			return api.Errorf(api.InvalidState, "Region %s leads: its storage account takes no objects from its peer.", self.Region)
		}
	}
	if s.ObjectsKey == nil {
		return nil
	}
	theirs, mine := req.HTTP.Header.Get(HeaderAccountKey), s.ObjectsKey()
	if theirs != "" && mine != "" && theirs != mine {
		return api.Errorf(api.InvalidState, "This region's storage account has its own account key (%s), not the sender's (%s): it cannot read what would be shipped. Pair a new, empty secondary instead.", mine, theirs)
	}
	return nil
}

// objectError maps a backend error to the wire.
func objectError(name string, err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return api.NotFound("Object %q does not exist.", name)
	case errors.Is(err, storage.ErrNoSpace):
		return err // the API's table answers 507
	}
	return err
}

func (s *Service) putObject(ctx context.Context, req *api.Request) (any, error) {
	b, name, err := s.objects(req)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, api.MissingField("name")
	}
	if err := s.receiving(req); err != nil {
		return nil, err
	}
	if err := b.Put(ctx, name, req.HTTP.Body); err != nil {
		return nil, objectError(name, err)
	}
	return nil, nil
}

func (s *Service) getObject(ctx context.Context, req *api.Request) (any, error) {
	b, name, err := s.objects(req)
	if err != nil {
		return nil, err
	}
	q := req.HTTP.URL.Query()
	offset, _ := strconv.ParseInt(q.Get("offset"), 10, 64)
	length := int64(maxRange)
	if v := q.Get("length"); v != "" {
		if length, err = strconv.ParseInt(v, 10, 64); err != nil || length < 0 || length > maxRange {
			return nil, api.InvalidParam("length must be between 0 and %d.", maxRange)
		}
	}
	rc, err := b.Get(ctx, name, offset, length)
	if err != nil {
		return nil, objectError(name, err)
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxRange))
	if err != nil {
		return nil, err
	}
	return &api.Raw{ContentType: "application/octet-stream", Body: body}, nil
}

func (s *Service) deleteObject(ctx context.Context, req *api.Request) (any, error) {
	b, name, err := s.objects(req)
	if err != nil {
		return nil, err
	}
	if err := s.receiving(req); err != nil {
		return nil, err
	}
	return nil, objectError(name, b.Delete(ctx, name))
}

func (s *Service) statObject(ctx context.Context, req *api.Request) (any, error) {
	b, name, err := s.objects(req)
	if err != nil {
		return nil, err
	}
	oi, err := b.Stat(ctx, name)
	if err != nil {
		return nil, objectError(name, err)
	}
	return objectInfo{Name: oi.Name, Size: oi.Size, ModTime: oi.ModTime.UnixMilli()}, nil
}

func (s *Service) listObjects(ctx context.Context, req *api.Request) (any, error) {
	b, _, err := s.objects(req)
	if err != nil {
		return nil, err
	}
	q := req.HTTP.URL.Query()
	prefix, after := q.Get("prefix"), q.Get("after")
	const page = 1000
	out := objectList{Objects: []objectInfo{}}
	err = b.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		if oi.Name <= after {
			return nil
		}
		if len(out.Objects) == page {
			out.Next = out.Objects[page-1].Name
			return errStopList
		}
		out.Objects = append(out.Objects, objectInfo{Name: oi.Name, Size: oi.Size, ModTime: oi.ModTime.UnixMilli()})
		return nil
	})
	if err != nil && !errors.Is(err, errStopList) {
		return nil, err
	}
	return out, nil
}

var errStopList = errors.New("page full")

// RemoteBackend is a storage.Backend whose objects are kept by the peer
// region: the secondary of the storage account's geo-replication.
type RemoteBackend struct {
	peer *Peer
	// AccountKey, if set, names the sender's account key on each call.
	AccountKey func() string
}

var _ storage.Backend = (*RemoteBackend)(nil)

// NewRemoteBackend returns the peer region's geo-replicated storage.
func NewRemoteBackend(p *Peer) *RemoteBackend { return &RemoteBackend{peer: p} }

func (b *RemoteBackend) do(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	client, err := b.peer.Client()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, b.peer.URL+path+"?"+q.Encode(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if b.AccountKey != nil {
		req.Header.Set(HeaderAccountKey, b.AccountKey())
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e errorBody
		json.Unmarshal(raw, &e)
		switch {
		case resp.StatusCode == http.StatusNotFound && e.ErrorCode == api.ResourceDoesNotExist:
			return nil, fmt.Errorf("peer %s: %w", q.Get("name"), storage.ErrNotFound)
		case resp.StatusCode == http.StatusInsufficientStorage:
			return nil, fmt.Errorf("peer: %w", storage.ErrNoSpace)
		}
		return nil, &PeerError{Status: resp.StatusCode, Code: e.ErrorCode, Message: e.Message}
	}
	return resp, nil
}

// Put sends the object to the peer, streaming it.
func (b *RemoteBackend) Put(ctx context.Context, name string, r io.Reader) error {
	resp, err := b.do(ctx, http.MethodPut, ObjectsPath, url.Values{"name": {name}}, r)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Get reads length bytes from offset (length < 0: to the end), a range of
// at most 16 MiB per call to the peer.
func (b *RemoteBackend) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	first, err := b.getRange(ctx, name, offset, length)
	if err != nil {
		return nil, err
	}
	return &rangeReader{b: b, ctx: ctx, name: name, cur: bytes.NewReader(first), next: offset + int64(len(first)),
		left: length - int64(len(first)), more: int64(len(first)) == chunk(length)}, nil
}

func chunk(length int64) int64 {
	if length < 0 || length > maxRange {
		return maxRange
	}
	return length
}

func (b *RemoteBackend) getRange(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	q := url.Values{"name": {name}, "offset": {strconv.FormatInt(offset, 10)}, "length": {strconv.FormatInt(chunk(length), 10)}}
	resp, err := b.do(ctx, http.MethodGet, ObjectsPath, q, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// rangeReader reads an object range by range.
type rangeReader struct {
	b    *RemoteBackend
	ctx  context.Context
	name string
	cur  *bytes.Reader
	next int64
	left int64 // < 0: to the end
	more bool
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for {
		if n, _ := r.cur.Read(p); n > 0 {
			return n, nil
		}
		if !r.more || r.left == 0 {
			return 0, io.EOF
		}
		want := r.left
		buf, err := r.b.getRange(r.ctx, r.name, r.next, want)
		if err != nil {
			return 0, err
		}
		r.cur = bytes.NewReader(buf)
		r.more = int64(len(buf)) == chunk(want)
		r.next += int64(len(buf))
		if r.left > 0 {
			r.left -= int64(len(buf))
		}
		if len(buf) == 0 {
			return 0, io.EOF
		}
	}
}

func (r *rangeReader) Close() error { return nil }

// Stat describes one object kept by the peer.
func (b *RemoteBackend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	resp, err := b.do(ctx, http.MethodGet, ObjectsPath+"/stat", url.Values{"name": {name}}, nil)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	defer resp.Body.Close()
	var oi objectInfo
	if err := json.NewDecoder(resp.Body).Decode(&oi); err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Name: oi.Name, Size: oi.Size, ModTime: time.UnixMilli(oi.ModTime)}, nil
}

// Delete removes an object from the peer; a missing one is not an error.
func (b *RemoteBackend) Delete(ctx context.Context, name string) error {
	resp, err := b.do(ctx, http.MethodDelete, ObjectsPath, url.Values{"name": {name}}, nil)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// List calls fn for each object kept by the peer whose name starts with
// prefix, in name order, a page at a time.
func (b *RemoteBackend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	after := ""
	for {
		resp, err := b.do(ctx, http.MethodGet, ObjectsPath+"/list", url.Values{"prefix": {prefix}, "after": {after}}, nil)
		if err != nil {
			return err
		}
		var page objectList
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return err
		}
		for _, oi := range page.Objects {
			if err := fn(storage.ObjectInfo{Name: oi.Name, Size: oi.Size, ModTime: time.UnixMilli(oi.ModTime)}); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		after = page.Next
	}
}
