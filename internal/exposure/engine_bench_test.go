package exposure

import (
	"fmt"
	"sort"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// benchSnapshot holds 1,000 APIPolicies, one per Ingress in namespace shop,
// and a Deny baseline, the size the issue sets for the decision benchmark.
func benchSnapshot(policies int) *MemorySnapshot {
	var ps []*apiwardenv1alpha1.APIPolicy
	for i := range policies {
		ps = append(ps, &apiwardenv1alpha1.APIPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "shop"},
			Spec: apiwardenv1alpha1.APIPolicySpec{
				TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: GroupNetworking, Kind: "Ingress", Name: fmt.Sprintf("ing%d", i)}},
				Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "k"}}}},
				RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 10, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
			},
		})
	}
	b := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: apiwardenv1alpha1.APIBaselineSpec{EnforcementAction: apiwardenv1alpha1.EnforcementActionDeny}}
	return NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{b}, ps, nil)
}

// benchIngress has 20 hosts, all covered by TLS, targeted by policy p500.
func benchIngress() *networkingv1.Ingress {
	in := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "ing500", Namespace: "shop"}}
	for i := range 20 {
		host := fmt.Sprintf("h%d.example.com", i)
		in.Spec.Rules = append(in.Spec.Rules, networkingv1.IngressRule{Host: host})
		in.Spec.TLS = append(in.Spec.TLS, networkingv1.IngressTLS{Hosts: []string{host}})
	}
	return in
}

// BenchmarkEvaluateIngress20Hosts1000Policies is one admission decision:
//
//	go test ./internal/exposure -run '^$' -bench EvaluateIngress -benchmem
func BenchmarkEvaluateIngress20Hosts1000Policies(b *testing.B) {
	snap, in, now := benchSnapshot(1000), benchIngress(), time.Now()
	v, err := Evaluate(in, snap, now, Options{})
	if err != nil || v.State() != StateProtected {
		b.Fatalf("benchmark input is not a protected Ingress: %v %+v", err, v)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Evaluate(in, snap, now, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateLatency reports the p50 and p99 of single decisions, which
// the mean of BenchmarkEvaluateIngress20Hosts1000Policies hides, in a
// process whose live heap is the benchmark's few hundred KiB: the garbage
// collector runs every few thousand decisions, which sets the p99.
func BenchmarkEvaluateLatency(b *testing.B) {
	benchLatency(b)
}

func benchLatency(b *testing.B) {
	snap, in, now := benchSnapshot(1000), benchIngress(), time.Now()
	samples := make([]time.Duration, 0, 1<<16)
	for b.Loop() {
		start := time.Now()
		if _, err := Evaluate(in, snap, now, Options{}); err != nil {
			b.Fatal(err)
		}
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(start))
		}
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	if n := len(samples); n > 0 {
		b.ReportMetric(float64(samples[n/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(samples[n*99/100].Nanoseconds()), "p99-ns")
	}
}
