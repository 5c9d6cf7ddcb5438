package dr_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/service/workspace"

	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/server/servertest"
	"github.com/tandemdata/tandem/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var ctx = context.Background()

// syncBuffer is a log sink that tests read while regions write to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func must(t *testing.T, r servertest.Response, what string) servertest.Response {
	t.Helper()
	if r.Status >= 400 {
		t.Fatalf("%s: %d %s", what, r.Status, r.Body)
	}
	return r
}

func status(t *testing.T, srv *servertest.Server) dr.Status {
	t.Helper()
	r := must(t, srv.Do(srv.AdminToken, "GET", dr.StatusPath+"?assets=true", nil), "dr status")
	var st dr.Status
	if err := json.Unmarshal(r.Body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitCaughtUp waits until the secondary has applied the primary's last change.
func waitCaughtUp(t *testing.T, p *servertest.Pair) dr.Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		want, _ := p.Primary.RawStore.LastSeq(ctx)
		got, _ := p.Secondary.RawStore.LastSeq(ctx)
		if got == want {
			return status(t, p.Secondary)
		}
		if time.Now().After(deadline) {
			t.Fatalf("secondary at %d, primary at %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func num(t *testing.T, r servertest.Response, field string) string {
	t.Helper()
	return fmt.Sprintf("%.0f", r.JSON(t)[field].(float64))
}

// seed writes one of each replicated asset on the primary and returns the
// ids to look for.
type seeded struct {
	userID, groupID, spID, jobID, scriptID, notebookID string
}

const secretValue = "correct-horse-battery-staple-9f3e"

func seed(t *testing.T, srv *servertest.Server) seeded {
	t.Helper()
	tok := srv.AdminToken
	var s seeded
	s.userID = fmt.Sprint(must(t, srv.Do(tok, "POST", "/api/2.0/preview/scim/v2/Users", map[string]string{"userName": "ada@example.com"}), "user").JSON(t)["id"])
	s.groupID = fmt.Sprint(must(t, srv.Do(tok, "POST", "/api/2.0/preview/scim/v2/Groups", map[string]any{"displayName": "analysts",
		"members": []map[string]string{{"value": s.userID}}}), "group").JSON(t)["id"])
	s.spID = fmt.Sprint(must(t, srv.Do(tok, "POST", "/api/2.0/preview/scim/v2/ServicePrincipals", map[string]string{"displayName": "etl-bot"}), "sp").JSON(t)["id"])
	must(t, srv.Do(tok, "POST", "/api/2.0/workspace/mkdirs", map[string]string{"path": "/Shared/dr"}), "mkdirs")
	must(t, srv.Do(tok, "POST", "/api/2.0/workspace/import", map[string]any{"path": "/Shared/dr/etl", "language": "PYTHON",
		"content": base64.StdEncoding.EncodeToString([]byte("print('etl')"))}), "import")
	s.notebookID = num(t, must(t, srv.Do(tok, "GET", "/api/2.0/workspace/get-status?path=/Shared/dr/etl", nil), "status"), "object_id")
	must(t, srv.Do(tok, "PATCH", "/api/2.0/permissions/notebooks/"+s.notebookID, map[string]any{"access_control_list": []map[string]string{
		{"group_name": "analysts", "permission_level": "CAN_RUN"}}}), "acl")
	must(t, srv.Do(tok, "POST", "/api/2.0/secrets/scopes/create", map[string]string{"scope": "warehouse"}), "scope")
	must(t, srv.Do(tok, "POST", "/api/2.0/secrets/put", map[string]string{"scope": "warehouse", "key": "password", "string_value": secretValue}), "secret")
	s.scriptID = fmt.Sprint(must(t, srv.Do(tok, "POST", "/api/2.0/global-init-scripts", map[string]any{"name": "proxy",
		"script": base64.StdEncoding.EncodeToString([]byte("echo hi")), "enabled": true}), "script").JSON(t)["script_id"])
	s.jobID = num(t, must(t, srv.Do(tok, "POST", "/api/2.2/jobs/create", map[string]any{"name": "nightly", "max_concurrent_runs": 3,
		"schedule": map[string]string{"quartz_cron_expression": "0 0 3 * * ?", "timezone_id": "UTC", "pause_status": "UNPAUSED"},
		"tasks": []map[string]any{{"task_key": "t", "new_cluster": map[string]any{"num_workers": 1},
			"notebook_task": map[string]string{"notebook_path": "/Shared/dr/etl"}}}}), "job"), "job_id")
	return s
}

func TestSecondaryReplicatesEveryAssetInPassivePosture(t *testing.T) {
	var logs syncBuffer
	p := servertest.StartPair(t, servertest.WithLogOutput(&logs))
	s := seed(t, p.Primary)
	waitCaughtUp(t, p)
	sec, tok := p.Secondary, p.Secondary.AdminToken

	// The same ids mean the same objects in the secondary.
	for _, path := range []string{"/api/2.0/preview/scim/v2/Users/" + s.userID, "/api/2.0/preview/scim/v2/Groups/" + s.groupID,
		"/api/2.0/preview/scim/v2/ServicePrincipals/" + s.spID, "/api/2.0/global-init-scripts/" + s.scriptID,
		"/api/2.2/jobs/get?job_id=" + s.jobID, "/api/2.0/permissions/notebooks/" + s.notebookID} {
		must(t, sec.Do(tok, "GET", path, nil), path)
	}
	w := sec.SDK(tok)
	st, err := w.Workspace.GetStatusByPath(ctx, "/Shared/dr/etl")
	if err != nil || fmt.Sprint(st.ObjectId) != s.notebookID || st.Language != workspace.LanguagePython {
		t.Errorf("notebook in the secondary: %+v, %v", st, err)
	}
	acl := must(t, sec.Do(tok, "GET", "/api/2.0/permissions/notebooks/"+s.notebookID, nil), "acl").Body
	if !bytes.Contains(acl, []byte(`"analysts"`)) || !bytes.Contains(acl, []byte("CAN_RUN")) {
		t.Errorf("notebook ACL in the secondary: %s", acl)
	}
	// Secrets were copied encrypted and open with the shared key.
	got := must(t, sec.Do(tok, "GET", "/api/2.0/secrets/get?scope=warehouse&key=password", nil), "secret get").JSON(t)
	if v, _ := base64.StdEncoding.DecodeString(fmt.Sprint(got["value"])); string(v) != secretValue {
		t.Errorf("secret in the secondary = %q", v)
	}
	// The job is in the passive posture; the primary's is untouched.
	job := must(t, sec.Do(tok, "GET", "/api/2.2/jobs/get?job_id="+s.jobID, nil), "job").JSON(t)["settings"].(map[string]any)
	if job["max_concurrent_runs"] != 0.0 || job["schedule"].(map[string]any)["pause_status"] != "PAUSED" {
		t.Errorf("job in the secondary: %v", job)
	}
	pjob := must(t, p.Primary.Do(tok, "GET", "/api/2.2/jobs/get?job_id="+s.jobID, nil), "job").JSON(t)["settings"].(map[string]any)
	if pjob["max_concurrent_runs"] != 3.0 || pjob["schedule"].(map[string]any)["pause_status"] != "UNPAUSED" {
		t.Errorf("job in the primary: %v", pjob)
	}

	// Writes are refused with the active region's name; reads are served.
	r := sec.Do(tok, "POST", "/api/2.0/workspace/mkdirs", map[string]string{"path": "/Shared/nope"})
	if r.Status != 400 || r.JSON(t)["error_code"] != "INVALID_STATE" || !strings.Contains(string(r.Body), "primary") || r.Header.Get(dr.HeaderRefused) != "passive" {
		t.Errorf("write on the secondary: %d %s %v", r.Status, r.Body, r.Header)
	}

	// Deletes replicate.
	must(t, p.Primary.Do(tok, "DELETE", "/api/2.0/global-init-scripts/"+s.scriptID, nil), "delete script")
	must(t, p.Primary.Do(tok, "POST", "/api/2.0/workspace/delete", map[string]any{"path": "/Shared/dr", "recursive": true}), "delete folder")
	waitCaughtUp(t, p)
	if r := sec.Do(tok, "GET", "/api/2.0/global-init-scripts/"+s.scriptID, nil); r.Status != 404 {
		t.Errorf("deleted script in the secondary: %d", r.Status)
	}
	if r := sec.Do(tok, "GET", "/api/2.0/workspace/get-status?path=/Shared/dr/etl", nil); r.Status != 404 {
		t.Errorf("deleted notebook in the secondary: %d", r.Status)
	}

	// Status on both sides: roles, epoch, lag, and the same asset counts.
	ps, ss := status(t, p.Primary), waitCaughtUp(t, p)
	if ps.Role != dr.Active || ps.Epoch != 1 || ss.Role != dr.Passive || ss.Epoch != 1 || ss.ActiveRegion != "primary" {
		t.Errorf("roles: primary %s@%d, secondary %s@%d (active %s)", ps.Role, ps.Epoch, ss.Role, ss.Epoch, ss.ActiveRegion)
	}
	if ss.Replication == nil || !ss.Replication.LinkUp || ss.Replication.LagChanges != 0 || !ss.Replication.KeysShared {
		t.Errorf("secondary replication: %+v", ss.Replication)
	}
	if fmt.Sprint(ps.Assets) != fmt.Sprint(ss.Assets) {
		t.Errorf("assets: primary %v, secondary %v", ps.Assets, ss.Assets)
	}

	// The secret value never travels or is logged in clear.
	stream := changesAsPeer(t, p)
	for _, needle := range []string{secretValue, base64.StdEncoding.EncodeToString([]byte(secretValue))} {
		if strings.Contains(stream, needle) {
			t.Errorf("the replication stream holds the secret value (%q)", needle)
		}
		if strings.Contains(logs.String(), needle) {
			t.Errorf("a region's log holds the secret value")
		}
		for _, dir := range []string{p.PrimaryDir, p.SecondaryDir} {
			filepath.Walk(filepath.Join(dir, "audit"), func(path string, info os.FileInfo, err error) error {
				if err == nil && !info.IsDir() {
					if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(needle)) {
						t.Errorf("audit file %s holds the secret value", path)
					}
				}
				return nil
			})
		}
	}
	if !strings.Contains(stream, `"secrets.secret"`) {
		t.Errorf("the captured stream has no secret document: the check above proves nothing")
	}
}

// changesAsPeer reads the primary's whole change log as the secondary
// does, with a client certificate of the secondary's CA, and returns the
// bytes on the wire (inside TLS).
func changesAsPeer(t *testing.T, p *servertest.Pair) string {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(filepath.Join(p.SecondaryDir, "tls"), "")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.IssueClient("tandem peer secondary", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := iss.TLS()
	roots, _ := pki.LoadPool(p.Primary.CAFile)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
	resp, err := client.Get(p.Primary.URL + "/api/2.0/tandem/replication/changes?after=0&limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("changes as the peer: %d %s", resp.StatusCode, b)
	}
	// A certificate of the primary's own CA (an agent's) is refused.
	own, _ := pki.LoadOrCreateCA(filepath.Join(p.PrimaryDir, "tls"), "")
	agent, _ := own.IssueClient("agent", time.Hour)
	acert, _ := agent.TLS()
	aclient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{acert}}}}
	ar, err := aclient.Get(p.Primary.URL + "/api/2.0/tandem/replication/changes?after=0")
	if err != nil {
		t.Fatal(err)
	}
	ar.Body.Close()
	if ar.StatusCode != 403 {
		t.Errorf("changes with an agent certificate: %d, want 403", ar.StatusCode)
	}
	return string(b)
}
