package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/agent/agenttest"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// call is one prepared request and how to give a user what it needs.
type call struct {
	method, path string
	body         any
	grant        func() // gives the "with" user the level the call needs
}

// authzCase is one endpoint of the authorization matrix. need is "open"
// (every user), "admin" (admins only) or the level a grant gives.
type authzCase struct {
	route   string
	need    string
	prepare func() call
}

// TestAuthorizationMatrix calls every endpoint of the API as an admin, as a
// user holding the level the endpoint needs, and as a user without it; and
// fails if an endpoint is missing from the matrix, so new endpoints must
// join it.
func TestAuthorizationMatrix(t *testing.T) {
	// Clusters run on in-process agents with a fake Spark.
	prov := agenttest.NewProvider(t.TempDir())
	t.Cleanup(prov.Close)
	srv := servertest.Start(t, func(c *config.Config) { c.Compute.HeartbeatSeconds = 0.3 },
		servertest.WithSetup(func(s *server.Server) { s.Compute.Provider = prov }))
	with := srv.NewUser("with@example.com", false)
	without := srv.NewUser("without@example.com", false)
	admin2 := srv.NewUser("admin2@example.com", true)
	adminTok := srv.AdminToken
	var seq atomic.Int64
	next := func() int64 { return seq.Add(1) }

	must := func(r servertest.Response, what string) servertest.Response {
		t.Helper()
		if r.Status >= 400 {
			t.Fatalf("setup %s: %d %s", what, r.Status, r.Body)
		}
		return r
	}
	num := func(r servertest.Response, field string) string {
		var v any = r.JSON(t)[field]
		if f, ok := v.(float64); ok {
			return fmt.Sprintf("%.0f", f)
		}
		return fmt.Sprint(v)
	}
	grant := func(typ, id, level string) func() {
		return func() {
			must(srv.Do(adminTok, "PATCH", "/api/2.0/permissions/"+typ+"/"+id, map[string]any{
				"access_control_list": []map[string]string{{"user_name": with.UserName, "permission_level": level}}}), "grant")
		}
	}
	q := url.QueryEscape
	// storageObject writes a DBFS file and names one object of the storage
	// account.
	storageObject := func() string {
		must(srv.Do(adminTok, "POST", "/api/2.0/dbfs/put", map[string]any{"path": fmt.Sprintf("/authz/%d", next()), "contents": "eA==", "overwrite": true}), "dbfs put")
		objs := must(srv.Do(adminTok, "GET", "/api/2.0/tandem/storage/objects/list?prefix=", nil), "list objects").JSON(t)["objects"].([]any)
		return objs[0].(map[string]any)["name"].(string)
	}

	// Fixtures, fresh for each call so destructive calls have their object.
	folder := func() (path, id string) {
		p := fmt.Sprintf("/Users/admin@tandem.local/authz-%d", next())
		must(srv.Do(adminTok, "POST", "/api/2.0/workspace/mkdirs", map[string]string{"path": p}), "mkdirs")
		must(srv.Do(adminTok, "POST", "/api/2.0/workspace/import", map[string]any{"path": p + "/nb", "language": "PYTHON", "content": "cHJpbnQoMSk="}), "import")
		return p, num(srv.Do(adminTok, "GET", "/api/2.0/workspace/get-status?path="+q(p), nil), "object_id")
	}
	job := func() string {
		return num(must(srv.Do(adminTok, "POST", "/api/2.2/jobs/create", map[string]any{"name": "authz", "tasks": []map[string]any{{
			"task_key": "t", "new_cluster": map[string]any{"num_workers": 1}, "spark_python_task": map[string]string{"python_file": "/x.py"}}}}), "job"), "job_id")
	}
	run := func() (jobID, runID string) {
		jobID = job()
		runID = num(must(srv.Do(adminTok, "POST", "/api/2.2/jobs/run-now", map[string]any{"job_id": jsonNum(jobID)}), "run-now"), "run_id")
		// Wait for the run to end (this region has no compute: it fails fast).
		for i := 0; i < 200; i++ {
			r := srv.Do(adminTok, "GET", "/api/2.2/jobs/runs/get?run_id="+runID, nil)
			if st, _ := r.JSON(t)["state"].(map[string]any); st["life_cycle_state"] == "TERMINATED" || st["life_cycle_state"] == "INTERNAL_ERROR" {
				break
			}
			sleep()
		}
		return jobID, runID
	}
	scope := func() string {
		s := fmt.Sprintf("authz%d", next())
		must(srv.Do(adminTok, "POST", "/api/2.0/secrets/scopes/create", map[string]string{"scope": s}), "scope")
		must(srv.Do(adminTok, "POST", "/api/2.0/secrets/put", map[string]string{"scope": s, "key": "k", "string_value": "v"}), "secret")
		return s
	}
	scopeGrant := func(s, level string) func() {
		return func() {
			must(srv.Do(adminTok, "POST", "/api/2.0/secrets/acls/put", map[string]string{"scope": s, "principal": with.UserName, "permission": level}), "acl")
		}
	}
	user := func() string {
		return fmt.Sprint(must(srv.Do(adminTok, "POST", "/api/2.0/preview/scim/v2/Users", map[string]string{"userName": fmt.Sprintf("u%d@example.com", next())}), "user").JSON(t)["id"])
	}
	group := func() string {
		return fmt.Sprint(must(srv.Do(adminTok, "POST", "/api/2.0/preview/scim/v2/Groups", map[string]string{"displayName": fmt.Sprintf("g%d", next())}), "group").JSON(t)["id"])
	}
	sp := func() string {
		return fmt.Sprint(must(srv.Do(adminTok, "POST", "/api/2.0/preview/scim/v2/ServicePrincipals", map[string]string{"displayName": "sp"}), "sp").JSON(t)["id"])
	}
	spApp := func() string {
		return fmt.Sprint(must(srv.Do(adminTok, "POST", "/api/2.0/preview/scim/v2/ServicePrincipals", map[string]string{"displayName": "sp"}), "sp").JSON(t)["applicationId"])
	}
	adminToken := func() string {
		r := must(srv.Do(adminTok, "POST", "/api/2.0/token/create", map[string]string{"comment": "authz"}), "token")
		return fmt.Sprint(r.JSON(t)["token_info"].(map[string]any)["token_id"])
	}
	script := func() string {
		return fmt.Sprint(must(srv.Do(adminTok, "POST", "/api/2.0/global-init-scripts", map[string]string{"name": "s", "script": "ZWNobw=="}), "script").JSON(t)["script_id"])
	}
	dest := func() string {
		return fmt.Sprint(must(srv.Do(adminTok, "POST", "/api/2.0/notification-destinations", map[string]any{"display_name": "d",
			"config": map[string]any{"generic_webhook": map[string]string{"url": "https://127.0.0.1:1/hook"}}}), "destination").JSON(t)["id"])
	}
	dbfsFile := func() string {
		p := fmt.Sprintf("/authz/f%d", next())
		must(srv.Do(adminTok, "POST", "/api/2.0/dbfs/put", map[string]any{"path": p, "contents": "eA=="}), "dbfs put")
		return p
	}
	// Compute fixtures: a cluster in a given state, and a pool.
	cluster := func(state string) string {
		id := fmt.Sprint(must(srv.Do(adminTok, "POST", "/api/2.1/clusters/create", map[string]any{"cluster_name": "authz",
			"spark_version": "4.1.x-scala2.13", "node_type_id": "tandem.small", "num_workers": 0}), "cluster").JSON(t)["cluster_id"])
		if state == "TERMINATED" {
			must(srv.Do(adminTok, "POST", "/api/2.1/clusters/delete", map[string]any{"cluster_id": id}), "terminate")
		}
		for i := 0; i < 500 && state != ""; i++ {
			if srv.Do(adminTok, "GET", "/api/2.1/clusters/get?cluster_id="+id, nil).JSON(t)["state"] == state {
				break
			}
			sleep()
		}
		return id
	}
	pool := func() string {
		return fmt.Sprint(must(srv.Do(adminTok, "POST", "/api/2.0/instance-pools/create", map[string]any{
			"instance_pool_name": fmt.Sprintf("authz%d", next()), "node_type_id": "tandem.small"}), "pool").JSON(t)["instance_pool_id"])
	}
	entitle := func(name string) func() {
		return func() {
			must(srv.Do(adminTok, "PATCH", "/api/2.0/preview/scim/v2/Users/"+with.ID, map[string]any{
				"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
				"Operations": []map[string]any{{"op": "add", "path": "entitlements", "value": []map[string]string{{"value": name}}}}}), "entitle")
		}
	}
	clusterCall := func(method, name, level, state string, body func(id string) map[string]any) authzCase {
		return authzCase{method + " /api/2.1/clusters/" + name, level, func() call {
			id := cluster(state)
			c := call{method: method, path: "/api/2.1/clusters/" + name, grant: grant("clusters", id, level)}
			if body != nil {
				c.body = body(id)
			} else {
				c.path += "?cluster_id=" + id
			}
			return c
		}}
	}
	byID := func(id string) map[string]any { return map[string]any{"cluster_id": id} }
	spec := func(id string) map[string]any {
		return map[string]any{"cluster_id": id, "cluster_name": "e", "spark_version": "4.1.x-scala2.13", "node_type_id": "tandem.small"}
	}

	scimBody := map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "replace", "path": "displayName", "value": "x"}}}

	cases := []authzCase{
		// SCIM: everyone reads the directory; admins change it.
		{"GET /api/2.0/preview/scim/v2/Me", "open", func() call { return call{method: "GET", path: "/api/2.0/preview/scim/v2/Me"} }},
		{"GET /api/2.0/preview/scim/v2/Users", "open", func() call { return call{method: "GET", path: "/api/2.0/preview/scim/v2/Users"} }},
		{"GET /api/2.0/preview/scim/v2/Users/{id}", "open", func() call { return call{method: "GET", path: "/api/2.0/preview/scim/v2/Users/" + user()} }},
		{"POST /api/2.0/preview/scim/v2/Users", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/preview/scim/v2/Users", body: map[string]string{"userName": fmt.Sprintf("n%d@example.com", next())}}
		}},
		{"PUT /api/2.0/preview/scim/v2/Users/{id}", "admin", func() call {
			id := user()
			return call{method: "PUT", path: "/api/2.0/preview/scim/v2/Users/" + id, body: map[string]string{"displayName": "x"}}
		}},
		{"PATCH /api/2.0/preview/scim/v2/Users/{id}", "admin", func() call {
			return call{method: "PATCH", path: "/api/2.0/preview/scim/v2/Users/" + user(), body: scimBody}
		}},
		{"DELETE /api/2.0/preview/scim/v2/Users/{id}", "admin", func() call { return call{method: "DELETE", path: "/api/2.0/preview/scim/v2/Users/" + user()} }},
		{"GET /api/2.0/preview/scim/v2/Groups", "open", func() call { return call{method: "GET", path: "/api/2.0/preview/scim/v2/Groups"} }},
		{"GET /api/2.0/preview/scim/v2/Groups/{id}", "open", func() call { return call{method: "GET", path: "/api/2.0/preview/scim/v2/Groups/" + group()} }},
		{"POST /api/2.0/preview/scim/v2/Groups", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/preview/scim/v2/Groups", body: map[string]string{"displayName": fmt.Sprintf("ng%d", next())}}
		}},
		{"PUT /api/2.0/preview/scim/v2/Groups/{id}", "admin", func() call {
			return call{method: "PUT", path: "/api/2.0/preview/scim/v2/Groups/" + group(), body: map[string]string{"displayName": fmt.Sprintf("pg%d", next())}}
		}},
		{"PATCH /api/2.0/preview/scim/v2/Groups/{id}", "admin", func() call {
			return call{method: "PATCH", path: "/api/2.0/preview/scim/v2/Groups/" + group(), body: map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
				"Operations": []map[string]any{{"op": "replace", "path": "displayName", "value": fmt.Sprintf("x%d", next())}}}}
		}},
		{"DELETE /api/2.0/preview/scim/v2/Groups/{id}", "admin", func() call { return call{method: "DELETE", path: "/api/2.0/preview/scim/v2/Groups/" + group()} }},
		{"GET /api/2.0/preview/scim/v2/ServicePrincipals", "open", func() call { return call{method: "GET", path: "/api/2.0/preview/scim/v2/ServicePrincipals"} }},
		{"GET /api/2.0/preview/scim/v2/ServicePrincipals/{id}", "open", func() call {
			return call{method: "GET", path: "/api/2.0/preview/scim/v2/ServicePrincipals/" + sp()}
		}},
		{"POST /api/2.0/preview/scim/v2/ServicePrincipals", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/preview/scim/v2/ServicePrincipals", body: map[string]string{"displayName": "x"}}
		}},
		{"PUT /api/2.0/preview/scim/v2/ServicePrincipals/{id}", "admin", func() call {
			return call{method: "PUT", path: "/api/2.0/preview/scim/v2/ServicePrincipals/" + sp(), body: map[string]string{"displayName": "y"}}
		}},
		{"PATCH /api/2.0/preview/scim/v2/ServicePrincipals/{id}", "admin", func() call {
			return call{method: "PATCH", path: "/api/2.0/preview/scim/v2/ServicePrincipals/" + sp(), body: scimBody}
		}},
		{"DELETE /api/2.0/preview/scim/v2/ServicePrincipals/{id}", "admin", func() call {
			return call{method: "DELETE", path: "/api/2.0/preview/scim/v2/ServicePrincipals/" + sp()}
		}},

		// Tokens: everyone manages their own; token management is for admins.
		{"POST /api/2.0/token/create", "open", func() call { return call{method: "POST", path: "/api/2.0/token/create", body: map[string]string{}} }},
		{"GET /api/2.0/token/list", "open", func() call { return call{method: "GET", path: "/api/2.0/token/list"} }},
		{"POST /api/2.0/token/delete", "own", nil}, // checked below: a user deletes its own token, not another's
		{"GET /api/2.0/token-management/tokens", "admin", func() call { return call{method: "GET", path: "/api/2.0/token-management/tokens"} }},
		// Diagnostic settings, audit records and metrics: admins only.
		{"GET /api/2.0/tandem/diagnostic-settings", "admin", func() call { return call{method: "GET", path: "/api/2.0/tandem/diagnostic-settings"} }},
		{"GET /api/2.0/tandem/diagnostic-settings/{name}", "admin", func() call {
			return call{method: "GET", path: "/api/2.0/tandem/diagnostic-settings/default"}
		}},
		{"PUT /api/2.0/tandem/diagnostic-settings/{name}", "admin", func() call {
			return call{method: "PUT", path: "/api/2.0/tandem/diagnostic-settings/authz-put", body: map[string]any{
				"logs": []map[string]any{{"category": "ssh", "enabled": true}}, "storage_account": map[string]any{}}}
		}},
		{"DELETE /api/2.0/tandem/diagnostic-settings/{name}", "admin", func() call {
			must(srv.Do(adminTok, "PUT", "/api/2.0/tandem/diagnostic-settings/authz-del", map[string]any{
				"logs": []map[string]any{{"category": "repos", "enabled": true}}, "storage_account": map[string]any{}}), "setting")
			return call{method: "DELETE", path: "/api/2.0/tandem/diagnostic-settings/authz-del"}
		}},
		{"GET /api/2.0/tandem/audit/records", "admin", func() call { return call{method: "GET", path: "/api/2.0/tandem/audit/records?page_size=1"} }},
		{"GET /metrics", "admin", func() call { return call{method: "GET", path: "/metrics"} }},
		{"GET /api/2.0/tandem/metrics/prometheus", "admin", func() call { return call{method: "GET", path: "/api/2.0/tandem/metrics/prometheus"} }},
		{"GET /api/2.0/tandem/metrics/http-sd", "admin", func() call { return call{method: "GET", path: "/api/2.0/tandem/metrics/http-sd"} }},
		{"GET /api/2.0/token-management/tokens/{token_id}", "admin", func() call {
			return call{method: "GET", path: "/api/2.0/token-management/tokens/" + adminToken()}
		}},
		{"DELETE /api/2.0/token-management/tokens/{token_id}", "admin", func() call {
			return call{method: "DELETE", path: "/api/2.0/token-management/tokens/" + adminToken()}
		}},
		{"POST /api/2.0/token-management/on-behalf-of/tokens", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/token-management/on-behalf-of/tokens", body: map[string]string{"application_id": spApp()}}
		}},

		// Permissions API.
		{"GET /api/2.0/permissions/{type}/{id}", "CAN_READ", func() call {
			_, id := folder()
			return call{method: "GET", path: "/api/2.0/permissions/directories/" + id, grant: grant("directories", id, "CAN_READ")}
		}},
		{"GET /api/2.0/permissions/{type}/{id}/permissionLevels", "CAN_READ", func() call {
			_, id := folder()
			return call{method: "GET", path: "/api/2.0/permissions/directories/" + id + "/permissionLevels", grant: grant("directories", id, "CAN_READ")}
		}},
		{"PUT /api/2.0/permissions/{type}/{id}", "CAN_MANAGE", func() call {
			_, id := folder()
			return call{method: "PUT", path: "/api/2.0/permissions/directories/" + id, body: map[string]any{"access_control_list": []map[string]string{
				{"user_name": with.UserName, "permission_level": "CAN_MANAGE"}}}, grant: grant("directories", id, "CAN_MANAGE")}
		}},
		{"PATCH /api/2.0/permissions/{type}/{id}", "CAN_MANAGE", func() call {
			_, id := folder()
			return call{method: "PATCH", path: "/api/2.0/permissions/directories/" + id, body: map[string]any{"access_control_list": []map[string]string{
				{"group_name": "users", "permission_level": "CAN_READ"}}}, grant: grant("directories", id, "CAN_MANAGE")}
		}},

		// Workspace.
		{"GET /api/2.0/workspace/list", "CAN_READ", func() call {
			p, id := folder()
			return call{method: "GET", path: "/api/2.0/workspace/list?path=" + q(p), grant: grant("directories", id, "CAN_READ")}
		}},
		{"GET /api/2.0/workspace/get-status", "CAN_READ", func() call {
			p, id := folder()
			return call{method: "GET", path: "/api/2.0/workspace/get-status?path=" + q(p+"/nb"), grant: grant("directories", id, "CAN_READ")}
		}},
		{"GET /api/2.0/workspace/export", "CAN_READ", func() call {
			p, id := folder()
			return call{method: "GET", path: "/api/2.0/workspace/export?path=" + q(p+"/nb"), grant: grant("directories", id, "CAN_READ")}
		}},
		{"POST /api/2.0/workspace/mkdirs", "CAN_EDIT", func() call {
			p, id := folder()
			return call{method: "POST", path: "/api/2.0/workspace/mkdirs", body: map[string]string{"path": p + "/sub"}, grant: grant("directories", id, "CAN_EDIT")}
		}},
		{"POST /api/2.0/workspace/import", "CAN_EDIT", func() call {
			p, id := folder()
			return call{method: "POST", path: "/api/2.0/workspace/import", body: map[string]string{"path": p + "/new", "language": "SQL", "content": "c2VsZWN0IDE="},
				grant: grant("directories", id, "CAN_EDIT")}
		}},
		{"POST /api/2.0/workspace-files/import-file/{path...}", "CAN_EDIT", func() call {
			p, id := folder()
			return call{method: "POST", path: "/api/2.0/workspace-files/import-file" + p + "/f.txt", body: "hello", grant: grant("directories", id, "CAN_EDIT")}
		}},
		{"POST /api/2.0/workspace/delete", "CAN_EDIT", func() call {
			p, id := folder()
			return call{method: "POST", path: "/api/2.0/workspace/delete", body: map[string]any{"path": p, "recursive": true}, grant: grant("directories", id, "CAN_EDIT")}
		}},

		// DBFS has no per-file access control, as in Databricks.
		{"GET /api/2.0/dbfs/get-status", "open", func() call { return call{method: "GET", path: "/api/2.0/dbfs/get-status?path=" + dbfsFile()} }},
		{"GET /api/2.0/dbfs/list", "open", func() call { dbfsFile(); return call{method: "GET", path: "/api/2.0/dbfs/list?path=/authz"} }},
		{"GET /api/2.0/dbfs/read", "open", func() call { return call{method: "GET", path: "/api/2.0/dbfs/read?path=" + dbfsFile()} }},
		{"POST /api/2.0/dbfs/mkdirs", "open", func() call {
			return call{method: "POST", path: "/api/2.0/dbfs/mkdirs", body: map[string]string{"path": fmt.Sprintf("/authz/d%d", next())}}
		}},
		{"POST /api/2.0/dbfs/delete", "open", func() call {
			return call{method: "POST", path: "/api/2.0/dbfs/delete", body: map[string]string{"path": dbfsFile()}}
		}},
		{"POST /api/2.0/dbfs/move", "open", func() call {
			return call{method: "POST", path: "/api/2.0/dbfs/move", body: map[string]string{"source_path": dbfsFile(), "destination_path": fmt.Sprintf("/authz/m%d", next())}}
		}},
		{"POST /api/2.0/dbfs/put", "open", func() call {
			return call{method: "POST", path: "/api/2.0/dbfs/put", body: map[string]string{"path": fmt.Sprintf("/authz/p%d", next()), "contents": "eA=="}}
		}},
		{"POST /api/2.0/dbfs/create", "open", func() call {
			return call{method: "POST", path: "/api/2.0/dbfs/create", body: map[string]string{"path": fmt.Sprintf("/authz/c%d", next())}}
		}},
		{"POST /api/2.0/dbfs/add-block", "own", nil}, // handles belong to their creator: checked in the DBFS tests
		{"POST /api/2.0/dbfs/close", "own", nil},
		{"GET /api/2.0/tandem/dbfs/versions", "open", func() call { return call{method: "GET", path: "/api/2.0/tandem/dbfs/versions?path=" + dbfsFile()} }},
		{"POST /api/2.0/tandem/dbfs/restore", "open", func() call {
			return call{method: "POST", path: "/api/2.0/tandem/dbfs/restore", body: map[string]any{"path": dbfsFile(), "timestamp": time.Now().UnixMilli()}}
		}},

		// Secrets.
		{"POST /api/2.0/secrets/scopes/create", "open", func() call {
			return call{method: "POST", path: "/api/2.0/secrets/scopes/create", body: map[string]string{"scope": fmt.Sprintf("new%d", next())}}
		}},
		{"GET /api/2.0/secrets/scopes/list", "open", func() call { return call{method: "GET", path: "/api/2.0/secrets/scopes/list"} }},
		{"POST /api/2.0/secrets/scopes/delete", "MANAGE", func() call {
			s := scope()
			return call{method: "POST", path: "/api/2.0/secrets/scopes/delete", body: map[string]string{"scope": s}, grant: scopeGrant(s, "MANAGE")}
		}},
		{"POST /api/2.0/secrets/put", "WRITE", func() call {
			s := scope()
			return call{method: "POST", path: "/api/2.0/secrets/put", body: map[string]string{"scope": s, "key": "k2", "string_value": "v"}, grant: scopeGrant(s, "WRITE")}
		}},
		{"POST /api/2.0/secrets/delete", "WRITE", func() call {
			s := scope()
			return call{method: "POST", path: "/api/2.0/secrets/delete", body: map[string]string{"scope": s, "key": "k"}, grant: scopeGrant(s, "WRITE")}
		}},
		{"GET /api/2.0/secrets/list", "READ", func() call {
			s := scope()
			return call{method: "GET", path: "/api/2.0/secrets/list?scope=" + s, grant: scopeGrant(s, "READ")}
		}},
		{"GET /api/2.0/secrets/get", "READ", func() call {
			s := scope()
			return call{method: "GET", path: "/api/2.0/secrets/get?scope=" + s + "&key=k", grant: scopeGrant(s, "READ")}
		}},
		{"POST /api/2.0/secrets/acls/put", "MANAGE", func() call {
			s := scope()
			return call{method: "POST", path: "/api/2.0/secrets/acls/put", body: map[string]string{"scope": s, "principal": "users", "permission": "READ"}, grant: scopeGrant(s, "MANAGE")}
		}},
		{"POST /api/2.0/secrets/acls/delete", "MANAGE", func() call {
			s := scope()
			return call{method: "POST", path: "/api/2.0/secrets/acls/delete", body: map[string]string{"scope": s, "principal": "admin@tandem.local"}, grant: scopeGrant(s, "MANAGE")}
		}},
		{"GET /api/2.0/secrets/acls/list", "MANAGE", func() call {
			s := scope()
			return call{method: "GET", path: "/api/2.0/secrets/acls/list?scope=" + s, grant: scopeGrant(s, "MANAGE")}
		}},
		{"GET /api/2.0/secrets/acls/get", "MANAGE", func() call {
			s := scope()
			return call{method: "GET", path: "/api/2.0/secrets/acls/get?scope=" + s + "&principal=admin@tandem.local", grant: scopeGrant(s, "MANAGE")}
		}},

		// Global init scripts: admins only.
		{"POST /api/2.0/global-init-scripts", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/global-init-scripts", body: map[string]string{"name": "x", "script": "ZWNobw=="}}
		}},
		{"GET /api/2.0/global-init-scripts", "admin", func() call { return call{method: "GET", path: "/api/2.0/global-init-scripts"} }},
		{"GET /api/2.0/global-init-scripts/{script_id}", "admin", func() call { return call{method: "GET", path: "/api/2.0/global-init-scripts/" + script()} }},
		{"PATCH /api/2.0/global-init-scripts/{script_id}", "admin", func() call {
			return call{method: "PATCH", path: "/api/2.0/global-init-scripts/" + script(), body: map[string]string{"name": "y", "script": "ZWNobw=="}}
		}},
		{"DELETE /api/2.0/global-init-scripts/{script_id}", "admin", func() call { return call{method: "DELETE", path: "/api/2.0/global-init-scripts/" + script()} }},

		// The storage account's admin API: admins only. Failover and the
		// geo-replication status need a geo-redundant account; the storage
		// tests cover their authorization.
		{"GET /api/2.0/tandem/storage/account", "admin", func() call { return call{method: "GET", path: "/api/2.0/tandem/storage/account"} }},
		{"PATCH /api/2.0/tandem/storage/account", "admin", func() call {
			return call{method: "PATCH", path: "/api/2.0/tandem/storage/account", body: map[string]any{"redundancy": "LRS"}}
		}},
		{"GET /api/2.0/tandem/storage/health", "admin", func() call { return call{method: "GET", path: "/api/2.0/tandem/storage/health"} }},
		{"POST /api/2.0/tandem/storage/rotate-key", "admin", func() call { return call{method: "POST", path: "/api/2.0/tandem/storage/rotate-key"} }},
		{"POST /api/2.0/tandem/storage/scrub", "admin", func() call { return call{method: "POST", path: "/api/2.0/tandem/storage/scrub"} }},
		{"GET /api/2.0/tandem/storage/geo-replication", "admin", nil},
		{"POST /api/2.0/tandem/storage/failover", "admin", nil},
		{"GET /api/2.0/tandem/storage/objects/list", "admin", func() call { return call{method: "GET", path: "/api/2.0/tandem/storage/objects/list?prefix=x"} }},
		{"GET /api/2.0/tandem/storage/objects/read", "admin", func() call {
			return call{method: "GET", path: "/api/2.0/tandem/storage/objects/read?name=" + q(storageObject())}
		}},
		{"GET /api/2.0/tandem/storage/secondary/list", "admin", nil},
		{"GET /api/2.0/tandem/storage/secondary/read", "admin", nil},

		// Notification destinations: admins change them, everyone sees them.
		{"POST /api/2.0/notification-destinations", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/notification-destinations", body: map[string]any{"display_name": "d",
				"config": map[string]any{"generic_webhook": map[string]string{"url": "https://127.0.0.1:1/h"}}}}
		}},
		{"GET /api/2.0/notification-destinations", "open", func() call { return call{method: "GET", path: "/api/2.0/notification-destinations"} }},
		{"GET /api/2.0/notification-destinations/{id}", "open", func() call { return call{method: "GET", path: "/api/2.0/notification-destinations/" + dest()} }},
		{"PATCH /api/2.0/notification-destinations/{id}", "admin", func() call {
			return call{method: "PATCH", path: "/api/2.0/notification-destinations/" + dest(), body: map[string]string{"display_name": "e"}}
		}},
		{"DELETE /api/2.0/notification-destinations/{id}", "admin", func() call { return call{method: "DELETE", path: "/api/2.0/notification-destinations/" + dest()} }},

		// Jobs (2.2; the 2.1 and 2.0 aliases share the handlers).
		{"POST /api/2.2/jobs/create", "open", func() call {
			return call{method: "POST", path: "/api/2.2/jobs/create", body: map[string]any{"name": "mine"}}
		}},
		{"GET /api/2.2/jobs/list", "open", func() call { return call{method: "GET", path: "/api/2.2/jobs/list"} }},
		{"GET /api/2.2/jobs/get", "CAN_VIEW", func() call {
			id := job()
			return call{method: "GET", path: "/api/2.2/jobs/get?job_id=" + id, grant: grant("jobs", id, "CAN_VIEW")}
		}},
		{"POST /api/2.2/jobs/reset", "CAN_MANAGE", func() call {
			id := job()
			return call{method: "POST", path: "/api/2.2/jobs/reset", body: map[string]any{"job_id": jsonNum(id), "new_settings": map[string]string{"name": "r"}}, grant: grant("jobs", id, "CAN_MANAGE")}
		}},
		{"POST /api/2.2/jobs/update", "CAN_MANAGE", func() call {
			id := job()
			return call{method: "POST", path: "/api/2.2/jobs/update", body: map[string]any{"job_id": jsonNum(id), "new_settings": map[string]string{"name": "u"}}, grant: grant("jobs", id, "CAN_MANAGE")}
		}},
		{"POST /api/2.2/jobs/delete", "CAN_MANAGE", func() call {
			id := job()
			return call{method: "POST", path: "/api/2.2/jobs/delete", body: map[string]any{"job_id": jsonNum(id)}, grant: grant("jobs", id, "CAN_MANAGE")}
		}},
		{"POST /api/2.2/jobs/run-now", "CAN_MANAGE_RUN", func() call {
			id := job()
			return call{method: "POST", path: "/api/2.2/jobs/run-now", body: map[string]any{"job_id": jsonNum(id)}, grant: grant("jobs", id, "CAN_MANAGE_RUN")}
		}},
		{"POST /api/2.2/jobs/runs/submit", "open", func() call {
			return call{method: "POST", path: "/api/2.2/jobs/runs/submit", body: map[string]any{"run_name": "s", "tasks": []map[string]any{{
				"task_key": "t", "new_cluster": map[string]any{"num_workers": 1}, "spark_python_task": map[string]string{"python_file": "/x.py"}}}}}
		}},
		{"GET /api/2.2/jobs/runs/get", "CAN_VIEW", func() call {
			j, r := run()
			return call{method: "GET", path: "/api/2.2/jobs/runs/get?run_id=" + r, grant: grant("jobs", j, "CAN_VIEW")}
		}},
		{"GET /api/2.2/jobs/runs/list", "open", func() call { return call{method: "GET", path: "/api/2.2/jobs/runs/list"} }},
		{"GET /api/2.2/jobs/runs/get-output", "CAN_VIEW", func() call {
			j, r := run()
			return call{method: "GET", path: "/api/2.2/jobs/runs/get-output?run_id=" + r, grant: grant("jobs", j, "CAN_VIEW")}
		}},
		{"POST /api/2.2/jobs/runs/cancel", "CAN_MANAGE_RUN", func() call {
			j, r := run()
			return call{method: "POST", path: "/api/2.2/jobs/runs/cancel", body: map[string]any{"run_id": jsonNum(r)}, grant: grant("jobs", j, "CAN_MANAGE_RUN")}
		}},
		{"POST /api/2.2/jobs/runs/cancel-all", "CAN_MANAGE_RUN", func() call {
			j := job()
			return call{method: "POST", path: "/api/2.2/jobs/runs/cancel-all", body: map[string]any{"job_id": jsonNum(j)}, grant: grant("jobs", j, "CAN_MANAGE_RUN")}
		}},
		{"POST /api/2.2/jobs/runs/delete", "CAN_MANAGE_RUN", func() call {
			j, r := run()
			return call{method: "POST", path: "/api/2.2/jobs/runs/delete", body: map[string]any{"run_id": jsonNum(r)}, grant: grant("jobs", j, "CAN_MANAGE_RUN")}
		}},
		{"POST /api/2.2/jobs/runs/repair", "CAN_MANAGE_RUN", func() call {
			j, r := run()
			return call{method: "POST", path: "/api/2.2/jobs/runs/repair", body: map[string]any{"run_id": jsonNum(r), "rerun_all_failed_tasks": true}, grant: grant("jobs", j, "CAN_MANAGE_RUN")}
		}},

		// Clusters (2.1; the 2.0 aliases share the handlers).
		{"POST /api/2.1/clusters/create", "allow-cluster-create", func() call {
			return call{method: "POST", path: "/api/2.1/clusters/create", grant: entitle("allow-cluster-create"), body: map[string]any{
				"spark_version": "4.1.x-scala2.13", "node_type_id": "tandem.small"}}
		}},
		clusterCall("POST", "edit", "CAN_MANAGE", "TERMINATED", spec),
		clusterCall("POST", "update", "CAN_MANAGE", "TERMINATED", func(id string) map[string]any {
			return map[string]any{"cluster_id": id, "update_mask": "cluster_name", "cluster": map[string]string{"cluster_name": "u"}}
		}),
		clusterCall("POST", "start", "CAN_RESTART", "TERMINATED", byID),
		clusterCall("POST", "restart", "CAN_RESTART", "RUNNING", byID),
		clusterCall("POST", "delete", "CAN_RESTART", "", byID),
		clusterCall("POST", "permanent-delete", "CAN_MANAGE", "", byID),
		clusterCall("POST", "resize", "CAN_MANAGE", "RUNNING", func(id string) map[string]any { return map[string]any{"cluster_id": id, "num_workers": 1} }),
		clusterCall("POST", "pin", "admin", "", byID),
		clusterCall("POST", "unpin", "admin", "", byID),
		clusterCall("POST", "change-owner", "admin", "", func(id string) map[string]any {
			return map[string]any{"cluster_id": id, "owner_username": "with@example.com"}
		}),
		clusterCall("GET", "get", "CAN_ATTACH_TO", "", nil),
		clusterCall("POST", "events", "CAN_ATTACH_TO", "", byID),
		{"GET /api/2.1/clusters/list", "open", func() call { return call{method: "GET", path: "/api/2.1/clusters/list"} }},
		{"GET /api/2.1/clusters/list-node-types", "open", func() call { return call{method: "GET", path: "/api/2.1/clusters/list-node-types"} }},
		{"GET /api/2.1/clusters/spark-versions", "open", func() call { return call{method: "GET", path: "/api/2.1/clusters/spark-versions"} }},
		{"GET /api/2.1/clusters/list-zones", "open", func() call { return call{method: "GET", path: "/api/2.1/clusters/list-zones"} }},
		{"GET /api/2.0/tandem/clusters/driver-logs", "CAN_ATTACH_TO", func() call {
			id := cluster("")
			return call{method: "GET", path: "/api/2.0/tandem/clusters/driver-logs?cluster_id=" + id, grant: grant("clusters", id, "CAN_ATTACH_TO")}
		}},
		// The usage API answers every user with the clusters they may
		// attach to; naming a cluster needs CAN_ATTACH_TO on it.
		{"GET /api/2.0/tandem/usage", "CAN_ATTACH_TO", func() call {
			id := cluster("")
			return call{method: "GET", path: "/api/2.0/tandem/usage?group_by=cluster&cluster_id=" + id, grant: grant("clusters", id, "CAN_ATTACH_TO")}
		}},
		{"GET /api/2.0/tandem/metrics/history", "CAN_ATTACH_TO", func() call {
			id := cluster("")
			return call{method: "GET", path: "/api/2.0/tandem/metrics/history?metric=tandem_node_memory_rss_bytes&cluster_id=" + id, grant: grant("clusters", id, "CAN_ATTACH_TO")}
		}},
		{"/driver-proxy/o/{org}/{cluster_id}/sparkui/{rest...}", "CAN_ATTACH_TO", func() call {
			id := cluster("RUNNING")
			return call{method: "GET", path: "/driver-proxy/o/0/" + id + "/sparkui/json/", grant: grant("clusters", id, "CAN_ATTACH_TO")}
		}},
		{"/driver-proxy/o/{org}/{cluster_id}/sparkui", "CAN_ATTACH_TO", func() call {
			id := cluster("RUNNING")
			return call{method: "GET", path: "/driver-proxy/o/0/" + id + "/sparkui", grant: grant("clusters", id, "CAN_ATTACH_TO")}
		}},

		// Instance pools.
		{"POST /api/2.0/instance-pools/create", "allow-instance-pool-create", func() call {
			return call{method: "POST", path: "/api/2.0/instance-pools/create", grant: entitle("allow-instance-pool-create"),
				body: map[string]any{"instance_pool_name": fmt.Sprintf("p%d", next()), "node_type_id": "tandem.small"}}
		}},
		{"POST /api/2.0/instance-pools/edit", "CAN_MANAGE", func() call {
			id := pool()
			return call{method: "POST", path: "/api/2.0/instance-pools/edit", grant: grant("instance-pools", id, "CAN_MANAGE"), body: map[string]any{
				"instance_pool_id": id, "instance_pool_name": fmt.Sprintf("e%d", next()), "node_type_id": "tandem.small", "min_idle_instances": 0}}
		}},
		{"POST /api/2.0/instance-pools/delete", "CAN_MANAGE", func() call {
			id := pool()
			return call{method: "POST", path: "/api/2.0/instance-pools/delete", grant: grant("instance-pools", id, "CAN_MANAGE"), body: map[string]any{"instance_pool_id": id}}
		}},
		{"GET /api/2.0/instance-pools/get", "CAN_ATTACH_TO", func() call {
			id := pool()
			return call{method: "GET", path: "/api/2.0/instance-pools/get?instance_pool_id=" + id, grant: grant("instance-pools", id, "CAN_ATTACH_TO")}
		}},
		{"GET /api/2.0/instance-pools/list", "open", func() call { return call{method: "GET", path: "/api/2.0/instance-pools/list"} }},

		// Metrics and disaster recovery: admins only. Drain and seal change
		// the region's role, so each call starts from an active region and
		// resume, last, leaves it active.
		{"GET /api/2.0/tandem/dr/status", "admin", func() call { return call{method: "GET", path: "/api/2.0/tandem/dr/status?assets=true"} }},
		{"GET /api/2.0/tandem/dr/reports", "admin", func() call { return call{method: "GET", path: "/api/2.0/tandem/dr/reports"} }},
		{"POST /api/2.0/tandem/dr/reports", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/tandem/dr/reports", body: map[string]any{"kind": "test", "started": next(), "report": map[string]any{}}}
		}},
		{"POST /api/2.0/tandem/dr/lease", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/tandem/dr/lease", body: map[string]any{"holder": fmt.Sprintf("authz-%d", next()), "release": true}}
		}},
		{"POST /api/2.0/tandem/dr/promote", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/tandem/dr/promote", body: map[string]any{"planned": true}}
		}},
		{"POST /api/2.0/tandem/dr/drain", "admin", func() call {
			must(srv.Do(adminTok, "POST", "/api/2.0/tandem/dr/resume", map[string]any{}), "resume")
			return call{method: "POST", path: "/api/2.0/tandem/dr/drain", body: map[string]any{"to_region": "elsewhere"}}
		}},
		{"POST /api/2.0/tandem/dr/seal", "admin", func() call {
			must(srv.Do(adminTok, "POST", "/api/2.0/tandem/dr/resume", map[string]any{}), "resume")
			return call{method: "POST", path: "/api/2.0/tandem/dr/seal", body: map[string]any{}}
		}},
		{"POST /api/2.0/tandem/dr/resume", "admin", func() call {
			return call{method: "POST", path: "/api/2.0/tandem/dr/resume", body: map[string]any{}}
		}},
	}

	// Every route the server mounts is in the matrix (or public).
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.route] = true
	}
	alias := regexp.MustCompile(`/api/2\.[01]/jobs/`)
	clusterAlias := regexp.MustCompile(`/api/2\.0/clusters/`)
	var missing []string
	for _, rt := range srv.Routes() {
		if rt.Public {
			continue
		}
		p := alias.ReplaceAllString(rt.Pattern, "/api/2.2/jobs/")
		p = clusterAlias.ReplaceAllString(p, "/api/2.1/clusters/")
		if !covered[p] {
			missing = append(missing, rt.Pattern)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("endpoints missing from the authorization matrix:\n%s", strings.Join(missing, "\n"))
	}

	for _, c := range cases {
		if c.prepare == nil {
			continue
		}
		t.Run(c.route, func(t *testing.T) {
			// An admin may.
			a := c.prepare()
			if r := srv.Do(adminTok, a.method, a.path, a.body); r.Status >= 400 {
				t.Errorf("admin: %d %s", r.Status, r.Body)
			}
			// A user with the needed level (or another admin, for admin-only
			// endpoints) may.
			w := c.prepare()
			tok := with.Token
			if c.need == "admin" {
				tok = admin2.Token
			} else if w.grant != nil {
				w.grant()
			}
			if r := srv.Do(tok, w.method, w.path, w.body); r.Status >= 400 {
				t.Errorf("user with %s: %d %s", c.need, r.Status, r.Body)
			}
			// A user without it may not (unless the endpoint is open to all).
			n := c.prepare()
			r := srv.Do(without.Token, n.method, n.path, n.body)
			if c.need == "open" {
				if r.Status >= 400 {
					t.Errorf("user on an open endpoint: %d %s", r.Status, r.Body)
				}
			} else if r.Status != http.StatusForbidden || r.JSON(t)["error_code"] != "PERMISSION_DENIED" {
				t.Errorf("user without %s: %d %s, want 403 PERMISSION_DENIED", c.need, r.Status, r.Body)
			}
		})
	}

	// Tokens belong to their owner: another user's token id is not found.
	tok := srv.Do(with.Token, "POST", "/api/2.0/token/create", map[string]string{})
	id := tok.JSON(t)["token_info"].(map[string]any)["token_id"]
	if r := srv.Do(without.Token, "POST", "/api/2.0/token/delete", map[string]any{"token_id": id}); r.Status != 404 {
		t.Errorf("deleting another user's token: %d %s", r.Status, r.Body)
	}
	if r := srv.Do(with.Token, "POST", "/api/2.0/token/delete", map[string]any{"token_id": id}); r.Status != 200 {
		t.Errorf("deleting one's own token: %d %s", r.Status, r.Body)
	}
}

// jsonNum makes a decimal id a JSON number in request bodies.
type jsonNum string

func (n jsonNum) MarshalJSON() ([]byte, error) { return []byte(n), nil }

func sleep() { time.Sleep(20 * time.Millisecond) }
