package usage

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGroup(t *testing.T) {
	r := Report{Currency: "USD", Usage: []Line{
		{ClusterID: "a", ComputeType: AllPurpose, NodeTypeID: "s", Instances: 2, NodeSeconds: 10, DBUs: 1, Cost: 2},
		{ClusterID: "a", ComputeType: AllPurpose, NodeTypeID: "m", Instances: 1, NodeSeconds: 5, DBUs: 1, Cost: 1},
		{ClusterID: "b", RunID: 3, ComputeType: Jobs, NodeTypeID: "s", Instances: 1, NodeSeconds: 4, Unpriced: true},
	}}
	cases := []struct {
		by   string
		want []Line
	}{
		{"", r.Usage},
		{ByCluster, []Line{
			{ClusterID: "a", ComputeType: AllPurpose, Instances: 3, NodeSeconds: 15, DBUs: 2, Cost: 3},
			{ClusterID: "b", RunID: 3, ComputeType: Jobs, Instances: 1, NodeSeconds: 4, Unpriced: true},
		}},
		{ByComputeType, []Line{
			{ComputeType: AllPurpose, Instances: 3, NodeSeconds: 15, DBUs: 2, Cost: 3},
			{ComputeType: Jobs, Instances: 1, NodeSeconds: 4, Unpriced: true},
		}},
		{ByNodeType, []Line{
			{NodeTypeID: "m", Instances: 1, NodeSeconds: 5, DBUs: 1, Cost: 1},
			{NodeTypeID: "s", Instances: 3, NodeSeconds: 14, DBUs: 1, Cost: 2, Unpriced: true},
		}},
	}
	for _, c := range cases {
		got, err := Group(r, c.by)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.want, got.Usage); diff != "" {
			t.Errorf("group by %q (-want +got):\n%s", c.by, diff)
		}
		if got.GroupBy != c.by {
			t.Errorf("GroupBy %q, want %q", got.GroupBy, c.by)
		}
	}
	if _, err := Group(r, "user"); !errors.Is(err, ErrBadGrouping) {
		t.Fatalf("unknown grouping: %v", err)
	}
}

func TestWithUnknownNodeTypesLeavesRatesAlone(t *testing.T) {
	rates := DefaultRates()
	ivs := []Interval{{NodeTypeID: "Standard_DS3_v2"}, {NodeTypeID: "z"}, {NodeTypeID: "y"}, {NodeTypeID: "z"}}
	got, unknown := WithUnknownNodeTypes(ivs, rates)
	if diff := cmp.Diff([]string{"y", "z"}, unknown); diff != "" {
		t.Fatalf("unknown (-want +got):\n%s", diff)
	}
	if _, ok := rates.DBUPerHour["z"]; ok {
		t.Fatal("the caller's rates were changed")
	}
	if got.DBUPerHour["z"] != 0 || got.DBUPerHour["Standard_DS3_v2"] != 0.75 {
		t.Fatalf("rates: %v", got.DBUPerHour)
	}
	if _, none := WithUnknownNodeTypes(ivs[:1], rates); none != nil {
		t.Fatalf("all known: %v", none)
	}
}
