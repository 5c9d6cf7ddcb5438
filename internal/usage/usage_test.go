package usage

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var t0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

func at(min float64) time.Time { return t0.Add(time.Duration(min * float64(time.Minute))) }

func TestCompute(t *testing.T) {
	rates := DefaultRates()
	ds3, ds4 := "Standard_DS3_v2", "Standard_DS4_v2"
	cases := []struct {
		name      string
		intervals []Interval
		from, to  time.Time
		want      []Line
		total     Total
	}{
		{
			name: "driver and two workers for an hour of all-purpose compute",
			from: at(0), to: at(60),
			intervals: []Interval{
				{InstanceID: "d", ClusterID: "c1", NodeTypeID: ds3, ComputeType: AllPurpose, Driver: true, Start: at(0), End: at(60)},
				{InstanceID: "w1", ClusterID: "c1", NodeTypeID: ds3, ComputeType: AllPurpose, Start: at(0), End: at(60)},
				{InstanceID: "w2", ClusterID: "c1", NodeTypeID: ds3, ComputeType: AllPurpose, Start: at(30), End: at(60)},
			},
			// 2.5 node-hours × 0.75 DBU/h = 1.875 DBU × 0.55 = 1.03125.
			want:  []Line{{ClusterID: "c1", ComputeType: AllPurpose, NodeTypeID: ds3, Instances: 3, NodeSeconds: 9000, DBUs: 1.875, Cost: 1.03125}},
			total: Total{NodeSeconds: 9000, DBUs: 1.875, Cost: 1.03125},
		},
		{
			name: "the same uptime costs less as jobs compute, and per run",
			from: at(0), to: at(120),
			intervals: []Interval{
				{InstanceID: "a", ClusterID: "job-1", RunID: 7, NodeTypeID: ds4, ComputeType: Jobs, Start: at(0), End: at(60)},
				{InstanceID: "b", ClusterID: "job-2", RunID: 8, NodeTypeID: ds4, ComputeType: JobsLight, Start: at(0), End: at(60)},
				{InstanceID: "c", ClusterID: "sql", NodeTypeID: ds4, ComputeType: SQL, Start: at(0), End: at(60)},
			},
			want: []Line{
				{ClusterID: "job-1", RunID: 7, ComputeType: Jobs, NodeTypeID: ds4, Instances: 1, NodeSeconds: 3600, DBUs: 1.5, Cost: 0.45},
				{ClusterID: "job-2", RunID: 8, ComputeType: JobsLight, NodeTypeID: ds4, Instances: 1, NodeSeconds: 3600, DBUs: 1.5, Cost: 0.33},
				{ClusterID: "sql", ComputeType: SQL, NodeTypeID: ds4, Instances: 1, NodeSeconds: 3600, DBUs: 1.5, Cost: 0.33},
			},
			total: Total{NodeSeconds: 10800, DBUs: 4.5, Cost: 1.11},
		},
		{
			name: "intervals are clipped to the period; a running instance counts until its end",
			from: at(10), to: at(20),
			intervals: []Interval{
				{InstanceID: "a", ClusterID: "c", NodeTypeID: ds3, ComputeType: Jobs, Start: at(0), End: at(15)},
				{InstanceID: "b", ClusterID: "c", NodeTypeID: ds3, ComputeType: Jobs, Start: at(12)},
				{InstanceID: "old", ClusterID: "c", NodeTypeID: ds3, ComputeType: Jobs, Start: at(0), End: at(5)},
				{InstanceID: "later", ClusterID: "c", NodeTypeID: ds3, ComputeType: Jobs, Start: at(20), End: at(30)},
				// Started after the period and still up (read after the
				// clock by a request racing its start): nothing, no error.
				{InstanceID: "racing", ClusterID: "c", NodeTypeID: ds3, ComputeType: Jobs, Start: at(21)},
			},
			want:  []Line{{ClusterID: "c", ComputeType: Jobs, NodeTypeID: ds3, Instances: 2, NodeSeconds: 780, DBUs: 0.1625, Cost: 0.04875}},
			total: Total{NodeSeconds: 780, DBUs: 0.1625, Cost: 0.04875},
		},
		{name: "nothing", from: at(0), to: at(1), want: []Line{}},
	}
	approx := cmpopts.EquateApprox(0, 1e-9)
	for _, c := range cases {
		r, err := Compute(c.intervals, rates, c.from, c.to)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if diff := cmp.Diff(c.want, r.Usage, approx); diff != "" {
			t.Errorf("%s: lines (-want +got):\n%s", c.name, diff)
		}
		if diff := cmp.Diff(c.total, r.Total, approx); diff != "" {
			t.Errorf("%s: total (-want +got):\n%s", c.name, diff)
		}
		if r.StartTime != c.from.UnixMilli() || r.EndTime != c.to.UnixMilli() || r.Currency != "USD" {
			t.Errorf("%s: report period/currency %d..%d %s", c.name, r.StartTime, r.EndTime, r.Currency)
		}
	}
}

func TestComputeRejects(t *testing.T) {
	rates := DefaultRates()
	cases := []struct {
		name string
		iv   Interval
		want error
	}{
		{"unknown node type", Interval{InstanceID: "a", NodeTypeID: "m5.huge", ComputeType: Jobs, Start: at(0), End: at(1)}, ErrUnknownNodeType},
		{"unknown compute type", Interval{InstanceID: "a", NodeTypeID: "Standard_DS3_v2", ComputeType: "SERVERLESS", Start: at(0), End: at(1)}, ErrUnknownComputeType},
		{"ends before it starts", Interval{InstanceID: "a", NodeTypeID: "Standard_DS3_v2", ComputeType: Jobs, Start: at(2), End: at(1)}, ErrBadInterval},
	}
	for _, c := range cases {
		if _, err := Compute([]Interval{c.iv}, rates, at(0), at(10)); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := Compute(nil, rates, at(1), at(0)); !errors.Is(err, ErrBadInterval) {
		t.Errorf("reversed period: %v", err)
	}
}

func TestPriceOrdersComputeTypes(t *testing.T) {
	// The point of compute types: the same hour costs most interactively.
	r := DefaultRates()
	cost := map[ComputeType]float64{}
	for _, c := range ComputeTypes {
		_, cost[c], _ = r.Price("Standard_DS3_v2", c, time.Hour)
	}
	if !(cost[AllPurpose] > cost[Jobs] && cost[Jobs] > cost[JobsLight]) || math.Abs(cost[AllPurpose]-0.4125) > 1e-9 {
		t.Errorf("costs per hour %v", cost)
	}
}

func TestParseComputeType(t *testing.T) {
	for in, want := range map[string]ComputeType{"all-purpose": AllPurpose, "ALL_PURPOSE": AllPurpose, "jobs": Jobs, "Jobs-Light": JobsLight, "sql": SQL} {
		if got, err := ParseComputeType(in); err != nil || got != want {
			t.Errorf("ParseComputeType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseComputeType("serverless"); !errors.Is(err, ErrUnknownComputeType) {
		t.Errorf("serverless: %v", err)
	}
}
