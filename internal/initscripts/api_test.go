package initscripts_test

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"

	"github.com/tandemdata/tandem/internal/server/servertest"
)

func TestGlobalInitScriptsThroughTheSDK(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Start(t)
	w := srv.SDK(srv.AdminToken)
	body := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	a, err := w.GlobalInitScripts.Create(ctx, compute.GlobalInitScriptCreateRequest{Name: "a", Script: body("echo a"), Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := w.GlobalInitScripts.Create(ctx, compute.GlobalInitScriptCreateRequest{Name: "b", Script: body("echo b")})
	c, _ := w.GlobalInitScripts.Create(ctx, compute.GlobalInitScriptCreateRequest{Name: "c", Script: body("echo c"), Enabled: true, Position: 0, ForceSendFields: []string{"Position"}})
	list, err := w.GlobalInitScripts.ListAll(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("list = %d, %v", len(list), err)
	}
	order := ""
	for _, s := range list {
		order += s.Name
	}
	if order != "cab" {
		t.Errorf("order = %s, want cab", order)
	}
	got, err := w.GlobalInitScripts.GetByScriptId(ctx, a.ScriptId)
	if err != nil || got.Script != body("echo a") || got.CreatedBy != "admin@tandem.local" {
		t.Errorf("get = %+v, %v", got, err)
	}
	err = w.GlobalInitScripts.Update(ctx, compute.GlobalInitScriptUpdateRequest{ScriptId: b.ScriptId, Name: "b2", Script: body("echo b2"), Enabled: true, Position: 0, ForceSendFields: []string{"Position"}})
	if err != nil {
		t.Fatal(err)
	}
	enabled, err := srv.InitScripts.Enabled(ctx)
	if err != nil || len(enabled) != 3 || enabled[0].Name != "b2" || string(enabled[0].Body()) != "echo b2" {
		t.Errorf("enabled = %+v, %v", enabled, err)
	}
	if err := w.GlobalInitScripts.DeleteByScriptId(ctx, c.ScriptId); err != nil {
		t.Fatal(err)
	}
	if _, err := w.GlobalInitScripts.GetByScriptId(ctx, c.ScriptId); !errors.Is(err, apierr.ErrResourceDoesNotExist) {
		t.Errorf("deleted script: %v", err)
	}
	user := srv.NewUser("u@example.com", false)
	if _, err := srv.SDK(user.Token).GlobalInitScripts.ListAll(ctx); !errors.Is(err, apierr.ErrPermissionDenied) {
		t.Errorf("non-admin list: %v", err)
	}
	if _, err := w.GlobalInitScripts.Create(ctx, compute.GlobalInitScriptCreateRequest{Name: "bad", Script: "%%%"}); !errors.Is(err, apierr.ErrBadRequest) {
		t.Errorf("bad base64: %v", err)
	}
}
