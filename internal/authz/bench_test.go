package authz

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// BenchmarkCheck is one decision against a key set of 10,000 consumers and a
// policy with three rules, with metrics recorded as the front ends do:
//
//	go test ./internal/authz -run '^$' -bench Check -benchmem
func BenchmarkCheck(b *testing.B) {
	var ks []testKey
	for i := range 10000 {
		ks = append(ks, testKey{consumer: fmt.Sprintf("c%d", i), roles: []string{"reader"}})
	}
	s, k := newTestStore(b, testPolicy(func(p *apiwardenv1alpha1.APIPolicySpec) {
		p.Authorization = &apiwardenv1alpha1.Authorization{Rules: []apiwardenv1alpha1.AuthorizationRule{
			{Name: "deny-admin", Action: apiwardenv1alpha1.AuthorizationActionDeny, Paths: []apiwardenv1alpha1.PathMatch{{Value: "/admin"}}},
			{Name: "writers", Action: apiwardenv1alpha1.AuthorizationActionAllow, Roles: []string{"writer"}},
			{Name: "readers", Action: apiwardenv1alpha1.AuthorizationActionAllow, Roles: []string{"reader"}, Methods: []apiwardenv1alpha1.HTTPMethod{"GET"}},
		}}
	}), ks...)
	s.metrics = NewMetrics(nil)
	in := req("GET", "/orders/42?expand=items", http.Header{"X-Api-Key": {k["c5000"]}, "Accept": {"application/json"}, "User-Agent": {"bench"}})
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		r := s.Check(in, now)
		if r.Code != Allowed {
			b.Fatal(r.Code)
		}
		s.Observe(HTTP, in, &r, time.Microsecond)
	}
}
