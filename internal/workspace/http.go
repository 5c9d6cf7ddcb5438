package workspace

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/fspath"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// importBodyLimit admits a 10 MB notebook in base64 inside JSON.
const importBodyLimit = MaxContent*4/3 + 1<<20

// Routes returns the Workspace API.
func (s *Service) Routes() []api.Route {
	r := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "workspace", Action: action, Handler: h}
	}
	routes := []api.Route{
		r("GET /api/2.0/workspace/list", "list", s.list),
		r("GET /api/2.0/workspace/get-status", "getStatus", s.getStatus),
		r("GET /api/2.0/workspace/export", "workspaceExport", s.export),
		r("POST /api/2.0/workspace/mkdirs", "mkdirs", s.mkdirsHandler),
		r("POST /api/2.0/workspace/delete", "delete", s.delete),
	}
	// Imports are notebook/importNotebook in Databricks' audit log, or
	// workspace/fileCreate once the handler knows it made a file.
	imp := api.Route{Pattern: "POST /api/2.0/workspace/import", Category: "notebook", Action: "importNotebook", Handler: s.importHandler,
		MaxBody: importBodyLimit, Drop: []string{"content"}}
	// The body is the file itself, read by the handler: were it buffered, a
	// JSON file's fields would be taken for request fields in the audit
	// record.
	file := r("POST /api/2.0/workspace-files/import-file/{path...}", "fileCreate", s.importFile)
	file.Stream = true
	return append(routes, imp, file)
}

type pathRequest struct {
	Path                   string `json:"path"`
	Recursive              bool   `json:"recursive"`
	NotebooksModifiedAfter int64  `json:"notebooks_modified_after"`
	Format                 string `json:"format"`
	DirectDownload         bool   `json:"direct_download"`
}

// readable reports whether p may see the object; listing the root and
// /Users needs no permission, but shows only what p can read, and /Users
// itself, which every home is in.
func (s *Service) readable(tx store.Tx, p principal.Principal, o Object) (bool, error) {
	if o.Path == "/Users" {
		return true, nil
	}
	err := s.check(tx, p, o, permissions.CanRead)
	var e *api.Error
	if errors.As(err, &e) && e.Code == api.PermissionDenied {
		return false, nil
	}
	return err == nil, err
}

func (s *Service) lookup(tx store.Tx, p principal.Principal, raw string, need permissions.Level) (Object, error) {
	np, err := fspath.Clean(raw)
	if err != nil {
		return Object{}, err
	}
	o, err := get(tx, np)
	if errors.Is(err, store.ErrNotFound) {
		return o, notFound(np)
	}
	if err != nil {
		return o, err
	}
	if np == "/" || np == "/Users" {
		return o, nil
	}
	return o, s.check(tx, p, o, need)
}

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	var out []ObjectInfo
	err := s.Store.View(ctx, func(tx store.Tx) error {
		o, err := s.lookup(tx, p, r.Path, permissions.CanRead)
		if err != nil {
			return err
		}
		if o.ObjectType != Directory {
			out = []ObjectInfo{o.info()}
			return nil
		}
		kids, err := children(tx, o.Path)
		if err != nil {
			return err
		}
		filter := o.Path == "/" || o.Path == "/Users"
		for _, k := range kids {
			if filter {
				if ok, err := s.readable(tx, p, k); err != nil {
					return err
				} else if !ok {
					continue
				}
			}
			if r.NotebooksModifiedAfter > 0 && k.ObjectType == Notebook && k.ModifiedAt <= r.NotebooksModifiedAfter {
				continue
			}
			out = append(out, k.info())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return map[string]any{}, nil
	}
	return map[string]any{"objects": out}, nil
}

func (s *Service) getStatus(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var out ObjectInfo
	err := s.Store.View(ctx, func(tx store.Tx) error {
		o, err := s.lookup(tx, principal.MustFrom(ctx), r.Path, permissions.CanRead)
		out = o.info()
		return err
	})
	return out, err
}

func (s *Service) mkdirsHandler(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	np, err := fspath.Clean(r.Path)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		_, err := s.mkdirs(tx, principal.MustFrom(ctx), np, tx.Now().UnixMilli())
		return err
	})
	return nil, err
}

