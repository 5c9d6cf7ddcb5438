package delivery

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the delivery figures of every destination, labelled by
// diagnostic setting and destination kind.
type Metrics struct {
	Up        *prometheus.GaugeVec
	Delivered *prometheus.CounterVec
	Errors    *prometheus.CounterVec
	Latency   *prometheus.HistogramVec

	lagRecords *prometheus.Desc
	lagSeconds *prometheus.Desc
	mu         sync.Mutex
	loops      map[*Loop]bool
}

// NewMetrics registers the delivery metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"setting", "destination"}
	m := &Metrics{
		lagRecords: prometheus.NewDesc("tandem_audit_destination_lag_records",
			"Audit records in the journal not yet delivered to the destination (its backlog).", labels, nil),
		lagSeconds: prometheus.NewDesc("tandem_audit_destination_lag_seconds",
			"Age of the oldest audit record not yet delivered to the destination; 0 when caught up.", labels, nil),
		loops: map[*Loop]bool{},
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
	reg.MustRegister(m.Up, m.Delivered, m.Errors, m.Latency, lagCollector{m})
	return m
}

// lagCollector reports each loop's lag as it is when scraped, so an
// outage shows while a delivery attempt is still waiting.
type lagCollector struct{ m *Metrics }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.m.lagRecords
	ch <- c.m.lagSeconds
}

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	loops := make([]*Loop, 0, len(c.m.loops))
	for l := range c.m.loops {
		loops = append(loops, l)
	}
	c.m.mu.Unlock()
	for _, l := range loops {
		s := l.Status()
		ch <- prometheus.MustNewConstMetric(c.m.lagRecords, prometheus.GaugeValue, float64(s.LagRecords), l.Setting, l.Kind)
		ch <- prometheus.MustNewConstMetric(c.m.lagSeconds, prometheus.GaugeValue, s.LagSeconds, l.Setting, l.Kind)
	}
}

func (m *Metrics) track(l *Loop, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on {
		m.loops[l] = true
	} else {
		delete(m.loops, l)
	}
}

// Forget drops the series of a destination that no longer exists.
func (m *Metrics) Forget(setting, kind string) {
	m.Up.DeleteLabelValues(setting, kind)
	m.Delivered.DeleteLabelValues(setting, kind)
	m.Errors.DeleteLabelValues(setting, kind)
}
