package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestCoverageScan: objects that existed before the baseline are found;
// counts, violations and Compliant follow; one Event per violation, none
// on resync; a resync of an unchanged cluster writes nothing; an exemption
// that expires flips its object to violating; a fix clears the violation.
func TestCoverageScan(t *testing.T) {
	ctx := context.Background()
	runs++
	cns := fmt.Sprintf("coverage-%d", runs)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cns, Labels: map[string]string{"coverage-test": cns}}}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{testenv.Ingress(cns, "bare", false), testenv.Ingress(cns, "legacy", false),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: cns, Name: "internal"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	expires := metav1.NewTime(fake.Now().Add(time.Hour))
	b := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: cns}, Spec: apiwardenv1alpha1.APIBaselineSpec{
		EnforcementAction: apiwardenv1alpha1.EnforcementActionAudit,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"coverage-test": cns}},
		Require:           &apiwardenv1alpha1.BaselineRequirements{TLS: &apiwardenv1alpha1.TLSRequirement{MinVersion: apiwardenv1alpha1.TLSVersion12}},
		Exemptions: []apiwardenv1alpha1.Exemption{{Name: "legacy", Target: apiwardenv1alpha1.ExemptionTarget{Namespace: cns, Kind: "Ingress", Name: "legacy"},
			Controls: []apiwardenv1alpha1.Control{apiwardenv1alpha1.ControlTLS}, Reason: "OPS-1: migrating to the shared gateway", Expires: expires}},
	}}
	if err := k8s.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	status := func() apiwardenv1alpha1.APIBaseline {
		var got apiwardenv1alpha1.APIBaseline
		if err := k8s.Get(ctx, client.ObjectKey{Name: cns}, &got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	counts := func(exposed, protected, exempt, violating int32) func() bool {
		return func() bool {
			c := status().Status.Counts
			return c != nil && *c == apiwardenv1alpha1.ExposureCounts{Exposed: exposed, Protected: protected, Exempt: exempt, Violating: violating}
		}
	}
	eventually(t, "the objects made before the baseline counted", counts(2, 0, 1, 1))
	got := status()
	if len(got.Status.Violations) != 1 || got.Status.Violations[0].Name != "bare" || got.Status.Violations[0].Code != "TLSMissing" {
		t.Fatalf("violations: %+v", got.Status.Violations)
	}
	if c := findCond(got.Status.Conditions, apiwardenv1alpha1.ConditionCompliant); c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("Compliant: %+v", c)
	}
	eventsFor := func(name string) int {
		var list corev1.EventList
		if err := k8s.List(ctx, &list, client.InNamespace(cns)); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name && e.Reason == "TLSMissing" {
				n += int(e.Count)
				if e.Count == 0 {
					n++
				}
			}
		}
		return n
	}
	eventually(t, "an Event on the violating Ingress", func() bool { return eventsFor("bare") == 1 })

	// Steady state: resyncs every second write nothing and repeat no Event.
	rv := status().ResourceVersion
	time.Sleep(3 * time.Second)
	if now := status().ResourceVersion; now != rv {
		t.Errorf("a resync of an unchanged cluster wrote the status: resourceVersion %s -> %s", rv, now)
	}
	if n := eventsFor("bare"); n != 1 {
		t.Errorf("Events repeated on resync: %d", n)
	}

	// The exemption expires: legacy becomes violating, at the expiry.
	fake.Advance(2 * time.Hour)
	eventually(t, "the expired exemption counted as a violation", counts(2, 0, 0, 2))

	// A fix clears the violation.
	var bare networkingv1.Ingress
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: cns, Name: "bare"}, &bare); err != nil {
		t.Fatal(err)
	}
	bare.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"bare.example.com"}, SecretName: "bare-tls"}}
	if err := k8s.Update(ctx, &bare); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fixed Ingress protected", counts(2, 1, 0, 1))
	// The same counts on the metrics endpoint.
	for state, want := range map[string]float64{"protected": 1, "exempt": 0, "violating": 1} {
		if got := metricValue(t, "apiwarden_exposed_objects", map[string]string{"baseline": cns, "state": state}); got != want {
			t.Errorf("apiwarden_exposed_objects{state=%q} = %v, want %v", state, got, want)
		}
	}

	if v := status().Status.Violations; len(v) != 1 || v[0].Name != "legacy" {
		t.Errorf("violations after the fix: %+v", v)
	}

	// Gateway API objects are scanned too (their watches start once the
	// CRDs are seen): a plain-HTTP listener with no redirect violates.
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: cns, Name: "edge"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: "eg", Listeners: []gatewayv1.Listener{{Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: 80}}}}
	if err := k8s.Create(ctx, gw); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Gateway counted", counts(3, 1, 0, 2))
}

func findCond(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// metricValue reads one gauge or counter series from the controllers'
// metrics registry; -1 when absent.
func metricValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := policyMetrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
