package workspace_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/workspace"

	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

var ctx = context.Background()

func TestImportExportListDeleteThroughTheSDK(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	if err := w.Workspace.MkdirsByPath(ctx, "/Shared/etl/daily"); err != nil {
		t.Fatal(err)
	}
	src := "# Databricks notebook source\nprint('hello')\n\n# COMMAND ----------\n\n# MAGIC %md\n# MAGIC # Notes"
	err := w.Workspace.Import(ctx, workspace.Import{Path: "/Shared/etl/daily/nb", Format: workspace.ImportFormatSource,
		Language: workspace.LanguagePython, Content: base64.StdEncoding.EncodeToString([]byte(src))})
	if err != nil {
		t.Fatal(err)
	}
	st, err := w.Workspace.GetStatusByPath(ctx, "/Shared/etl/daily/nb")
	if err != nil {
		t.Fatal(err)
	}
	if st.ObjectType != workspace.ObjectTypeNotebook || st.Language != workspace.LanguagePython || st.ObjectId == 0 {
		t.Errorf("status = %+v", st)
	}
	exp, err := w.Workspace.Export(ctx, workspace.ExportRequest{Path: "/Shared/etl/daily/nb", Format: workspace.ExportFormatSource})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := base64.StdEncoding.DecodeString(exp.Content); string(b) != src || exp.FileType != "py" {
		t.Errorf("export = %q (%s)", b, exp.FileType)
	}
	// JUPYTER out and back in keeps the cells.
	jup, err := w.Workspace.Export(ctx, workspace.ExportRequest{Path: "/Shared/etl/daily/nb", Format: workspace.ExportFormatJupyter})
	if err != nil || jup.FileType != "ipynb" {
		t.Fatalf("jupyter export: %+v %v", jup, err)
	}
	err = w.Workspace.Import(ctx, workspace.Import{Path: "/Shared/etl/daily/copy.ipynb", Format: workspace.ImportFormatJupyter, Content: jup.Content})
	if err != nil {
		t.Fatal(err)
	}
	back, _ := w.Workspace.Export(ctx, workspace.ExportRequest{Path: "/Shared/etl/daily/copy"})
	if b, _ := base64.StdEncoding.DecodeString(back.Content); string(b) != src {
		t.Errorf("SOURCE -> JUPYTER -> SOURCE = %q", b)
	}
	// Multipart upload and direct download, as WriteFile/ReadFile do.
	if err := w.Workspace.WriteFile(ctx, "/Shared/etl/data.csv", []byte("a,b\n1,2\n")); err != nil {
		t.Fatal(err)
	}
	got, err := w.Workspace.ReadFile(ctx, "/Shared/etl/data.csv")
	if err != nil || string(got) != "a,b\n1,2\n" {
		t.Errorf("ReadFile = %q, %v", got, err)
	}
	if err := w.Workspace.Upload(ctx, "/Shared/etl/up.py", strings.NewReader("print(2)")); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Workspace.GetStatusByPath(ctx, "/Shared/etl/up.py"); err != nil || st.ObjectType != workspace.ObjectTypeNotebook {
		t.Errorf("Upload of a .py in SOURCE: %+v %v", st, err)
	}
	// Databricks' own SDK tests: a notebook uploaded as "print(1)" downloads
	// with the header and nothing after its last line; a file is verbatim.
	rc, err := w.Workspace.Download(ctx, "/Shared/etl/up.py")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(rc); string(b) != "# Databricks notebook source\nprint(2)" {
		t.Errorf("Download of an uploaded notebook = %q", b)
	}
	err = w.Workspace.Upload(ctx, "/Shared/etl/mod.py", strings.NewReader("print(3)"), workspace.UploadFormat(workspace.ImportFormatAuto))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := w.Workspace.GetStatusByPath(ctx, "/Shared/etl/mod.py"); err != nil || st.ObjectType != workspace.ObjectTypeFile || st.Size != 8 {
		t.Errorf("AUTO upload of a .py without the header: %+v %v", st, err)
	}
	rc, err = w.Workspace.Download(ctx, "/Shared/etl/mod.py", workspace.DownloadFormat(workspace.ExportFormatAuto))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(rc); string(b) != "print(3)" {
		t.Errorf("Download of a file = %q", b)
	}
	all, err := w.Workspace.RecursiveList(ctx, "/Shared")
	if err != nil || len(all) != 5 {
		t.Errorf("RecursiveList = %d objects, %v", len(all), err)
	}
	// Importing over an existing object needs overwrite.
	err = w.Workspace.Import(ctx, workspace.Import{Path: "/Shared/etl/daily/nb", Language: workspace.LanguagePython, Content: "cHJpbnQoMyk="})
	if !errors.Is(err, apierr.ErrResourceAlreadyExists) {
		t.Errorf("import over an existing notebook: %v", err)
	}
	err = w.Workspace.Delete(ctx, workspace.Delete{Path: "/Shared/etl"})
	var ae *apierr.APIError
	if !errors.As(err, &ae) || ae.ErrorCode != "DIRECTORY_NOT_EMPTY" || ae.StatusCode != 400 {
		t.Errorf("non-recursive delete of a folder: %v", err)
	}
	if err := w.Workspace.Delete(ctx, workspace.Delete{Path: "/Shared/etl", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	_, err = w.Workspace.GetStatusByPath(ctx, "/Shared/etl/daily/nb")
	if !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("deleted notebook: %v", err)
	}
}

func TestBadWorkspaceInputIsRefused(t *testing.T) {
	srv := servertest.Start(t)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"relative path", "POST", "/api/2.0/workspace/mkdirs", map[string]string{"path": "Shared/x"}, 400, "INVALID_PARAMETER_VALUE"},
		{"dot dot", "POST", "/api/2.0/workspace/mkdirs", map[string]string{"path": "/Shared/../Users"}, 400, "INVALID_PARAMETER_VALUE"},
		{"NUL", "POST", "/api/2.0/workspace/mkdirs", map[string]string{"path": "/Shared/a\x00b"}, 400, "INVALID_PARAMETER_VALUE"},
		{"missing path", "GET", "/api/2.0/workspace/get-status", nil, 400, "INVALID_PARAMETER_VALUE"},
		{"missing object", "GET", "/api/2.0/workspace/get-status?path=/Shared/nope", nil, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"bad base64", "POST", "/api/2.0/workspace/import", map[string]any{"path": "/Shared/x", "language": "PYTHON", "content": "%%%"}, 400, "MALFORMED_REQUEST"},
		{"missing parent", "POST", "/api/2.0/workspace/import", map[string]any{"path": "/Shared/no/x", "language": "PYTHON", "content": "eA=="}, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"too big", "POST", "/api/2.0/workspace/import", map[string]any{"path": "/Shared/big", "format": "RAW",
			"content": base64.StdEncoding.EncodeToString(make([]byte, 10<<20+1))}, 400, "MAX_NOTEBOOK_SIZE_EXCEEDED"},
		{"too big file", "POST", "/api/2.0/workspace-files/import-file/Shared/big.bin", strings.Repeat("x", 10<<20+1), 400, "MAX_NOTEBOOK_SIZE_EXCEEDED"},
		{"far too big file", "POST", "/api/2.0/workspace-files/import-file/Shared/big.bin", strings.Repeat("x", 30<<20), 400, "MAX_NOTEBOOK_SIZE_EXCEEDED"},
		{"delete root", "POST", "/api/2.0/workspace/delete", map[string]any{"path": "/", "recursive": true}, 400, "INVALID_PARAMETER_VALUE"},
		{"wrong type", "POST", "/api/2.0/workspace/delete", map[string]any{"path": "/Shared", "recursive": "yes"}, 400, "MALFORMED_REQUEST"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := srv.Do(srv.AdminToken, c.method, c.path, c.body)
			if r.Status != c.status || r.JSON(t)["error_code"] != c.code {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
	// Importing under a missing folder creates nothing and says so in the
	// words Terraform's provider matches ("parent folder ", " does not
	// exist") before it makes the folder and retries.
	w := srv.SDK(srv.AdminToken)
	err := w.Workspace.Import(ctx, workspace.Import{Path: "/Shared/no/such/nb", Language: workspace.LanguagePython, Content: "eA=="})
	if !errors.Is(err, apierr.ErrResourceDoesNotExist) || err.Error() != "The parent folder (/Shared/no/such) does not exist." {
		t.Errorf("import under a missing folder: %v", err)
	}
	if _, err := w.Workspace.GetStatusByPath(ctx, "/Shared/no"); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("the missing folder was made: %v", err)
	}
	// mkdirs across a file.
	w.Workspace.WriteFile(ctx, "/Shared/f.txt", []byte("x"))
	if err := w.Workspace.MkdirsByPath(ctx, "/Shared/f.txt/sub"); !errors.Is(err, apierr.ErrResourceAlreadyExists) {
		t.Errorf("mkdirs across a file: %v", err)
	}
	// RESOURCE_ALREADY_EXISTS comes with 400 from import and mkdirs, as in
	// Databricks.
	for _, c := range []struct {
		path string
		body any
	}{
		{"/api/2.0/workspace/import", map[string]any{"path": "/Shared/f.txt", "format": "RAW", "content": "eA=="}},
		{"/api/2.0/workspace/mkdirs", map[string]any{"path": "/Shared/f.txt"}},
		{"/api/2.0/workspace/mkdirs", map[string]any{"path": "/Shared/f.txt/sub"}},
	} {
		if r := srv.Do(srv.AdminToken, "POST", c.path, c.body); r.Status != 400 || r.JSON(t)["error_code"] != "RESOURCE_ALREADY_EXISTS" {
			t.Errorf("%s %v: %d %s", c.path, c.body, r.Status, r.Body)
		}
	}
	// The CLI's import-file endpoint: 409 on an existing file, 400 and
	// "Path (...) already exists." on an existing notebook, 404 without a
	// parent.
	if r := srv.Do(srv.AdminToken, "POST", "/api/2.0/workspace-files/import-file/Shared/f.txt", "y"); r.Status != 409 || r.JSON(t)["error_code"] != "RESOURCE_ALREADY_EXISTS" {
		t.Errorf("import-file over a file: %d %s", r.Status, r.Body)
	}
	nb := "# Databricks notebook source\nprint(1)"
	if r := srv.Do(srv.AdminToken, "POST", "/api/2.0/workspace-files/import-file/Shared/nb.py", nb); r.Status != 200 {
		t.Fatalf("import-file of a notebook: %d %s", r.Status, r.Body)
	}
	if st, err := w.Workspace.GetStatusByPath(ctx, "/Shared/nb"); err != nil || st.ObjectType != workspace.ObjectTypeNotebook {
		t.Errorf("import-file of a .py with the header: %+v %v", st, err)
	}
	if r := srv.Do(srv.AdminToken, "POST", "/api/2.0/workspace-files/import-file/Shared/nb.py", nb); r.Status != 400 ||
		r.JSON(t)["message"] != "Path (/Shared/nb) already exists." {
		t.Errorf("import-file over a notebook: %d %s", r.Status, r.Body)
	}
	if r := srv.Do(srv.AdminToken, "POST", "/api/2.0/workspace-files/import-file/Shared/missing/f.txt", "y"); r.Status != 404 {
		t.Errorf("import-file without a parent: %d %s", r.Status, r.Body)
	}
	if r := srv.Do(srv.AdminToken, "POST", "/api/2.0/workspace-files/import-file/Shared/f.txt?overwrite=true", "y"); r.Status != 200 {
		t.Errorf("import-file overwrite: %d %s", r.Status, r.Body)
	}
	if b, _ := w.Workspace.ReadFile(ctx, "/Shared/f.txt"); string(b) != "y" {
		t.Errorf("after import-file overwrite: %q", b)
	}
}

func TestWorkspacePermissions(t *testing.T) {
	srv := servertest.Start(t)
	admin := srv.SDK(srv.AdminToken)
	ann := srv.NewUser("ann@example.com", false)
	bob := srv.NewUser("bob@example.com", false)
	wa, wb := srv.SDK(ann.Token), srv.SDK(bob.Token)

	// Each user has a home folder they manage.
	home, err := wa.Workspace.GetStatusByPath(ctx, "/Users/ann@example.com")
	if err != nil || home.ObjectType != workspace.ObjectTypeDirectory {
		t.Fatalf("home folder: %+v %v", home, err)
	}
	if err := wa.Workspace.WriteFile(ctx, "/Users/ann@example.com/a.txt", []byte("ann")); err != nil {
		t.Fatal(err)
	}
	if err := wa.Workspace.MkdirsByPath(ctx, "/Users/ann@example.com/proj"); err != nil {
		t.Fatal(err)
	}
	// Bob cannot read or write Ann's home, and does not see it listed.
	if _, err := wb.Workspace.ReadFile(ctx, "/Users/ann@example.com/a.txt"); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("bob reads ann's file: %v", err)
	}
	if err := wb.Workspace.WriteFile(ctx, "/Users/ann@example.com/b.txt", []byte("bob")); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("bob writes in ann's home: %v", err)
	}
	users, err := wb.Workspace.ListAll(ctx, workspace.ListWorkspaceRequest{Path: "/Users"})
	if err != nil || len(users) != 1 || users[0].Path != "/Users/bob@example.com" {
		t.Errorf("bob lists /Users: %+v %v", users, err)
	}
	// /Shared is everyone's.
	if err := wb.Workspace.WriteFile(ctx, "/Shared/bob.txt", []byte("bob")); err != nil {
		t.Errorf("bob writes in /Shared: %v", err)
	}
	// Ann grants Bob CAN_READ on her project folder: read yes, write no.
	proj, _ := wa.Workspace.GetStatusByPath(ctx, "/Users/ann@example.com/proj")
	wa.Workspace.WriteFile(ctx, "/Users/ann@example.com/proj/p.txt", []byte("p"))
	_, err = wa.Workspace.UpdatePermissions(ctx, workspace.WorkspaceObjectPermissionsRequest{WorkspaceObjectType: "directories",
		WorkspaceObjectId: fmt.Sprint(proj.ObjectId), AccessControlList: []workspace.WorkspaceObjectAccessControlRequest{
			{UserName: bob.UserName, PermissionLevel: workspace.WorkspaceObjectPermissionLevelCanRead}}})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := wb.Workspace.ReadFile(ctx, "/Users/ann@example.com/proj/p.txt"); err != nil || string(b) != "p" {
		t.Errorf("bob reads with inherited CAN_READ: %q %v", b, err)
	}
	if err := wb.Workspace.WriteFile(ctx, "/Users/ann@example.com/proj/q.txt", []byte("q")); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("bob writes with CAN_READ: %v", err)
	}
	pf, _ := wa.Workspace.GetStatusByPath(ctx, "/Users/ann@example.com/proj/p.txt")
	perms, err := wa.Workspace.GetPermissions(ctx, workspace.GetWorkspaceObjectPermissionsRequest{WorkspaceObjectType: "files", WorkspaceObjectId: fmt.Sprint(pf.ObjectId)})
	if err != nil {
		t.Fatal(err)
	}
	inherited := false
	for _, a := range perms.AccessControlList {
		for _, p := range a.AllPermissions {
			if a.UserName == bob.UserName && p.Inherited && p.PermissionLevel == workspace.WorkspaceObjectPermissionLevelCanRead {
				inherited = true
			}
		}
	}
	if !inherited {
		t.Errorf("bob's inherited CAN_READ not shown: %+v", perms.AccessControlList)
	}
	// A file id under /notebooks/ is not an object of that type.
	if _, err := wa.Workspace.GetPermissions(ctx, workspace.GetWorkspaceObjectPermissionsRequest{WorkspaceObjectType: "notebooks", WorkspaceObjectId: fmt.Sprint(pf.ObjectId)}); !errors.Is(err, apierr.ErrNotFound) {
		t.Errorf("file id as a notebook: %v", err)
	}
	// Deleting needs CAN_EDIT; admins may do everything.
	if err := wb.Workspace.Delete(ctx, workspace.Delete{Path: "/Users/ann@example.com/proj/p.txt"}); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("bob deletes with CAN_READ: %v", err)
	}
	if err := admin.Workspace.Delete(ctx, workspace.Delete{Path: "/Users/ann@example.com/proj", Recursive: true}); err != nil {
		t.Errorf("admin delete: %v", err)
	}
}

