package compute_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/files"

	tcompute "github.com/tandemdata/tandem/internal/compute"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/server"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// TestClusterLogDeliveryThroughTheSDK: cluster_log_conf is validated as
// Databricks validates it, a task's output and the init scripts' output
// reach DBFS in Databricks' layout, and clusters/get reports
// cluster_log_status. Spark is faked; e2e/logdelivery_test.go runs it real.
func TestClusterLogDeliveryThroughTheSDK(t *testing.T) {
	prov := newProvider(t)
	srv := start(t, prov, servertest.WithSetup(func(s *server.Server) { s.Compute.LogDeliveryEvery = 200 * time.Millisecond }))
	ctx := context.Background()
	w := srv.SDK(srv.AdminToken)

	for _, bad := range []*compute.ClusterLogConf{
		{S3: &compute.S3StorageInfo{Destination: "s3://bucket/logs", Region: "us-west-2"}},
		{Volumes: &compute.VolumesStorageInfo{Destination: "/Volumes/main/default/logs"}},
		{Dbfs: &compute.DbfsStorageInfo{Destination: "cluster-logs"}},
		{Dbfs: &compute.DbfsStorageInfo{Destination: "dbfs:/a"}, S3: &compute.S3StorageInfo{Destination: "s3://b"}},
	} {
		_, err := w.Clusters.Create(ctx, compute.CreateCluster{SparkVersion: version, NodeTypeId: "tandem.small", NumWorkers: 1, ClusterLogConf: bad})
		var ae *apierr.APIError
		if !errors.As(err, &ae) || ae.ErrorCode != "INVALID_PARAMETER_VALUE" || ae.StatusCode != 400 {
			t.Fatalf("cluster_log_conf %+v: %v", bad, err)
		}
	}
	if err := w.Dbfs.WriteFile(ctx, "dbfs:/scripts/hello.sh", []byte("#!/bin/bash\necho hello from init on $DB_CLUSTER_ID\n")); err != nil {
		t.Fatal(err)
	}
	cl, err := w.Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "logged", SparkVersion: version, NodeTypeId: "tandem.small",
		NumWorkers: 1, InitScripts: []compute.InitScriptInfo{{Dbfs: &compute.DbfsStorageInfo{Destination: "dbfs:/scripts/hello.sh"}}},
		ClusterLogConf: &compute.ClusterLogConf{Dbfs: &compute.DbfsStorageInfo{Destination: "dbfs:/cluster-logs"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Compute.RunTask(ctx, cl.ClusterId, tcompute.TaskSpec{ID: "t1", RunAs: "admin@tandem.local",
		Runtime: []byte(`{"kind":"python","fake_output":"printed by the task\n","fake_seconds":0.1}`)}); err != nil {
		t.Fatal(err)
	}
	dir := "/cluster-logs/" + cl.ClusterId
	waitFor(t, "driver stdout and init script output in DBFS", func() (bool, string) {
		b, err := w.Dbfs.ReadFile(ctx, dir+"/driver/stdout")
		if err != nil || !strings.Contains(string(b), "printed by the task") {
			return false, fmt.Sprintf("driver/stdout: %q %v", b, err)
		}
		list, err := w.Dbfs.ListAll(ctx, filesList(dir+"/init_scripts"))
		if err != nil || len(list) == 0 {
			return false, fmt.Sprint("init_scripts: ", err)
		}
		for _, node := range list {
			if !strings.HasPrefix(node.Path, dir+"/init_scripts/"+cl.ClusterId+"_") {
				return false, "init_scripts layout: " + node.Path
			}
		}
		return true, ""
	})
	got, err := w.Clusters.GetByClusterId(ctx, cl.ClusterId)
	if err != nil || got.ClusterLogStatus == nil || got.ClusterLogStatus.LastAttempted == 0 || got.ClusterLogStatus.LastException != "" {
		t.Fatalf("cluster_log_status: %v %+v", err, got.ClusterLogStatus)
	}
	all, err := w.Clusters.ListAll(ctx, compute.ListClustersRequest{})
	if err != nil || len(all) != 1 || all[0].ClusterLogStatus == nil || all[0].ClusterLogStatus.LastAttempted == 0 {
		t.Fatalf("cluster_log_status in clusters/list: %v %+v", err, all)
	}
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
}

func filesList(p string) files.ListDbfsRequest { return files.ListDbfsRequest{Path: p} }

// TestLogDeliveryResumesAcrossAControlPlaneRestart: the delivery cursors
// survive the control plane, so a restarted one continues each file where
// the last one stopped, without repeating or losing a line; and the logs
// written last, on termination, are delivered.
func TestLogDeliveryResumesAcrossAControlPlaneRestart(t *testing.T) {
	prov := newProvider(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	listen := func(c *config.Config) { c.Listen = addr }
	fast := servertest.WithSetup(func(s *server.Server) { s.Compute.LogDeliveryEvery = 200 * time.Millisecond })
	srv := start(t, prov, servertest.WithDataDir(dir), listen, fast)
	ctx := context.Background()
	cl, err := srv.SDK(srv.AdminToken).Clusters.CreateAndWait(ctx, compute.CreateCluster{ClusterName: "resumed", SparkVersion: version,
		NodeTypeId: "tandem.small", NumWorkers: 1,
		ClusterLogConf: &compute.ClusterLogConf{Dbfs: &compute.DbfsStorageInfo{Destination: "dbfs:/cluster-logs"}}})
	if err != nil {
		t.Fatal(err)
	}
	stdout := "/cluster-logs/" + cl.ClusterId + "/driver/stdout"
	runAndSee := func(srv *servertest.Server, id, line, want string) {
		t.Helper()
		if _, err := srv.Compute.RunTask(ctx, cl.ClusterId, tcompute.TaskSpec{ID: id, RunAs: "admin@tandem.local",
			Runtime: []byte(`{"kind":"python","fake_output":"` + line + `\n","fake_seconds":0.1}`)}); err != nil {
			t.Fatal(err)
		}
		w := srv.SDK(srv.AdminToken)
		waitFor(t, "driver/stdout delivered", func() (bool, string) {
			b, err := w.Dbfs.ReadFile(ctx, stdout)
			return err == nil && string(b) == want, fmt.Sprintf("%q %v", b, err)
		})
	}
	runAndSee(srv, "t1", "first", "first\n")
	srv.Close()

	srv2 := start(t, prov, servertest.WithDataDir(dir), listen, fast)
	runAndSee(srv2, "t2", "second", "first\nsecond\n")
	w := srv2.SDK(srv2.AdminToken)
	if _, err := w.Clusters.DeleteAndWait(ctx, compute.DeleteCluster{ClusterId: cl.ClusterId}); err != nil {
		t.Fatal(err)
	}
	b, err := w.Dbfs.ReadFile(ctx, stdout)
	if err != nil || string(b) != "first\nsecond\n" {
		t.Fatalf("after termination: %q %v", b, err)
	}
}