func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	np, err := fspath.Clean(r.Path)
	if err != nil {
		return nil, err
	}
	if np == "/" || np == "/Users" || np == "/Shared" {
		return nil, api.InvalidParam("%s cannot be deleted.", np)
	}
	caller := principal.MustFrom(ctx)
	var blobs []string
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		blobs = nil
		o, err := get(tx, np)
		if errors.Is(err, store.ErrNotFound) {
			return notFound(np)
		}
		if err != nil {
			return err
		}
		switch o.ObjectType {
		case Notebook:
			req.SetAction("notebook", "deleteNotebook")
		case Directory:
			req.SetAction("notebook", "deleteFolder")
		default:
			req.SetAction("workspace", "fileDelete")
		}
		// Databricks' folder ACLs give "create, import and delete items" to
		// CAN_EDIT; a folder's grants reach everything below it, so one check
		// on the object covers a recursive delete.
		if err := s.check(tx, caller, o, permissions.CanEdit); err != nil {
			return err
		}
		// A user manages their home but may not remove it.
		if dir, _ := fspath.Split(np); dir == "/Users" && !caller.Admin {
			return api.Denied("%s is a home folder: only an admin can delete it.", np)
		}
		all, err := collect(tx, o)
		if err != nil {
			return err
		}
		if len(all) > 1 && !r.Recursive {
			return api.Errorf(api.DirectoryNotEmpty, "Folder (%s) is not empty; use recursive to delete it and its contents.", np)
		}
		for _, x := range all {
			if err := tx.Delete(kindObject, objectKey(x.Path)); err != nil {
				return err
			}
			if err := tx.Delete(kindID, idKey(x.ObjectID)); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err := permissions.Delete(tx, permType(x.ObjectType), strconv.FormatInt(x.ObjectID, 10)); err != nil {
				return err
			}
			if x.Blob.Name != "" {
				blobs = append(blobs, x.Blob.Name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		if err := s.Storage.Delete(ctx, b); err != nil {
			s.Log.Warn("delete contents", "path", np, "err", err)
		}
	}
	return nil, nil
}

type importRequest struct {
	Path      string `json:"path"`
	Content   string `json:"content"`
	Format    string `json:"format"`
	Language  string `json:"language"`
	Overwrite bool   `json:"overwrite"`
}

func (s *Service) importHandler(ctx context.Context, req *api.Request) (any, error) {
	var r importRequest
	var content []byte
	if mt, params, _ := mime.ParseMediaType(req.HTTP.Header.Get("Content-Type")); mt == "multipart/form-data" {
		var err error
		r, content, err = readMultipart(req.Body(), params["boundary"])
		if err != nil {
			return nil, err
		}
		req.SetAuditParam("path", r.Path)
		for k, v := range map[string]string{"format": r.Format, "language": r.Language} {
			if v != "" {
				req.SetAuditParam(k, v)
			}
		}
		if r.Overwrite {
			req.SetAuditParam("overwrite", "true")
		}
	} else {
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		var err error
		content, err = base64.StdEncoding.DecodeString(r.Content)
		if err != nil {
			return nil, api.Errorf(api.MalformedRequest, "content is not valid base64: %v", err)
		}
	}
	if len(content) > MaxContent {
		return nil, api.Errorf(api.MaxNotebookSizeExceeded, "The content is %d bytes; the limit is %d.", len(content), MaxContent)
	}
	np, err := fspath.Clean(r.Path)
	if err != nil {
		return nil, err
	}
	o, stored, err := decideImport(np, r.Format, r.Language, content)
	if err != nil {
		return nil, err
	}
	if o.ObjectType == File {
		req.SetAction("workspace", "fileCreate")
	}
	_, err = s.put(ctx, principal.MustFrom(ctx), o, stored, r.Overwrite)
	return nil, err
}

func readMultipart(body []byte, boundary string) (importRequest, []byte, error) {
	var r importRequest
	var content []byte
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return r, nil, api.Errorf(api.MalformedRequest, "Invalid multipart form: %v", err)
		}
		b, err := io.ReadAll(io.LimitReader(part, MaxContent+1))
		if err != nil {
			return r, nil, api.Errorf(api.MalformedRequest, "Invalid multipart form: %v", err)
		}
		switch part.FormName() {
		case "path":
			r.Path = string(b)
		case "format":
			r.Format = string(b)
		case "language":
			r.Language = string(b)
		case "overwrite":
			r.Overwrite, _ = strconv.ParseBool(string(b))
		case "content":
			content = b
		}
	}
	return r, content, nil
}

