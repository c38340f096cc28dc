package webhooks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiwarden/apiwarden/internal/exposure"
)

// Metrics are the admission webhook's Prometheus series. Labels are
// bounded: kind is one of the six admitted kinds, result one of allowed,
// warned or denied, code one of the engine's violation codes (or "none").
type Metrics struct {
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// NewMetrics registers the admission metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiwarden_admission_decisions_total",
			Help: "Admission decisions by kind, result (allowed, warned, denied) and violation code (none when allowed without violations); a decision with several codes counts once per code.",
		}, []string{"kind", "result", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiwarden_admission_duration_seconds",
			Help:    "Time to decide one admission request, from the decoded object to the answer, by kind.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25},
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.decisions, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe records one decision. A nil Metrics records nothing.
func (m *Metrics) observe(kind string, deny, warn []exposure.Violation, start time.Time) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	result, vs := "allowed", []exposure.Violation(nil)
	switch {
	case len(deny) > 0:
		result, vs = "denied", deny
	case len(warn) > 0:
		result, vs = "warned", warn
	}
	if len(vs) == 0 {
		m.decisions.WithLabelValues(kind, result, "none").Inc()
		return
	}
	// Count each code once; a decision carries a handful of violations, so
	// looking back beats allocating a set on the admission path.
	for i, v := range vs {
		dup := false
		for _, w := range vs[:i] {
			dup = dup || w.Code == v.Code
		}
		if !dup {
			m.decisions.WithLabelValues(kind, result, string(v.Code)).Inc()
		}
	}
}
