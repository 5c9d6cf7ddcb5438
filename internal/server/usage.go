package server

import (
	"fmt"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/compute"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/usage"
)

// usageRates are the default rates for the node types with the
// configuration's overrides.
func usageRates(nodeTypes []compute.NodeType, cfg config.UsageRates) (*usage.Rates, error) {
	r := compute.DefaultRates(nodeTypes)
	for nt, rate := range cfg.DBUPerHour {
		if rate < 0 {
			return nil, fmt.Errorf("compute.usage.dbu_per_hour[%q] = %v must not be negative", nt, rate)
		}
		r.DBUPerHour[nt] = rate
	}
	for name, price := range cfg.PricePerDBU {
		ct, err := usage.ParseComputeType(name)
		if err != nil {
			return nil, fmt.Errorf("compute.usage.price_per_dbu: %w", err)
		}
		if price < 0 {
			return nil, fmt.Errorf("compute.usage.price_per_dbu[%q] = %v must not be negative", name, price)
		}
		r.PricePerDBU[ct] = price
	}
	if cfg.Currency != "" {
		r.Currency = cfg.Currency
	}
	return &r, nil
}

// elasticDisk converts the configuration's sizes (MiB) for the agents.
func elasticDisk(c config.ElasticDisk) wire.ElasticDisk {
	const mb = 1 << 20
	return wire.ElasticDisk{FirstVolumeBytes: int64(c.FirstVolumeMB) * mb, VolumeBytes: int64(c.VolumeMB) * mb,
		MaxVolumes: c.MaxVolumes, FreeBelowBytes: int64(c.FreeBelowMB) * mb}
}