// decideImport decides what an import creates: the final path (a notebook
// imported from a .py or .ipynb file loses the extension), its type and
// language, and the bytes to store (notebooks in SOURCE form). It is pure.
func decideImport(p, format, language string, content []byte) (Object, []byte, error) {
	if language != "" && language != Python && language != SQL && language != Scala && language != R {
		return Object{}, nil, api.InvalidParam("Unknown language %q; use PYTHON, SQL, SCALA or R.", language)
	}
	dir, name := fspath.Split(p)
	ext := strings.ToLower(path.Ext(name))
	strip := func() string {
		base := strings.TrimSuffix(name, path.Ext(name))
		if base == "" {
			return p
		}
		if dir == "/" {
			return "/" + base
		}
		return dir + "/" + base
	}
	notebook := func(path, lang string, src []byte) (Object, []byte, error) {
		return Object{Path: path, ObjectType: Notebook, Language: lang}, src, nil
	}
	switch strings.ToUpper(format) {
	case "", "SOURCE":
		lang := language
		if lang == "" {
			lang = extOf[ext]
		}
		if lang == "" {
			lang = detectSource(content)
		}
		if lang == "" {
			return Object{}, nil, api.InvalidParam("The language is required to import %s in SOURCE format.", p)
		}
		return notebook(p, lang, ToSource(content, lang))
	case "JUPYTER":
		cells, lang, err := ParseJupyter(content)
		if err != nil {
			return Object{}, nil, api.Errorf(api.MalformedRequest, "Could not import %s: %v.", p, err)
		}
		if language != "" {
			lang = language
		}
		target := p
		if ext == ".ipynb" {
			target = strip()
		}
		return notebook(target, lang, RenderSource(cells, lang))
	case "AUTO":
		if ext == ".ipynb" {
			return decideImport(p, "JUPYTER", language, content)
		}
		// A notebook needs a notebook extension and that language's header:
		// a plain .py module, or a text that merely starts with a header
		// line, is a file.
		if lang := extOf[ext]; lang != "" && hasHeader(content, lang) {
			return notebook(strip(), lang, ToSource(content, lang))
		}
		return Object{Path: p, ObjectType: File}, content, nil
	case "RAW":
		return Object{Path: p, ObjectType: File}, content, nil
	case "HTML", "DBC", "R_MARKDOWN":
		return Object{}, nil, api.InvalidParam("Import format %s is not supported by Tandem; use SOURCE, JUPYTER, AUTO or RAW.", format)
	}
	return Object{}, nil, api.InvalidParam("Unknown import format %q; use SOURCE, JUPYTER, AUTO or RAW.", format)
}