// TestWorkspacePermissionMatrix walks what a non-admin may do in their own
// home, in someone else's, in /Shared, and under grants of each level.
func TestWorkspacePermissionMatrix(t *testing.T) {
	srv := servertest.Start(t)
	admin := srv.SDK(srv.AdminToken)
	ann := srv.NewUser("ann@example.com", false)
	bob := srv.NewUser("bob@example.com", false)
	users := map[string]*databricks.WorkspaceClient{"admin": admin, "ann": srv.SDK(ann.Token), "bob": srv.SDK(bob.Token)}
	home := "/Users/ann@example.com"
	// Ann's folders: one for each level she grants Bob, and one she does not share.
	status := map[string]workspace.ObjectInfo{}
	for _, d := range []string{"private", "read", "run", "edit", "manage"} {
		if err := users["ann"].Workspace.MkdirsByPath(ctx, home+"/"+d+"/sub"); err != nil {
			t.Fatal(err)
		}
		if err := users["ann"].Workspace.WriteFile(ctx, home+"/"+d+"/sub/f.txt", []byte(d)); err != nil {
			t.Fatal(err)
		}
		st, err := users["ann"].Workspace.GetStatusByPath(ctx, home+"/"+d)
		if err != nil {
			t.Fatal(err)
		}
		status[d] = *st
		if d == "private" {
			continue
		}
		_, err = users["ann"].Workspace.UpdatePermissions(ctx, workspace.WorkspaceObjectPermissionsRequest{WorkspaceObjectType: "directories",
			WorkspaceObjectId: fmt.Sprint(st.ObjectId), AccessControlList: []workspace.WorkspaceObjectAccessControlRequest{
				{UserName: bob.UserName, PermissionLevel: workspace.WorkspaceObjectPermissionLevel("CAN_" + strings.ToUpper(d))}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.Workspace.MkdirsByPath(ctx, "/Projects"); err != nil {
		t.Fatal(err)
	}

	read := func(w *databricks.WorkspaceClient, p string) error {
		_, err := w.Workspace.ReadFile(ctx, p)
		return err
	}
	list := func(w *databricks.WorkspaceClient, p string) error {
		_, err := w.Workspace.ListAll(ctx, workspace.ListWorkspaceRequest{Path: p})
		return err
	}
	status2 := func(w *databricks.WorkspaceClient, p string) error {
		_, err := w.Workspace.GetStatusByPath(ctx, p)
		return err
	}
	write := func(w *databricks.WorkspaceClient, p string) error { return w.Workspace.WriteFile(ctx, p, []byte("x")) }
	mkdir := func(w *databricks.WorkspaceClient, p string) error { return w.Workspace.MkdirsByPath(ctx, p) }
	del := func(w *databricks.WorkspaceClient, p string) error {
		return w.Workspace.Delete(ctx, workspace.Delete{Path: p, Recursive: true})
	}
	type op func(*databricks.WorkspaceClient, string) error
	cases := []struct {
		who, what string
		do        op
		path      string
		allowed   bool
	}{
		// Her own home: everything but removing the home itself.
		{"ann", "list", list, home, true},
		{"ann", "read", read, home + "/private/sub/f.txt", true},
		{"ann", "write", write, home + "/new.txt", true},
		{"ann", "overwrite", write, home + "/private/sub/f.txt", true},
		{"ann", "mkdirs", mkdir, home + "/a/b", true},
		{"ann", "delete", del, home + "/a", true},
		{"ann", "delete her home", del, home, false},
		// Someone else's home: nothing.
		{"bob", "get-status", status2, home, false},
		{"bob", "list", list, home, false},
		{"bob", "read", read, home + "/private/sub/f.txt", false},
		{"bob", "write", write, home + "/bob.txt", false},
		{"bob", "mkdirs", mkdir, home + "/bob", false},
		{"bob", "delete", del, home + "/private", false},
		// The root: admins create folders there.
		{"bob", "mkdirs at the root", mkdir, "/Mine", false},
		{"admin", "mkdirs at the root", mkdir, "/Theirs", true},
		// /Shared belongs to the users group.
		{"bob", "write in /Shared", write, "/Shared/bob.txt", true},
		{"bob", "mkdirs in /Shared", mkdir, "/Shared/bob/x", true},
		{"bob", "read in /Shared", read, "/Shared/bob.txt", true},
		{"bob", "delete in /Shared", del, "/Shared/bob", true},
		// Grants on a folder reach what is below it.
		{"bob", "CAN_READ: list", list, home + "/read/sub", true},
		{"bob", "CAN_READ: read", read, home + "/read/sub/f.txt", true},
		{"bob", "CAN_READ: write", write, home + "/read/sub/g.txt", false},
		{"bob", "CAN_READ: overwrite", write, home + "/read/sub/f.txt", false},
		{"bob", "CAN_READ: mkdirs", mkdir, home + "/read/new", false},
		{"bob", "CAN_READ: delete", del, home + "/read/sub/f.txt", false},
		{"bob", "CAN_RUN: read", read, home + "/run/sub/f.txt", true},
		{"bob", "CAN_RUN: write", write, home + "/run/sub/g.txt", false},
		{"bob", "CAN_RUN: delete", del, home + "/run/sub", false},
		{"bob", "CAN_EDIT: write", write, home + "/edit/sub/g.txt", true},
		{"bob", "CAN_EDIT: overwrite", write, home + "/edit/sub/f.txt", true},
		{"bob", "CAN_EDIT: mkdirs", mkdir, home + "/edit/new/deeper", true},
		{"bob", "CAN_EDIT: delete", del, home + "/edit/sub", true},
		{"bob", "CAN_MANAGE: delete", del, home + "/manage/sub", true},
		// Admins pass every check, in any home.
		{"admin", "read", read, home + "/private/sub/f.txt", true},
		{"admin", "delete a home", del, "/Users/bob@example.com", true},
	}
	for _, c := range cases {
		err := c.do(users[c.who], c.path)
		switch {
		case c.allowed && err != nil:
			t.Errorf("%s %s %s: %v", c.who, c.what, c.path, err)
		case !c.allowed && !errors.Is(err, apierr.ErrPermissionDenied):
			t.Errorf("%s %s %s: %v, want PERMISSION_DENIED", c.who, c.what, c.path, err)
		}
	}

	// Listing the root and /Users works for everyone and shows what each can read.
	names := func(who, p string) []string {
		objs, err := users[who].Workspace.ListAll(ctx, workspace.ListWorkspaceRequest{Path: p})
		if err != nil {
			t.Fatalf("%s lists %s: %v", who, p, err)
		}
		var out []string
		for _, o := range objs {
			out = append(out, o.Path)
		}
		sort.Strings(out)
		return out
	}
	if got, want := names("bob", "/"), []string{"/Shared", "/Users"}; !slices.Equal(got, want) {
		t.Errorf("bob lists /: %v, want %v", got, want)
	}
	if got, want := names("admin", "/"), []string{"/Projects", "/Shared", "/Theirs", "/Users"}; !slices.Equal(got, want) {
		t.Errorf("admin lists /: %v, want %v", got, want)
	}
	if got, want := names("ann", "/Users"), []string{home}; !slices.Equal(got, want) {
		t.Errorf("ann lists /Users: %v, want %v", got, want)
	}

	// The Permissions API shows Bob's grant on the folder inherited by what is below it.
	sub, err := users["ann"].Workspace.GetStatusByPath(ctx, home+"/read/sub")
	if err != nil {
		t.Fatal(err)
	}
	r := srv.Do(ann.Token, "GET", fmt.Sprintf("/api/2.0/permissions/directories/%d", sub.ObjectId), nil)
	var perms struct {
		ObjectID string `json:"object_id"`
		ACL      []struct {
			UserName string `json:"user_name"`
			All      []struct {
				Level     string   `json:"permission_level"`
				Inherited bool     `json:"inherited"`
				From      []string `json:"inherited_from_object"`
			} `json:"all_permissions"`
		} `json:"access_control_list"`
	}
	if err := json.Unmarshal(r.Body, &perms); err != nil || r.Status != 200 {
		t.Fatalf("permissions of a subfolder: %d %s", r.Status, r.Body)
	}
	found := false
	for _, a := range perms.ACL {
		for _, p := range a.All {
			if a.UserName == bob.UserName && p.Level == "CAN_READ" && p.Inherited &&
				slices.Equal(p.From, []string{fmt.Sprintf("/directories/%d", status["read"].ObjectId)}) {
				found = true
			}
		}
	}
	if perms.ObjectID != fmt.Sprintf("/directories/%d", sub.ObjectId) || !found {
		t.Errorf("permissions of a subfolder: %s", r.Body)
	}
	// An id names one object of one type: a folder is not a notebook, a
	// notebook is not a folder.
	if r := srv.Do(ann.Token, "GET", fmt.Sprintf("/api/2.0/permissions/notebooks/%d", sub.ObjectId), nil); r.Status != 404 {
		t.Errorf("a folder's id as a notebook: %d %s", r.Status, r.Body)
	}
	err = users["ann"].Workspace.Import(ctx, workspace.Import{Path: home + "/nb", Language: workspace.LanguageSql, Content: "c2VsZWN0IDE="})
	if err != nil {
		t.Fatal(err)
	}
	nb, _ := users["ann"].Workspace.GetStatusByPath(ctx, home+"/nb")
	if r := srv.Do(ann.Token, "GET", fmt.Sprintf("/api/2.0/permissions/directories/%d", nb.ObjectId), nil); r.Status != 404 {
		t.Errorf("a notebook's id as a folder: %d %s", r.Status, r.Body)
	}
	if r := srv.Do(ann.Token, "GET", fmt.Sprintf("/api/2.0/permissions/notebooks/%d", nb.ObjectId), nil); r.Status != 200 {
		t.Errorf("a notebook's permissions: %d %s", r.Status, r.Body)
	}

	// Deleting a folder removes its ACL and those of what was in it, in the
	// same change.
	f, err := users["ann"].Workspace.GetStatusByPath(ctx, home+"/read/sub/f.txt")
	if err != nil {
		t.Fatal(err)
	}
	acls := map[string]string{"directories": fmt.Sprint(status["read"].ObjectId), "files": fmt.Sprint(f.ObjectId)}
	grants := func() (n int) {
		err := srv.Store.View(ctx, func(tx store.Tx) error {
			for typ, id := range acls {
				gs, err := permissions.Grants(tx, typ, id)
				if err != nil {
					return err
				}
				n += len(gs)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := grants(); n != 3 {
		t.Fatalf("%d grants before the delete, want Ann's (creator) and Bob's on the folder and Ann's on her file", n)
	}
	if err := users["ann"].Workspace.Delete(ctx, workspace.Delete{Path: home + "/read", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if n := grants(); n != 0 {
		t.Errorf("%d grants left after the delete", n)
	}
}

func TestReplacedAndDeletedContentsLeaveTheStorageAccount(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	blobs := func() int {
		n := 0
		if err := srv.Storage.List(ctx, "workspace/", func(storage.ObjectInfo) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	w.Workspace.WriteFile(ctx, "/Shared/x.bin", bytes.Repeat([]byte("x"), 1000))
	w.Workspace.WriteFile(ctx, "/Shared/x.bin", bytes.Repeat([]byte("y"), 1000))
	if n := blobs(); n != 1 {
		t.Errorf("%d blobs after an overwrite, want 1", n)
	}
	if b, _ := w.Workspace.ReadFile(ctx, "/Shared/x.bin"); !bytes.Equal(b, bytes.Repeat([]byte("y"), 1000)) {
		t.Error("overwrite did not replace the contents")
	}
	w.Workspace.Delete(ctx, workspace.Delete{Path: "/Shared/x.bin"})
	if n := blobs(); n != 0 {
		t.Errorf("%d blobs after delete, want 0", n)
	}
}

// TestWorkspaceAuditRecords checks each call's category and action as
// Databricks' audit log names them, and that no content reaches
// requestParams, whichever way it was sent.
func TestWorkspaceAuditRecords(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	start := srv.Journal.End()
	const secret = "c2VjcmV0LWNvbnRlbnRz" // base64 of the contents that must not be logged
	type auditedCall struct {
		method, path     string
		body             any
		category, action string
	}
	calls := []auditedCall{
		{"POST", "/api/2.0/workspace/mkdirs", map[string]string{"path": "/Shared/a"}, "workspace", "mkdirs"},
		{"POST", "/api/2.0/workspace/import", map[string]any{"path": "/Shared/a/nb", "language": "PYTHON", "content": secret}, "notebook", "importNotebook"},
		{"POST", "/api/2.0/workspace/import", map[string]any{"path": "/Shared/a/f.bin", "format": "RAW", "content": secret}, "workspace", "fileCreate"},
		{"POST", "/api/2.0/workspace-files/import-file/Shared/a/conf.json", `{"db_password_hint": "secret-contents"}`, "workspace", "fileCreate"},
		{"POST", "/api/2.0/workspace-files/import-file/Shared/a/nb2.py", "# Databricks notebook source\nsecret-contents", "notebook", "importNotebook"},
		{"GET", "/api/2.0/workspace/export?path=/Shared/a/nb", nil, "workspace", "workspaceExport"},
		{"GET", "/api/2.0/workspace/get-status?path=/Shared/a/nb&return_export_info=true", nil, "workspace", "getStatus"},
		{"GET", "/api/2.0/workspace/list?path=/Shared/a", nil, "workspace", "list"},
		{"POST", "/api/2.0/workspace/delete", map[string]any{"path": "/Shared/a/nb"}, "notebook", "deleteNotebook"},
		{"POST", "/api/2.0/workspace/delete", map[string]any{"path": "/Shared/a/f.bin"}, "workspace", "fileDelete"},
	}
	for _, c := range calls {
		if r := srv.Do(srv.AdminToken, c.method, c.path, c.body); r.Status != 200 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
	// The SDK's multipart upload.
	if err := w.Workspace.Upload(ctx, "/Shared/a/up.py", strings.NewReader("secret-contents"), workspace.UploadOverwrite()); err != nil {
		t.Fatal(err)
	}
	if err := w.Workspace.Delete(ctx, workspace.Delete{Path: "/Shared/a", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	calls = append(calls,
		auditedCall{"POST", "/api/2.0/workspace/import", nil, "notebook", "importNotebook"},
		auditedCall{"POST", "/api/2.0/workspace/delete", nil, "notebook", "deleteFolder"})

	recs, _, err := srv.Journal.Read(start, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(calls) {
		t.Fatalf("%d audit records for %d calls", len(recs), len(calls))
	}
	for i, rec := range recs {
		c := calls[i]
		if rec.Category != c.category || rec.Properties.ActionName != c.action {
			t.Errorf("%s %s: audited as %s/%s, want %s/%s", c.method, c.path, rec.Category, rec.Properties.ActionName, c.category, c.action)
		}
		if rec.Properties.RequestParams["path"] == "" {
			t.Errorf("%s %s: no path in %v", c.method, c.path, rec.Properties.RequestParams)
		}
		b, _ := json.Marshal(rec)
		if strings.Contains(string(b), secret) || strings.Contains(string(b), "secret-contents") || strings.Contains(string(b), "db_password_hint") {
			t.Errorf("%s %s: contents in the audit record: %s", c.method, c.path, b)
		}
	}
	if got := recs[10].Properties.RequestParams; got["path"] != "/Shared/a/up.py" || got["overwrite"] != "true" || got["language"] != "PYTHON" {
		t.Errorf("multipart upload's requestParams: %v", got)
	}
}

// countingBackend counts the contents written to the storage account.
type countingBackend struct {
	storage.Backend
	puts atomic.Int64
}

func (b *countingBackend) Put(ctx context.Context, name string, r io.Reader) error {
	b.puts.Add(1)
	return b.Backend.Put(ctx, name, r)
}

func TestRefusedImportsWriteNoContents(t *testing.T) {
	counter := &countingBackend{}
	srv := servertest.Start(t, servertest.WithSetup(func(s *server.Server) {
		counter.Backend = s.Workspace.Storage
		s.Workspace.Storage = counter
	}))
	bob := srv.NewUser("bob@example.com", false)
	big := base64.StdEncoding.EncodeToString(make([]byte, 1<<20))
	for _, c := range []struct {
		token, path string
		status      int
	}{
		{bob.Token, "/Users/admin@tandem.local/x", 403},
		{srv.AdminToken, "/Shared/missing/x", 404},
		{srv.AdminToken, "/Users", 400},
	} {
		r := srv.Do(c.token, "POST", "/api/2.0/workspace/import", map[string]any{"path": c.path, "format": "RAW", "content": big})
		if r.Status != c.status {
			t.Errorf("import to %s: %d %s", c.path, r.Status, r.Body)
		}
	}
	if n := counter.puts.Load(); n != 0 {
		t.Errorf("%d blobs written for refused imports", n)
	}
	if r := srv.Do(bob.Token, "POST", "/api/2.0/workspace/import", map[string]any{"path": "/Shared/x", "format": "RAW", "content": big}); r.Status != 200 {
		t.Fatalf("import: %d %s", r.Status, r.Body)
	}
	if n := counter.puts.Load(); n != 1 {
		t.Errorf("%d blobs written for one import", n)
	}
}

// lostAckStore commits and then reports an error, as a connection lost
// while committing does.
type lostAckStore struct {
	store.Store
	lose atomic.Bool
}

func (s *lostAckStore) Update(ctx context.Context, fn func(store.Tx) error) (int64, error) {
	seq, err := s.Store.Update(ctx, fn)
	if err == nil && s.lose.Load() {
		return seq, errors.New("connection lost while committing")
	}
	return seq, err
}

// TestImportWhoseCommitIsUnknownKeepsItsContents: when an import cannot
// tell whether its metadata committed, it must not delete the contents that
// metadata may name.
func TestImportWhoseCommitIsUnknownKeepsItsContents(t *testing.T) {
	lost := &lostAckStore{}
	srv := servertest.Start(t, servertest.WithSetup(func(s *server.Server) {
		lost.Store = s.Workspace.Store
		s.Workspace.Store = lost
	}))
	w := srv.SDK(srv.AdminToken)
	lost.lose.Store(true)
	r := srv.Do(srv.AdminToken, "POST", "/api/2.0/workspace/import", map[string]any{"path": "/Shared/x.txt", "format": "RAW", "content": "aGVsbG8="})
	if r.Status != 500 {
		t.Fatalf("import with a lost commit: %d %s", r.Status, r.Body)
	}
	lost.lose.Store(false)
	if b, err := w.Workspace.ReadFile(ctx, "/Shared/x.txt"); err != nil || string(b) != "hello" {
		t.Errorf("the committed file: %q %v", b, err)
	}
}

func TestMissingHomesAreMadeAtStart(t *testing.T) {
	dir := t.TempDir()
	srv := servertest.Start(t, servertest.WithDataDir(dir))
	bob := srv.NewUser("bob@example.com", false)
	if err := srv.SDK(srv.AdminToken).Workspace.Delete(ctx, workspace.Delete{Path: "/Users/bob@example.com", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	srv.Close()

	srv = servertest.Start(t, servertest.WithDataDir(dir))
	wb := srv.SDK(bob.Token)
	st, err := wb.Workspace.GetStatusByPath(ctx, "/Users/bob@example.com")
	if err != nil || st.ObjectType != workspace.ObjectTypeDirectory {
		t.Fatalf("Bob's home after a restart: %+v %v", st, err)
	}
	if err := wb.Workspace.WriteFile(ctx, "/Users/bob@example.com/f.txt", []byte("x")); err != nil {
		t.Errorf("Bob writes in his remade home: %v", err)
	}
}

func TestListNotebooksModifiedAfter(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	w.Workspace.MkdirsByPath(ctx, "/Shared/m/sub")
	w.Workspace.WriteFile(ctx, "/Shared/m/f.txt", []byte("x"))
	w.Workspace.Import(ctx, workspace.Import{Path: "/Shared/m/old", Language: workspace.LanguagePython, Content: "eA=="})
	old, err := w.Workspace.GetStatusByPath(ctx, "/Shared/m/old")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	w.Workspace.Import(ctx, workspace.Import{Path: "/Shared/m/new", Language: workspace.LanguagePython, Content: "eA=="})
	objs, err := w.Workspace.ListAll(ctx, workspace.ListWorkspaceRequest{Path: "/Shared/m", NotebooksModifiedAfter: old.ModifiedAt})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.Path)
	}
	sort.Strings(got)
	if want := []string{"/Shared/m/f.txt", "/Shared/m/new", "/Shared/m/sub"}; !slices.Equal(got, want) {
		t.Errorf("list after %d: %v, want %v", old.ModifiedAt, got, want)
	}
}

// TestOverwriteWithAnotherTypeKeepsGrants: a notebook replaced by a file at
// the same path (or the reverse) keeps its id, so its grants follow it.
func TestOverwriteWithAnotherTypeKeepsGrants(t *testing.T) {
	srv := servertest.Start(t)
	admin := srv.SDK(srv.AdminToken)
	bob := srv.NewUser("bob@example.com", false)
	admin.Workspace.MkdirsByPath(ctx, "/Projects")
	if err := admin.Workspace.Import(ctx, workspace.Import{Path: "/Projects/x", Language: workspace.LanguagePython, Content: "eA=="}); err != nil {
		t.Fatal(err)
	}
	st, _ := admin.Workspace.GetStatusByPath(ctx, "/Projects/x")
	_, err := admin.Workspace.UpdatePermissions(ctx, workspace.WorkspaceObjectPermissionsRequest{WorkspaceObjectType: "notebooks",
		WorkspaceObjectId: fmt.Sprint(st.ObjectId), AccessControlList: []workspace.WorkspaceObjectAccessControlRequest{
			{UserName: bob.UserName, PermissionLevel: workspace.WorkspaceObjectPermissionLevelCanRead}}})
	if err != nil {
		t.Fatal(err)
	}
	wb := srv.SDK(bob.Token)
	for i, format := range []workspace.ImportFormat{workspace.ImportFormatRaw, workspace.ImportFormatSource} {
		err := admin.Workspace.Import(ctx, workspace.Import{Path: "/Projects/x", Format: format, Language: workspace.LanguagePython, Content: "eQ==", Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wb.Workspace.Export(ctx, workspace.ExportRequest{Path: "/Projects/x"}); err != nil {
			t.Errorf("step %d (%s): Bob's grant: %v", i, format, err)
		}
	}
	n := 0
	srv.Store.View(ctx, func(tx store.Tx) error {
		for _, typ := range []string{"notebooks", "files"} {
			gs, _ := permissions.Grants(tx, typ, fmt.Sprint(st.ObjectId))
			n += len(gs)
		}
		return nil
	})
	if n != 1 {
		t.Errorf("%d grants stored for the object, want Bob's alone", n)
	}
}

// TestSweepRemovesOnlyOldOrphans: contents a crash left unreferenced go once
// they are older than the grace; referenced and recent ones stay.
func TestSweepRemovesOnlyOldOrphans(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	if err := w.Workspace.WriteFile(ctx, "/Shared/live.txt", []byte("live")); err != nil {
		t.Fatal(err)
	}
	orphan, err := storage.PutBlob(ctx, srv.Storage, "workspace/", strings.NewReader("left by a crash"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Workspace.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep within the grace: %d, %v", n, err)
	}
	srv.Workspace.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if n, err := srv.Workspace.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep after the grace: %d, %v", n, err)
	}
	if _, err := srv.Storage.Stat(ctx, orphan.Name); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("orphan still there: %v", err)
	}
	if b, err := w.Workspace.ReadFile(ctx, "/Shared/live.txt"); err != nil || string(b) != "live" {
		t.Errorf("live file after the sweep: %q %v", b, err)
	}
}
