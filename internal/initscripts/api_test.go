package initscripts_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"

	"github.com/tandemdata/tandem/internal/server/servertest"
)

var ctx = context.Background()

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// order lists the scripts' names in run order and checks the positions
// are 0..n-1.
func order(t *testing.T, w *databricks.WorkspaceClient) string {
	t.Helper()
	list, err := w.GlobalInitScripts.ListAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i, s := range list {
		if s.Position != i {
			t.Errorf("%s is at position %d in place %d", s.Name, s.Position, i)
		}
		names = append(names, s.Name)
	}
	return strings.Join(names, " ")
}

func TestGlobalInitScriptsThroughTheSDK(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	create := func(name string, enabled bool, pos ...int) string {
		t.Helper()
		req := compute.GlobalInitScriptCreateRequest{Name: name, Script: b64("echo " + name), Enabled: enabled}
		if len(pos) > 0 {
			req.Position, req.ForceSendFields = pos[0], []string{"Position"}
		}
		s, err := w.GlobalInitScripts.Create(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.ScriptId) != 16 || strings.ToUpper(s.ScriptId) != s.ScriptId {
			t.Errorf("script id %q is not 16 upper-case hex digits", s.ScriptId)
		}
		return s.ScriptId
	}
	a := create("a", true)     // omitted: last
	b := create("b", false)    // last
	c := create("c", true, 0)  // at a taken position: shifts a and b
	d := create("d", true, 99) // past the end: last
	if got := order(t, w); got != "c a b d" {
		t.Fatalf("order = %q, want c a b d", got)
	}
	list, _ := w.GlobalInitScripts.ListAll(ctx)
	for _, s := range list {
		if s.CreatedBy != "admin@tandem.local" || s.UpdatedBy != "admin@tandem.local" || s.CreatedAt == 0 || s.UpdatedAt < s.CreatedAt {
			t.Errorf("list entry %+v", s)
		}
	}
	// A list carries no bodies; get does.
	r := srv.Do(srv.AdminToken, "GET", "/api/2.0/global-init-scripts", nil)
	if bytes.Contains(r.Body, []byte(`"script"`)) {
		t.Errorf("list carries bodies: %s", r.Body)
	}
	got, err := w.GlobalInitScripts.GetByScriptId(ctx, a)
	if err != nil || got.Script != b64("echo a") || got.Name != "a" || !got.Enabled || got.Position != 1 || got.CreatedBy != "admin@tandem.local" {
		t.Errorf("get = %+v, %v", got, err)
	}

	// Update: move b to the front, rename it, change its body, enable it.
	other := srv.NewUser("admin2@example.com", true)
	w2 := srv.SDK(other.Token)
	err = w2.GlobalInitScripts.Update(ctx, compute.GlobalInitScriptUpdateRequest{ScriptId: b, Name: "b2", Script: b64("echo b2"),
		Enabled: true, Position: 0, ForceSendFields: []string{"Position"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := order(t, w); got != "b2 c a d" {
		t.Errorf("order after moving b to 0 = %q", got)
	}
	gb, _ := w.GlobalInitScripts.GetByScriptId(ctx, b)
	if gb.UpdatedBy != "admin2@example.com" || gb.CreatedBy != "admin@tandem.local" || gb.Script != b64("echo b2") {
		t.Errorf("updated script = %+v", gb)
	}
	// Moving past the end puts it last; fields not given keep their values.
	if r := srv.Do(srv.AdminToken, "PATCH", "/api/2.0/global-init-scripts/"+c, map[string]any{"position": 10}); r.Status != 200 {
		t.Fatalf("patch position: %d %s", r.Status, r.Body)
	}
	if got := order(t, w); got != "b2 a d c" {
		t.Errorf("order after moving c past the end = %q", got)
	}
	if gc, _ := w.GlobalInitScripts.GetByScriptId(ctx, c); gc.Name != "c" || gc.Script != b64("echo c") || !gc.Enabled {
		t.Errorf("a patch of position only changed other fields: %+v", gc)
	}
	if r := srv.Do(srv.AdminToken, "PATCH", "/api/2.0/global-init-scripts/"+d, map[string]any{"enabled": false}); r.Status != 200 {
		t.Fatalf("patch enabled: %d %s", r.Status, r.Body)
	}

	// Compute reads the enabled ones, decoded, in run order.
	enabled, err := srv.InitScripts.Enabled(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var run []string
	for _, s := range enabled {
		run = append(run, s.Name+"="+string(s.Content))
	}
	if got := strings.Join(run, ","); got != "b2=echo b2,a=echo a,c=echo c" {
		t.Errorf("enabled = %s", got)
	}

	// Deleting keeps positions contiguous.
	if err := w.GlobalInitScripts.DeleteByScriptId(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := order(t, w); got != "b2 d c" {
		t.Errorf("order after deleting a = %q", got)
	}
	if _, err := w.GlobalInitScripts.GetByScriptId(ctx, a); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("deleted script: %v", err)
	}
	if err := w.GlobalInitScripts.DeleteByScriptId(ctx, a); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("deleting twice: %v", err)
	}
}

func TestGlobalInitScriptsAreForAdminsAndValidated(t *testing.T) {
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	s, err := w.GlobalInitScripts.Create(ctx, compute.GlobalInitScriptCreateRequest{Name: "setup", Script: b64("export TOKEN=dapi-in-a-script")})
	if err != nil {
		t.Fatal(err)
	}
	user := srv.SDK(srv.NewUser("u@example.com", false).Token)
	denied := map[string]error{
		"list": func() error { _, err := user.GlobalInitScripts.ListAll(ctx); return err }(),
		"get":  func() error { _, err := user.GlobalInitScripts.GetByScriptId(ctx, s.ScriptId); return err }(),
		"create": func() error {
			_, err := user.GlobalInitScripts.Create(ctx, compute.GlobalInitScriptCreateRequest{Name: "x", Script: b64("x")})
			return err
		}(),
		"update": user.GlobalInitScripts.Update(ctx, compute.GlobalInitScriptUpdateRequest{ScriptId: s.ScriptId, Name: "x", Script: b64("x")}),
		"delete": user.GlobalInitScripts.DeleteByScriptId(ctx, s.ScriptId),
	}
	for what, err := range denied {
		if !errors.Is(err, apierr.ErrPermissionDenied) {
			t.Errorf("non-admin %s: %v", what, err)
		}
	}
	bad := []struct {
		name string
		req  compute.GlobalInitScriptCreateRequest
		is   error
	}{
		{"no name", compute.GlobalInitScriptCreateRequest{Script: b64("x")}, apierr.ErrInvalidParameterValue},
		{"no script", compute.GlobalInitScriptCreateRequest{Name: "x"}, apierr.ErrInvalidParameterValue},
		{"name with a slash", compute.GlobalInitScriptCreateRequest{Name: "a/b", Script: b64("x")}, apierr.ErrInvalidParameterValue},
		{"name of 101 characters", compute.GlobalInitScriptCreateRequest{Name: strings.Repeat("n", 101), Script: b64("x")}, apierr.ErrInvalidParameterValue},
		{"script not base64", compute.GlobalInitScriptCreateRequest{Name: "x", Script: "%%%"}, apierr.ErrBadRequest},
		{"script over 64 KB", compute.GlobalInitScriptCreateRequest{Name: "x", Script: b64(strings.Repeat("#", 64<<10+1))}, apierr.ErrInvalidParameterValue},
		{"negative position", compute.GlobalInitScriptCreateRequest{Name: "x", Script: b64("x"), Position: -1}, apierr.ErrInvalidParameterValue},
	}
	for _, c := range bad {
		if _, err := w.GlobalInitScripts.Create(ctx, c.req); !errors.Is(err, c.is) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, err := w.GlobalInitScripts.Create(ctx, compute.GlobalInitScriptCreateRequest{Name: "My script 1.0_x-y", Script: b64(strings.Repeat("#", 64<<10))}); err != nil {
		t.Errorf("a 64 KB script with a name of every allowed kind: %v", err)
	}
	if err := w.GlobalInitScripts.Update(ctx, compute.GlobalInitScriptUpdateRequest{ScriptId: "0123456789ABCDEF", Name: "x", Script: b64("x")}); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("update of an unknown script: %v", err)
	}
	// Nothing half-made: two scripts, the ones that were accepted.
	if list, _ := w.GlobalInitScripts.ListAll(ctx); len(list) != 2 {
		t.Errorf("%d scripts after the refused calls", len(list))
	}
	// Script bodies stay out of the audit journal.
	srv.Close()
	var journal []byte
	filepath.Walk(filepath.Join(srv.DataDir, "audit", "journal"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			journal = append(journal, b...)
		}
		return nil
	})
	if !bytes.Contains(journal, []byte("globalInitScripts/create")) {
		t.Error("the audit journal has no globalInitScripts/create record")
	}
	if bytes.Contains(journal, []byte(b64("export TOKEN=dapi-in-a-script"))) || bytes.Contains(journal, []byte("dapi-in-a-script")) {
		t.Error("the audit journal holds a script body")
	}
}
