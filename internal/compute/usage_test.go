package compute_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/databricks/databricks-sdk-go/service/compute"
)

// usageReply is the usage API's answer.
type usageReply struct {
	StartTime int64  `json:"start_time"`
	EndTime   int64  `json:"end_time"`
	Currency  string `json:"currency"`
	GroupBy   string `json:"group_by"`
	Usage     []struct {
		ClusterID   string  `json:"cluster_id"`
		RunID       int64   `json:"run_id"`
		ComputeType string  `json:"compute_type"`
		NodeTypeID  string  `json:"node_type_id"`
		Instances   int     `json:"instances"`
		NodeSeconds float64 `json:"node_seconds"`
		DBUs        float64 `json:"dbus"`
		Cost        float64 `json:"cost"`
	} `json:"usage"`
	Total struct {
		NodeSeconds float64 `json:"node_seconds"`
		DBUs        float64 `json:"dbus"`
		Cost        float64 `json:"cost"`
	} `json:"total"`
}

// TestUsageAPIChargesClustersAndJobRuns runs an all-purpose cluster and a
// job run's cluster, and reads their usage through the usage API (per
// cluster, per run, grouped) and clusters/get; a user sees only the
// clusters they may attach to; bad parameters are Databricks errors.
func TestUsageAPIChargesClustersAndJobRuns(t *testing.T) {
	prov := newProvider(t)
	srv := start(t, prov)
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)
	get := func(tok, path string, into any) int {
		t.Helper()
		r := srv.Do(tok, "GET", path, nil)
		if r.Status == 200 && into != nil {
			if err := json.Unmarshal(r.Body, into); err != nil {
				t.Fatalf("%s: %v %s", path, err, r.Body)
			}
		}
		return r.Status
	}

	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "usage", SparkVersion: version, NodeTypeId: "tandem.small", NumWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A job run's cluster (the fake Spark fails the task; its cluster
	// still ran, and is charged as Jobs compute to the run).
	r := srv.Do(srv.AdminToken, "POST", "/api/2.2/jobs/runs/submit", map[string]any{"run_name": "billed", "tasks": []map[string]any{{
		"task_key": "t", "new_cluster": map[string]any{"spark_version": version, "node_type_id": "tandem.medium", "num_workers": 0},
		"spark_python_task": map[string]string{"python_file": "/x.py"}}}})
	if r.Status != 200 {
		t.Fatalf("submit: %d %s", r.Status, r.Body)
	}
	runID := int64(r.JSON(t)["run_id"].(float64))

	var byRun usageReply
	waitFor(t, "the run's usage", func() (bool, string) {
		st := get(srv.AdminToken, fmt.Sprintf("/api/2.0/tandem/usage?run_id=%d", runID), &byRun)
		return st == 200 && len(byRun.Usage) == 1 && byRun.Usage[0].NodeSeconds > 0, fmt.Sprintf("%d %+v", st, byRun)
	})
	if l := byRun.Usage[0]; l.RunID != runID || l.ComputeType != "JOBS" || l.NodeTypeID != "tandem.medium" || l.ClusterID == cl.ClusterId {
		t.Fatalf("run usage: %+v", l)
	}

	var all usageReply
	if st := get(srv.AdminToken, "/api/2.0/tandem/usage?group_by=compute_type", &all); st != 200 || all.GroupBy != "compute_type" || all.Currency != "USD" {
		t.Fatalf("grouped: %d %+v", st, all)
	}
	types := map[string]float64{}
	for _, l := range all.Usage {
		types[l.ComputeType] = l.Cost
	}
	if types["ALL_PURPOSE"] <= 0 || types["JOBS"] <= 0 {
		t.Fatalf("compute types: %+v", all.Usage)
	}

	var one usageReply
	if st := get(srv.AdminToken, "/api/2.0/tandem/usage?cluster_id="+cl.ClusterId, &one); st != 200 || len(one.Usage) != 1 ||
		one.Usage[0].Instances != 2 || one.Usage[0].ComputeType != "ALL_PURPOSE" || one.Usage[0].DBUs <= 0 {
		t.Fatalf("cluster usage: %d %+v", st, one)
	}
	// 0.1875 DBU per node-hour (tandem.small) at 0.55 USD per DBU.
	if l := one.Usage[0]; abs(l.DBUs-l.NodeSeconds/3600*0.1875) > 1e-9 || abs(l.Cost-l.DBUs*0.55) > 1e-9 {
		t.Fatalf("pricing: %+v", l)
	}

	// clusters/get carries the same figures as a Tandem extension.
	var details struct {
		Usage struct {
			NodeSeconds float64 `json:"node_seconds"`
			DBUs        float64 `json:"dbus"`
			Cost        float64 `json:"cost"`
			Currency    string  `json:"currency"`
			ComputeType string  `json:"compute_type"`
		} `json:"usage"`
	}
	if st := get(srv.AdminToken, "/api/2.1/clusters/get?cluster_id="+cl.ClusterId, &details); st != 200 ||
		details.Usage.Currency != "USD" || details.Usage.ComputeType != "ALL_PURPOSE" || details.Usage.NodeSeconds < one.Usage[0].NodeSeconds {
		t.Fatalf("clusters/get usage: %d %+v", st, details)
	}
	// And the SDK reads the cluster as before.
	if got, err := w.Clusters.GetByClusterId(ctx, cl.ClusterId); err != nil || got.ClusterId != cl.ClusterId {
		t.Fatalf("SDK get: %v", err)
	}

	// A user sees the clusters they may attach to, and nothing else.
	u := srv.NewUser("billing@example.com", false)
	var mine usageReply
	if st := get(u.Token, "/api/2.0/tandem/usage", &mine); st != 200 || len(mine.Usage) != 0 {
		t.Fatalf("user without grants: %d %+v", st, mine)
	}
	if st := get(u.Token, "/api/2.0/tandem/usage?cluster_id="+cl.ClusterId, nil); st != 403 {
		t.Fatalf("user naming a cluster they may not attach to: %d", st)
	}
	if r := srv.Do(srv.AdminToken, "PATCH", "/api/2.0/permissions/clusters/"+cl.ClusterId, map[string]any{
		"access_control_list": []map[string]string{{"user_name": u.UserName, "permission_level": "CAN_ATTACH_TO"}}}); r.Status != 200 {
		t.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	if st := get(u.Token, "/api/2.0/tandem/usage?group_by=cluster", &mine); st != 200 || len(mine.Usage) != 1 || mine.Usage[0].ClusterID != cl.ClusterId {
		t.Fatalf("user with CAN_ATTACH_TO: %d %+v", st, mine)
	}

	for _, bad := range []struct{ query, want string }{
		{"start_time=abc", "INVALID_PARAMETER_VALUE"},
		{"start_time=20&end_time=10", "must not be before"},
		{"group_by=user", "group_by"},
		{"run_id=-1", "run_id"},
	} {
		r := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/usage?"+bad.query, nil)
		if r.Status != 400 || !strings.Contains(string(r.Body), bad.want) || !strings.Contains(string(r.Body), `"error_code"`) {
			t.Errorf("%s: %d %s", bad.query, r.Status, r.Body)
		}
	}
	if st := get(srv.AdminToken, "/api/2.0/tandem/usage?cluster_id=0000-000000-nothere", nil); st != 404 {
		t.Errorf("unknown cluster: %d", st)
	}
	if err := w.Clusters.PermanentDeleteByClusterId(ctx, cl.ClusterId); err != nil {
		t.Fatal(err)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