func (s *Service) importFile(ctx context.Context, req *api.Request) (any, error) {
	raw := "/" + req.HTTP.PathValue("path")
	np, err := fspath.Clean(raw)
	if err != nil {
		return nil, err
	}
	req.SetAuditParam("path", np)
	content, err := io.ReadAll(io.LimitReader(req.HTTP.Body, MaxContent+1))
	if err != nil {
		return nil, api.Errorf(api.MalformedRequest, "Could not read the request body: %v", err)
	}
	if len(content) > MaxContent {
		return nil, api.Errorf(api.MaxNotebookSizeExceeded, "The content is larger than the %d-byte limit.", MaxContent)
	}
	overwrite, _ := strconv.ParseBool(req.HTTP.URL.Query().Get("overwrite"))
	o, stored, err := decideImport(np, "AUTO", "", content)
	if err != nil {
		return nil, err
	}
	if o.ObjectType == Notebook {
		req.SetAction("notebook", "importNotebook")
	}
	_, err = s.put(ctx, principal.MustFrom(ctx), o, stored, overwrite)
	var e *api.Error
	if errors.As(err, &e) && e.Code == api.ResourceAlreadyExists && !s.isNotebook(ctx, o.Path) {
		// This endpoint answers 409 for an existing file, and 400 with
		// "Path (...) already exists." for a notebook: the CLI's filer
		// recognises both.
		return nil, e.WithStatus(http.StatusConflict)
	}
	return nil, err
}

// isNotebook reports whether a notebook is at p.
func (s *Service) isNotebook(ctx context.Context, p string) bool {
	var o Object
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		o, err = get(tx, p)
		return err
	})
	return err == nil && o.ObjectType == Notebook
}

// exportAs decides how an object is exported, before its contents are
// read: a notebook as SOURCE (also for AUTO) or JUPYTER text, a file as RAW
// bytes (also for SOURCE and AUTO). It is pure.
func exportAs(o Object, format string) (string, error) {
	f := strings.ToUpper(format)
	switch f {
	case "", "SOURCE", "AUTO", "JUPYTER", "RAW":
	case "HTML", "DBC", "R_MARKDOWN":
		return "", api.InvalidParam("Export format %s is not supported by Tandem; use SOURCE, JUPYTER, AUTO or RAW.", f)
	default:
		return "", api.InvalidParam("Unknown export format %q; use SOURCE, JUPYTER, AUTO or RAW.", format)
	}
	switch o.ObjectType {
	case Directory:
		return "", api.InvalidParam("%s is a folder; Tandem exports folders object by object (DBC archives are not supported).", o.Path)
	case Notebook:
		switch f {
		case "JUPYTER":
			return "JUPYTER", nil
		case "RAW":
			return "", api.InvalidParam("%s is a notebook: export it as SOURCE, JUPYTER or AUTO (RAW is for files).", o.Path)
		}
		return "SOURCE", nil
	}
	if f == "JUPYTER" {
		return "", api.InvalidParam("%s is a file, not a notebook: export it with format SOURCE, AUTO or RAW.", o.Path)
	}
	return "RAW", nil
}

func (s *Service) export(ctx context.Context, req *api.Request) (any, error) {
	var r pathRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var o Object
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		o, err = s.lookup(tx, principal.MustFrom(ctx), r.Path, permissions.CanRead)
		return err
	})
	if err != nil {
		return nil, err
	}
	format, err := exportAs(o, r.Format)
	if err != nil {
		return nil, err
	}
	b, err := s.content(ctx, o)
	if err != nil {
		return nil, err
	}
	fileType := strings.TrimPrefix(path.Ext(o.Path), ".")
	switch format {
	case "SOURCE":
		fileType = Extension(o.Language)
	case "JUPYTER":
		_, name := fspath.Split(o.Path)
		if b, err = RenderJupyter(ParseSource(b, o.Language), o.Language, name); err != nil {
			return nil, err
		}
		fileType = "ipynb"
	}
	if r.DirectDownload {
		return &api.Raw{ContentType: "application/octet-stream", Body: b}, nil
	}
	return map[string]string{"content": base64.StdEncoding.EncodeToString(b), "file_type": fileType}, nil
}
