package destination

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/audit"
)

func TestWireFormEncodesNestedFieldsAsStringsAndRoundTrips(t *testing.T) {
	r := audit.New("/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.DATABRICKS/WORKSPACES/W", "jobs", "create",
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	r.Identity.Email = "ada@example.com"
	r.Properties.RequestID = "req-1"
	r.Properties.RequestParams = map[string]string{"name": "Untitled", "new_cluster": `{"num_workers":8}`}
	r.Properties.Response = audit.Response{StatusCode: 200, Result: `{"job_id":1}`}
	b, err := Wire(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	props := m["properties"].(map[string]any)
	want := map[string]any{
		"identity":      `{"email":"ada@example.com","subjectName":null}`,
		"requestParams": `{"name":"Untitled","new_cluster":"{\"num_workers\":8}"}`,
		"response":      `{"statusCode":200,"result":"{\"job_id\":1}"}`,
	}
	got := map[string]any{"identity": m["identity"], "requestParams": props["requestParams"], "response": props["response"]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("wire nested fields (-want +got):\n%s", diff)
	}
	back, err := FromWire(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if Container("globalInitScripts") != "insights-logs-globalinitscripts" {
		t.Errorf("container = %s", Container("globalInitScripts"))
	}
}
