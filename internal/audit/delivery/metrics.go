package delivery

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the delivery figures of every destination, labelled by
// diagnostic setting and destination kind.
type Metrics struct {
	LagRecords *prometheus.GaugeVec
	LagSeconds *prometheus.GaugeVec
	Up         *prometheus.GaugeVec
	Delivered  *prometheus.CounterVec
	Errors     *prometheus.CounterVec
	Latency    *prometheus.HistogramVec
}

// NewMetrics registers the delivery metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"setting", "destination"}
	m := &Metrics{
		LagRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "tandem", Subsystem: "audit",
			Name: "destination_lag_records", Help: "Audit records in the journal not yet delivered to the destination (its backlog)."}, labels),
		LagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "tandem", Subsystem: "audit",
			Name: "destination_lag_seconds", Help: "Age of the oldest audit record not yet delivered to the destination; 0 when caught up."}, labels),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "tandem", Subsystem: "audit",
			Name: "destination_up", Help: "1 if the destination's last delivery attempt succeeded, 0 if it failed."}, labels),
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tandem", Subsystem: "audit",
			Name: "destination_delivered_records_total", Help: "Audit records delivered to the destination (redeliveries after a crash count again)."}, labels),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tandem", Subsystem: "audit",
			Name: "destination_errors_total", Help: "Failed delivery attempts to the destination."}, labels),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "tandem", Subsystem: "audit",
			Name: "delivery_latency_seconds", Help: "Time from an audit record's event to its delivery, by destination kind.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 5, 15, 60, 300, 900, 3600}}, []string{"destination"}),
	}
	reg.MustRegister(m.LagRecords, m.LagSeconds, m.Up, m.Delivered, m.Errors, m.Latency)
	return m
}

// Forget drops the series of a destination that no longer exists.
func (m *Metrics) Forget(setting, kind string) {
	for _, v := range []*prometheus.GaugeVec{m.LagRecords, m.LagSeconds, m.Up} {
		v.DeleteLabelValues(setting, kind)
	}
	m.Delivered.DeleteLabelValues(setting, kind)
	m.Errors.DeleteLabelValues(setting, kind)
}
