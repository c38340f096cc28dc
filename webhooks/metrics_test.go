package webhooks

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// TestAdmissionMetrics: a denied and a warned Ingress are counted by kind,
// result and code, and every decision is timed.
func TestAdmissionMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	in := testIngress("shop", bareRules)
	for _, action := range []apiwardenv1alpha1.EnforcementAction{apiwardenv1alpha1.EnforcementActionDeny, apiwardenv1alpha1.EnforcementActionWarn} {
		store := NewStore(nil)
		store.put(&apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: apiwardenv1alpha1.APIBaselineSpec{EnforcementAction: action}})
		post(Handlers(nil, store, Options{Metrics: m})[IngressPath], "application/json", review(t, in))
	}
	want := `
# HELP apiwarden_admission_decisions_total Admission decisions by kind, result (allowed, warned, denied) and violation code (none when allowed without violations); a decision with several codes counts once per code.
# TYPE apiwarden_admission_decisions_total counter
apiwarden_admission_decisions_total{code="AuthMissing",kind="Ingress",result="denied"} 1
apiwarden_admission_decisions_total{code="AuthMissing",kind="Ingress",result="warned"} 1
apiwarden_admission_decisions_total{code="RateLimitMissing",kind="Ingress",result="denied"} 1
apiwarden_admission_decisions_total{code="RateLimitMissing",kind="Ingress",result="warned"} 1
apiwarden_admission_decisions_total{code="TLSMissing",kind="Ingress",result="denied"} 1
apiwarden_admission_decisions_total{code="TLSMissing",kind="Ingress",result="warned"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "apiwarden_admission_decisions_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 1 {
		t.Errorf("duration series: %d", n)
	}
}
