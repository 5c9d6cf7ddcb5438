package dr

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the region's disaster-recovery figures: the recovery
// point exposure (replication lag in seconds and in changes), the last
// sequence number, the epoch, the role, and the alert that the lag is above
// the objective.
func (r *Region) Collector() prometheus.Collector { return &collector{r: r} }

var (
	descLagSeconds = prometheus.NewDesc("tandem_dr_replication_lag_seconds",
		"Age of the oldest change the peer region does not have (measured on the follower; on the leader, from the peer's last status).", nil, nil)
	descLagChanges = prometheus.NewDesc("tandem_dr_replication_lag_changes",
		"Changes committed on the leader that the follower has not applied.", nil, nil)
	descLastSeq = prometheus.NewDesc("tandem_dr_last_seq",
		"Last sequence number of this region's change log (on a follower: the last applied).", nil, nil)
	descEpoch = prometheus.NewDesc("tandem_dr_epoch",
		"Highest disaster-recovery epoch this region knows of.", nil, nil)
	descRole = prometheus.NewDesc("tandem_dr_role",
		"1 for the region's current role.", []string{"role"}, nil)
	descActive = prometheus.NewDesc("tandem_dr_active",
		"1 while this region serves writes.", nil, nil)
	descRPO = prometheus.NewDesc("tandem_dr_rpo_seconds",
		"Configured recovery point objective.", nil, nil)
	descRPOExceeded = prometheus.NewDesc("tandem_dr_rpo_exceeded",
		"1 while the replication lag is above the recovery point objective (alert on it).", nil, nil)
	descApplied = prometheus.NewDesc("tandem_dr_replication_applied_changes_total",
		"Changes applied from the leader by the current follower.", nil, nil)
	descFailures = prometheus.NewDesc("tandem_dr_replication_failed_calls_total",
		"Failed calls of the current follower to the leader.", nil, nil)
)

type collector struct{ r *Region }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLagSeconds, descLagChanges, descLastSeq, descEpoch, descRole, descActive, descRPO, descRPOExceeded, descApplied, descFailures} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	st := r.State()
	measured, changes, seconds, exceeded := r.lag.get()
	if measured {
		ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, seconds)
		ch <- prometheus.MustNewConstMetric(descLagChanges, prometheus.GaugeValue, float64(changes))
	}
	if last, err := r.cfg.Store.LastSeq(context.Background()); err == nil {
		ch <- prometheus.MustNewConstMetric(descLastSeq, prometheus.GaugeValue, float64(last))
	}
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(st.Epoch))
	for _, role := range []Role{Active, Draining, Sealed, Passive} {
		v := 0.0
		if st.Role == role {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, v, string(role))
	}
	active := 0.0
	if st.Role == Active {
		active = 1
	}
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, active)
	ch <- prometheus.MustNewConstMetric(descRPO, prometheus.GaugeValue, r.cfg.RPO.Seconds())
	alert := 0.0
	if exceeded {
		alert = 1
	}
	ch <- prometheus.MustNewConstMetric(descRPOExceeded, prometheus.GaugeValue, alert)
	r.mu.Lock()
	f := r.follower
	r.mu.Unlock()
	if f != nil {
		s := f.Stats()
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.CounterValue, float64(s.Applied))
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.Failures))
	}
}
