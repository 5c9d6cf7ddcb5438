package server

import (
	"strings"
	"testing"

	"github.com/tandemdata/tandem/internal/compute"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/usage"
)

func TestUsageRatesOverrideTheDefaults(t *testing.T) {
	r, err := usageRates(compute.DefaultNodeTypes, config.UsageRates{
		DBUPerHour:  map[string]float64{"tandem.small": 1, "gpu.big": 4},
		PricePerDBU: map[string]float64{"jobs-light": 0.1},
		Currency:    "EUR",
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.DBUPerHour["tandem.small"] != 1 || r.DBUPerHour["gpu.big"] != 4 || r.DBUPerHour["tandem.large"] != 0.75 ||
		r.PricePerDBU[usage.JobsLight] != 0.1 || r.PricePerDBU[usage.Jobs] != 0.30 || r.Currency != "EUR" {
		t.Fatalf("rates: %+v", r)
	}
	for _, bad := range []config.UsageRates{
		{DBUPerHour: map[string]float64{"tandem.small": -1}},
		{PricePerDBU: map[string]float64{"warehouse": 1}},
		{PricePerDBU: map[string]float64{"SQL": -1}},
	} {
		if _, err := usageRates(compute.DefaultNodeTypes, bad); err == nil || !strings.Contains(err.Error(), "compute.usage") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
