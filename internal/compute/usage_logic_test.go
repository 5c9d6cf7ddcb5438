package compute

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/usage"
)

func TestComputeTypeOfClusterSource(t *testing.T) {
	for _, c := range []struct {
		source, version string
		want            usage.ComputeType
	}{
		{SourceUI, "4.1.x-scala2.13", usage.AllPurpose},
		{SourceAPI, "4.1.x-scala2.13", usage.AllPurpose},
		{SourceJob, "4.1.x-scala2.13", usage.Jobs},
		{SourceJob, "apache-spark-2.4.x-scala2.11", usage.JobsLight},
		{SourceAPI, "apache-spark-2.4.x-scala2.11", usage.AllPurpose},
		{"", "", usage.AllPurpose},
	} {
		if got := computeTypeOf(c.source, c.version); got != c.want {
			t.Errorf("computeTypeOf(%q, %q) = %s, want %s", c.source, c.version, got, c.want)
		}
	}
}

func TestRunIDOfJobKey(t *testing.T) {
	for key, want := range map[string]int64{
		"run-42/main": 42, "run-7/": 7, "run-7": 7, "": 0, "run-/x": 0, "run-x/y": 0, "job-3/x": 0, "run--4/x": 0,
	} {
		if got := runIDOfJobKey(key); got != want {
			t.Errorf("runIDOfJobKey(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestParseUsageRequest(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	p := func(v int64) *int64 { return &v }
	cases := []struct {
		name    string
		req     usageRequest
		want    usageQuery
		wantErr string
	}{
		{name: "defaults: from the beginning until now", want: usageQuery{From: time.UnixMilli(0), To: now}},
		{name: "a period, a cluster, a run, a grouping",
			req:  usageRequest{StartTime: p(10), EndTime: p(20), ClusterID: " c1 ", RunID: p(5), GroupBy: "node_type"},
			want: usageQuery{From: time.UnixMilli(10), To: time.UnixMilli(20), ClusterID: "c1", RunID: 5, GroupBy: "node_type"}},
		{name: "an empty period is allowed", req: usageRequest{StartTime: p(10), EndTime: p(10)},
			want: usageQuery{From: time.UnixMilli(10), To: time.UnixMilli(10)}},
		{name: "end before start", req: usageRequest{StartTime: p(20), EndTime: p(10)}, wantErr: "must not be before"},
		{name: "start after now without an end", req: usageRequest{StartTime: p(2_000_000)}, wantErr: "must not be before"},
		{name: "negative start", req: usageRequest{StartTime: p(-1)}, wantErr: "start_time"},
		{name: "negative end", req: usageRequest{EndTime: p(-1)}, wantErr: "end_time"},
		{name: "run id 0", req: usageRequest{RunID: p(0)}, wantErr: "run_id"},
		{name: "unknown grouping", req: usageRequest{GroupBy: "user"}, wantErr: "group_by"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseUsageRequest(c.req, now)
			if c.wantErr != "" {
				var ae *api.Error
				if !errors.As(err, &ae) || ae.Code != api.InvalidParameterValue || !strings.Contains(ae.Message, c.wantErr) {
					t.Fatalf("err = %v, want INVALID_PARAMETER_VALUE about %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Fatalf("query (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUsageReportPricesRunsAndFlagsUnknownNodeTypes(t *testing.T) {
	rates := DefaultRates(DefaultNodeTypes)
	t0 := time.UnixMilli(0)
	h := func(x float64) time.Time { return t0.Add(time.Duration(x * float64(time.Hour))) }
	// An all-purpose cluster (driver and worker, tandem.small, an hour),
	// a job run's cluster (tandem.large, half an hour), and an instance of
	// a node type no rate covers (a custom catalog entry).
	ivs := []usage.Interval{
		{InstanceID: "d", ClusterID: "ap", NodeTypeID: "tandem.small", ComputeType: usage.AllPurpose, Driver: true, Start: h(0), End: h(1)},
		{InstanceID: "w", ClusterID: "ap", NodeTypeID: "tandem.small", ComputeType: usage.AllPurpose, Start: h(0), End: h(1)},
		{InstanceID: "j", ClusterID: "job", RunID: 9, NodeTypeID: "tandem.large", ComputeType: usage.Jobs, Start: h(0), End: h(0.5)},
		{InstanceID: "x", ClusterID: "odd", NodeTypeID: "gpu.huge", ComputeType: usage.AllPurpose, Start: h(0)},
	}
	cases := []struct {
		groupBy  string
		want     []usage.Line
		unpriced []string
	}{
		{groupBy: "", unpriced: []string{"gpu.huge"}, want: []usage.Line{
			// 2 node-hours × 0.1875 DBU/h = 0.375 DBU × 0.55.
			{ClusterID: "ap", ComputeType: usage.AllPurpose, NodeTypeID: "tandem.small", Instances: 2, NodeSeconds: 7200, DBUs: 0.375, Cost: 0.375 * 0.55},
			// 0.5 node-hours × 0.75 DBU/h = 0.375 DBU × 0.30.
			{ClusterID: "job", RunID: 9, ComputeType: usage.Jobs, NodeTypeID: "tandem.large", Instances: 1, NodeSeconds: 1800, DBUs: 0.375, Cost: 0.375 * 0.30},
			// Still up: counted until the end of the period, unpriced.
			{ClusterID: "odd", ComputeType: usage.AllPurpose, NodeTypeID: "gpu.huge", Instances: 1, NodeSeconds: 7200, Unpriced: true},
		}},
		{groupBy: "compute_type", unpriced: []string{"gpu.huge"}, want: []usage.Line{
			{ComputeType: usage.AllPurpose, Instances: 3, NodeSeconds: 14400, DBUs: 0.375, Cost: 0.375 * 0.55, Unpriced: true},
			{ComputeType: usage.Jobs, Instances: 1, NodeSeconds: 1800, DBUs: 0.375, Cost: 0.375 * 0.30},
		}},
		{groupBy: "node_type", unpriced: []string{"gpu.huge"}, want: []usage.Line{
			{NodeTypeID: "gpu.huge", Instances: 1, NodeSeconds: 7200, Unpriced: true},
			{NodeTypeID: "tandem.large", Instances: 1, NodeSeconds: 1800, DBUs: 0.375, Cost: 0.375 * 0.30},
			{NodeTypeID: "tandem.small", Instances: 2, NodeSeconds: 7200, DBUs: 0.375, Cost: 0.375 * 0.55},
		}},
		{groupBy: "cluster", unpriced: []string{"gpu.huge"}, want: []usage.Line{
			{ClusterID: "ap", ComputeType: usage.AllPurpose, Instances: 2, NodeSeconds: 7200, DBUs: 0.375, Cost: 0.375 * 0.55},
			{ClusterID: "job", RunID: 9, ComputeType: usage.Jobs, Instances: 1, NodeSeconds: 1800, DBUs: 0.375, Cost: 0.375 * 0.30},
			{ClusterID: "odd", ComputeType: usage.AllPurpose, Instances: 1, NodeSeconds: 7200, Unpriced: true},
		}},
	}
	for _, c := range cases {
		t.Run("group_by="+c.groupBy, func(t *testing.T) {
			rep, err := usageReport(append([]usage.Interval(nil), ivs...), rates, usageQuery{From: h(0), To: h(2), GroupBy: c.groupBy})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, rep.Usage, approx); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.unpriced, rep.UnpricedNodeTypes); diff != "" {
				t.Errorf("unpriced (-want +got):\n%s", diff)
			}
			if rep.Currency != "USD" || rep.StartTime != 0 || rep.EndTime != h(2).UnixMilli() {
				t.Errorf("report header: %+v", rep)
			}
		})
	}
}

var approx = cmp.Comparer(func(a, b float64) bool {
	d := a - b
	return d < 1e-9 && d > -1e-9
})

func TestDefaultRatesCoverTheCatalog(t *testing.T) {
	r := DefaultRates(DefaultNodeTypes)
	for _, nt := range DefaultNodeTypes {
		if r.DBUPerHour[nt.NodeTypeID] != nt.NumCores*0.1875 {
			t.Errorf("%s: %v DBU/h", nt.NodeTypeID, r.DBUPerHour[nt.NodeTypeID])
		}
	}
	if r.DBUPerHour["Standard_DS3_v2"] != 0.75 {
		t.Errorf("the published rates must stay: %v", r.DBUPerHour)
	}
}
