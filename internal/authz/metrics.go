package authz

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Protocol is the front end a check came through (a metric label).
type Protocol uint8

// The front ends.
const (
	GRPC Protocol = iota
	HTTP
	numProtocols
)

func (p Protocol) String() string {
	if p == GRPC {
		return "grpc"
	}
	return "http"
}

// Metrics are the authz service's Prometheus metrics. Labels are bounded:
// protocol and result have a handful of values; consumer failures are
// labelled by namespace, key set and consumer, which the APIKeySets bound
// (256 consumers each); client addresses never become labels.
type Metrics struct {
	checks           [numProtocols][numCodes]prometheus.Counter
	dryRun           [numCodes]prometheus.Counter
	duration         [numProtocols]prometheus.Observer
	consumerFailures *prometheus.CounterVec
	failingClients   prometheus.Gauge
}

// NewMetrics creates and registers the metrics. A nil registerer registers
// nothing (tests, benchmarks).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiwarden_authz_checks_total",
		Help: "Authorization checks by front end (grpc, http) and result (allowed, key_missing, key_malformed, key_unknown, key_expired, key_in_query, path_rejected, forbidden, cert_missing, policy_unknown, not_ready).",
	}, []string{"protocol", "result"})
	dryRun := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiwarden_authz_dry_run_refusals_total",
		Help: "Requests that a DryRun APIPolicy allowed but would have refused, by the result it would have enforced.",
	}, []string{"result"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "apiwarden_authz_check_duration_seconds",
		Help:    "Time to decide an authorization check, from request decoded to decision, by front end.",
		Buckets: []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01},
	}, []string{"protocol"})
	m := &Metrics{
		consumerFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiwarden_authz_consumer_failures_total",
			Help: "Refused requests made with a known consumer's key (expired key, or forbidden by the rules), by namespace, APIKeySet, consumer and result.",
		}, []string{"namespace", "apikeyset", "consumer", "result"}),
		failingClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apiwarden_authz_failing_clients",
			Help: "Client addresses that made at least the alerting threshold of refused requests in the last window (the addresses are logged).",
		}),
	}
	for p := Protocol(0); p < numProtocols; p++ {
		for c := Code(0); c < numCodes; c++ {
			m.checks[p][c] = checks.WithLabelValues(p.String(), c.String())
		}
		m.duration[p] = duration.WithLabelValues(p.String())
	}
	for c := Code(0); c < numCodes; c++ {
		m.dryRun[c] = dryRun.WithLabelValues(c.String())
	}
	if reg != nil {
		reg.MustRegister(checks, dryRun, duration, m.consumerFailures, m.failingClients)
	}
	return m
}

// Observe records a decided check: counters, latency, and for refusals the
// consumer's and the client's failure counts.
func (s *Store) Observe(p Protocol, in *Input, r *Result, took time.Duration) {
	if m := s.metrics; m != nil {
		m.checks[p][r.Code].Inc()
		m.duration[p].Observe(took.Seconds())
		if r.DryRun != Allowed {
			m.dryRun[r.DryRun].Inc()
		}
	}
	code := r.Code
	if code == Allowed {
		code = r.DryRun
	}
	if code == Allowed || code == NotReady || code == PolicyUnknown {
		return
	}
	s.failures.add(in.Client)
	if r.entry != nil && s.metrics != nil {
		u := r.entry.usage
		s.metrics.consumerFailures.WithLabelValues(u.namespace, u.keySet, r.Consumer, code.String()).Inc()
	}
}
