// Package workspace is the Workspace API: a tree of folders, notebooks and
// files with stable object ids, import and export in Databricks' SOURCE and
// Jupyter formats, home folders, and permissions inherited down the tree.
// Metadata lives in the store; contents are immutable blobs in the region's
// storage account, written before the metadata that names them.
package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/fspath"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// Store kinds owned by this package.
const (
	// kindObject is keyed by childPrefix(parent) + name: a folder's
	// children are one prefix scan.
	kindObject = "workspace.object"
	// kindID maps an object id (20 digits) to its path.
	kindID = "workspace.id"
)

const sepKey = "\x1f" // unit separator: control characters are refused in names

// Object types.
const (
	Directory = "DIRECTORY"
	Notebook  = "NOTEBOOK"
	File      = "FILE"
)

// MaxContent bounds an imported object's contents (MAX_NOTEBOOK_SIZE_EXCEEDED).
const MaxContent = 10 << 20

// blobPrefix is where contents live in the storage account.
const blobPrefix = "workspace/"

// Object is a stored workspace object.
type Object struct {
	ObjectID   int64        `json:"object_id"`
	Path       string       `json:"path"`
	ObjectType string       `json:"object_type"`
	Language   string       `json:"language,omitempty"`
	CreatedAt  int64        `json:"created_at"`
	ModifiedAt int64        `json:"modified_at"`
	Blob       storage.Blob `json:"blob,omitempty"`
}

// ObjectInfo is the API's view of an object.
type ObjectInfo struct {
	ObjectType string `json:"object_type"`
	Path       string `json:"path"`
	ObjectID   int64  `json:"object_id"`
	ResourceID string `json:"resource_id"`
	Language   string `json:"language,omitempty"`
	CreatedAt  int64  `json:"created_at,omitempty"`
	ModifiedAt int64  `json:"modified_at,omitempty"`
	Size       *int64 `json:"size,omitempty"`
}

func (o Object) info() ObjectInfo {
	oi := ObjectInfo{ObjectType: o.ObjectType, Path: o.Path, ObjectID: o.ObjectID, ResourceID: strconv.FormatInt(o.ObjectID, 10),
		Language: o.Language, CreatedAt: o.CreatedAt, ModifiedAt: o.ModifiedAt}
	if o.ObjectType == File {
		size := o.Blob.Size
		oi.Size = &size
	}
	return oi
}

// childPrefix is the key prefix of a folder's direct children. The root's
// is the separator alone, so that a key is exactly as long as its path and
// every path fspath.Clean accepts fits the store's key limit.
func childPrefix(dir string) string {
	if dir == "/" {
		return sepKey
	}
	return dir + sepKey
}

// objectKey is the store key of the object at a clean path other than "/".
func objectKey(p string) string {
	dir, name := fspath.Split(p)
	return childPrefix(dir) + name
}

func idKey(id int64) string { return fmt.Sprintf("%020d", id) }

// root is the workspace root folder; it is not stored.
var root = Object{ObjectID: 0, Path: "/", ObjectType: Directory}

// Service is the workspace of a region.
type Service struct {
	Store   store.Store
	Perms   *permissions.Service
	Storage storage.Backend
	Log     *slog.Logger
	// Now is the sweeper's clock (tests replace it); time.Now if nil.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// permission type names per object type.
func permType(objectType string) string {
	switch objectType {
	case Notebook:
		return "notebooks"
	case File:
		return "files"
	}
	return "directories"
}

// Init registers the workspace object types with permissions.
func (s *Service) Init() {
	for _, t := range []struct{ name, wire, objectType string }{
		{"directories", "directory", Directory}, {"notebooks", "notebook", Notebook}, {"files", "file", File},
	} {
		objectType := t.objectType
		s.Perms.Register(permissions.ObjectType{
			Name: t.name, Wire: t.wire, Levels: permissions.WorkspaceLevels,
			Category: "workspace", Action: "changeWorkspaceAcl",
			Resolve: func(tx store.Tx, id string) (permissions.Object, error) {
				n, err := strconv.ParseInt(id, 10, 64)
				if err != nil {
					return permissions.Object{}, store.ErrNotFound
				}
				o, err := byID(tx, n)
				if err != nil {
					return permissions.Object{}, err
				}
				// The id must name an object of the URL's type.
				if o.ObjectType != objectType {
					return permissions.Object{}, store.ErrNotFound
				}
				return resolve(tx, o)
			},
		})
	}
}

// resolve returns an object's permission identity and its folders, nearest
// first, up to the root.
func resolve(tx store.Tx, o Object) (permissions.Object, error) {
	out := permissions.Object{Ref: permissions.Ref{Type: permType(o.ObjectType), ID: strconv.FormatInt(o.ObjectID, 10)}, Display: o.Path}
	for _, a := range fspath.Ancestors(o.Path) {
		d, err := get(tx, a)
		if err != nil {
			return out, err
		}
		out.Parents = append(out.Parents, permissions.Ref{Type: "directories", ID: strconv.FormatInt(d.ObjectID, 10)})
	}
	if o.Path == "/" {
		out.Parents = nil
	}
	return out, nil
}

func get(tx store.Tx, p string) (Object, error) {
	if p == "/" {
		return root, nil
	}
	return store.Get[Object](tx, kindObject, objectKey(p))
}

func byID(tx store.Tx, id int64) (Object, error) {
	if id == 0 {
		return root, nil
	}
	p, err := store.Get[string](tx, kindID, idKey(id))
	if err != nil {
		return Object{}, err
	}
	return get(tx, p)
}

func notFound(p string) error { return api.NotFound("Path (%s) doesn't exist.", p) }

// alreadyExists is RESOURCE_ALREADY_EXISTS as the Workspace API answers it:
// with 400, not the generic 409 (the CLI matches 400 and the message).
func alreadyExists(format string, args ...any) error {
	return api.Errorf(api.ResourceAlreadyExists, format, args...).WithStatus(http.StatusBadRequest)
}

// check checks p holds need on the object at path o.
func (s *Service) check(tx store.Tx, p principal.Principal, o Object, need permissions.Level) error {
	return s.Perms.Check(tx, p, permType(o.ObjectType), strconv.FormatInt(o.ObjectID, 10), need)
}

// children lists a folder's direct children.
func children(tx store.Tx, dir string) ([]Object, error) {
	return store.List[Object](tx, kindObject, childPrefix(dir))
}

// mkdirs creates a folder and any missing parents; a file or notebook in
// the way is RESOURCE_ALREADY_EXISTS. It returns the folder.
func (s *Service) mkdirs(tx store.Tx, p principal.Principal, dir string, now int64) (Object, error) {
	if dir == "/" {
		return root, nil
	}
	o, err := get(tx, dir)
	if err == nil {
		if o.ObjectType != Directory {
			return o, alreadyExists("Path (%s) already exists and is not a directory.", dir)
		}
		return o, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return o, err
	}
	parentPath, _ := fspath.Split(dir)
	parent, err := s.mkdirs(tx, p, parentPath, now)
	if err != nil {
		return parent, err
	}
	if err := s.check(tx, p, parent, permissions.CanEdit); err != nil {
		return parent, err
	}
	return s.create(tx, p, Object{Path: dir, ObjectType: Directory}, now)
}

// create stores a new object with a fresh id; its creator gets CAN_MANAGE,
// as in Databricks.
func (s *Service) create(tx store.Tx, p principal.Principal, o Object, now int64) (Object, error) {
	n, err := tx.NextID("workspace.object")
	if err != nil {
		return o, err
	}
	o.ObjectID = 1_000_000 + n
	o.CreatedAt, o.ModifiedAt = now, now
	if err := store.Put(tx, kindObject, objectKey(o.Path), o); err != nil {
		return o, err
	}
	if err := store.Put(tx, kindID, idKey(o.ObjectID), o.Path); err != nil {
		return o, err
	}
	if !p.IsZero() && !p.Admin && p.Kind != principal.System {
		g := permissions.Grant{UserName: p.Name, Level: permissions.CanManage}
		if p.Kind == principal.ServicePrincipal {
			g = permissions.Grant{ServicePrincipalName: p.Name, Level: permissions.CanManage}
		}
		if err := permissions.Add(tx, permType(o.ObjectType), strconv.FormatInt(o.ObjectID, 10), g); err != nil {
			return o, err
		}
	}
	return o, nil
}

// EnsureLayout creates /Users and /Shared (every user may manage /Shared)
// and the home folder of every user named.
func (s *Service) EnsureLayout(ctx context.Context, users []string) error {
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		for _, u := range users {
			if err := s.EnsureHome(tx, u); err != nil {
				return err
			}
		}
		now := tx.Now().UnixMilli()
		for _, d := range []string{"/Users", "/Shared"} {
			if _, err := get(tx, d); err == nil {
				continue
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			o, err := s.create(tx, principal.SystemPrincipal, Object{Path: d, ObjectType: Directory}, now)
			if err != nil {
				return err
			}
			if d == "/Shared" {
				if err := permissions.Add(tx, "directories", strconv.FormatInt(o.ObjectID, 10),
					permissions.Grant{GroupName: principal.UsersGroup, Level: permissions.CanManage}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return err
}

// EnsureHome makes /Users/<userName> with CAN_MANAGE for its user. It runs in
// the transaction that creates the user.
func (s *Service) EnsureHome(tx store.Tx, userName string) error {
	p := "/Users/" + userName
	if _, err := fspath.Clean(p); err != nil {
		return err
	}
	if _, err := get(tx, p); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := tx.Now().UnixMilli()
	if _, err := get(tx, "/Users"); errors.Is(err, store.ErrNotFound) {
		if _, err := s.create(tx, principal.SystemPrincipal, Object{Path: "/Users", ObjectType: Directory}, now); err != nil {
			return err
		}
	}
	o, err := s.create(tx, principal.SystemPrincipal, Object{Path: p, ObjectType: Directory}, now)
	if err != nil {
		return err
	}
	return permissions.Add(tx, "directories", strconv.FormatInt(o.ObjectID, 10), permissions.Grant{UserName: userName, Level: permissions.CanManage})
}

// content reads an object's bytes from the storage account.
func (s *Service) content(ctx context.Context, o Object) ([]byte, error) {
	if o.Blob.Name == "" {
		return nil, nil
	}
	r, err := s.Storage.Get(ctx, o.Blob.Name, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("read contents of %s: %w", o.Path, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, MaxContent+1))
	if err != nil {
		return nil, fmt.Errorf("read contents of %s: %w", o.Path, err)
	}
	return b, nil
}

// ReadFile returns the contents of a notebook (SOURCE format) or file, for
// other services (compute's init scripts, jobs' tasks), checking that p may
// read it.
func (s *Service) ReadFile(ctx context.Context, p principal.Principal, path string) (Object, []byte, error) {
	np, err := fspath.Clean(path)
	if err != nil {
		return Object{}, nil, err
	}
	var o Object
	err = s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		o, err = get(tx, np)
		if errors.Is(err, store.ErrNotFound) {
			return notFound(np)
		}
		if err != nil {
			return err
		}
		if o.ObjectType == Directory {
			return api.InvalidParam("%s is a directory.", np)
		}
		return s.check(tx, p, o, permissions.CanRead)
	})
	if err != nil {
		return o, nil, err
	}
	b, err := s.content(ctx, o)
	return o, b, err
}

// put publishes content for a new or replaced object at path: the blob is
// written first, then one transaction creates or replaces the metadata; the
// replaced blob is deleted after the commit. A crash leaves at most an
// unreferenced blob, which the sweeper removes.
func (s *Service) put(ctx context.Context, p principal.Principal, o Object, content []byte, overwrite bool) (Object, error) {
	// Refuse what the transaction would refuse before writing any contents:
	// a caller without the permission cannot make the region store 10 MB.
	err := s.Store.View(ctx, func(tx store.Tx) error {
		_, err := s.admit(tx, p, o.Path, overwrite)
		return err
	})
	if err != nil {
		return o, err
	}
	blob, err := storage.PutBlob(ctx, s.Storage, blobPrefix, bytes.NewReader(content))
	if err != nil {
		return o, fmt.Errorf("store contents of %s: %w", o.Path, err)
	}
	var out Object
	var old storage.Blob
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		now := tx.Now().UnixMilli()
		old = storage.Blob{}
		existing, err := s.admit(tx, p, o.Path, overwrite)
		if err != nil {
			return err
		}
		if existing != nil {
			out = *existing
			old = out.Blob
			out.ObjectType, out.Language, out.Blob, out.ModifiedAt = o.ObjectType, o.Language, blob, now
			if err := moveACL(tx, *existing, out); err != nil {
				return err
			}
			return store.Put(tx, kindObject, objectKey(o.Path), out)
		}
		n := o
		n.Blob = blob
		out, err = s.create(tx, p, n, now)
		return err
	})
	if err != nil {
		// A refusal (an API error from the transaction) committed nothing,
		// so the new contents can go. Any other error may have come after
		// the commit (a connection lost while committing): the blob may be
		// referenced, and the sweeper decides from the metadata.
		var refused *api.Error
		if errors.As(err, &refused) {
			s.Storage.Delete(context.WithoutCancel(ctx), blob.Name)
		}
		return o, err
	}
	if old.Name != "" {
		if err := s.Storage.Delete(ctx, old.Name); err != nil {
			s.Log.Warn("delete replaced contents", "path", o.Path, "err", err)
		}
	}
	return out, nil
}

// moveACL moves an object's grants when it changes type (a notebook
// overwritten by a file keeps its id): ACLs are keyed by permission type.
func moveACL(tx store.Tx, from, to Object) error {
	ft, tt := permType(from.ObjectType), permType(to.ObjectType)
	if ft == tt {
		return nil
	}
	id := strconv.FormatInt(from.ObjectID, 10)
	grants, err := permissions.Grants(tx, ft, id)
	if err != nil || len(grants) == 0 {
		return err
	}
	if err := permissions.Set(tx, tt, id, grants...); err != nil {
		return err
	}
	return permissions.Delete(tx, ft, id)
}

// admit checks that p may put an object at path: its parent folder exists
// and p holds CAN_EDIT on it, or, with overwrite, on the file or notebook
// it replaces, which it returns.
func (s *Service) admit(tx store.Tx, p principal.Principal, path string, overwrite bool) (*Object, error) {
	dir, _ := fspath.Split(path)
	parent, err := get(tx, dir)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.NotFound("The parent folder (%s) does not exist.", dir)
	}
	if err != nil {
		return nil, err
	}
	if parent.ObjectType != Directory {
		return nil, api.InvalidParam("The parent (%s) is not a folder.", dir)
	}
	existing, err := get(tx, path)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, s.check(tx, p, parent, permissions.CanEdit)
	case err != nil:
		return nil, err
	case !overwrite:
		return nil, alreadyExists("Path (%s) already exists.", path)
	case existing.ObjectType == Directory:
		return nil, alreadyExists("Path (%s) already exists and is a directory.", path)
	}
	return &existing, s.check(tx, p, existing, permissions.CanEdit)
}

// Run sweeps contents that no object references (left by a crash between
// writing a blob and committing its metadata), until ctx ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.Log.Error("sweep workspace contents", "err", err)
		} else if n > 0 {
			s.Log.Info("removed unreferenced workspace contents", "blobs", n)
		}
	}
}

// sweepGrace spares recent blobs: one may be written and not yet committed.
const sweepGrace = time.Hour

// Sweep deletes the contents no object references that are older than an
// hour, and returns how many it deleted.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	live := map[string]bool{}
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindObject, "", func(_ string, o Object) error {
			if o.Blob.Name != "" {
				live[o.Blob.Name] = true
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	return storage.Sweep(ctx, s.Storage, blobPrefix, sweepGrace, s.now(), func(name string) (bool, error) { return live[name], nil })
}

// collect returns an object and everything under it, parents before children.
func collect(tx store.Tx, o Object) ([]Object, error) {
	out := []Object{o}
	if o.ObjectType != Directory {
		return out, nil
	}
	kids, err := children(tx, o.Path)
	if err != nil {
		return nil, err
	}
	for _, k := range kids {
		sub, err := collect(tx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}
