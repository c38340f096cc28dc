package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/policyreport"
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
	// The namespace's PolicyReport: bare fails TLS, legacy's TLS is waived.
	report := func() (*unstructured.Unstructured, policyreport.Report) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(policyreport.GVK)
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: cns, Name: policyreport.Name}, u); err != nil {
			return nil, policyreport.Report{}
		}
		rep, err := policyreport.FromUnstructured(u)
		if err != nil {
			t.Fatal(err)
		}
		return u, rep
	}
	reported := func(want policyreport.Summary, results ...string) func() bool {
		return func() bool {
			_, rep := report()
			var got []string
			for _, r := range rep.Results {
				got = append(got, r.Resources[0].Kind+"/"+r.Resources[0].Name+" "+r.Policy+"/"+r.Rule+"="+r.Result)
			}
			return rep.Summary == want && strings.Join(got, ",") == strings.Join(results, ",")
		}
	}
	eventually(t, "the PolicyReport of the objects made before the baseline", reported(policyreport.Summary{Fail: 1, Skip: 1},
		"Ingress/bare "+cns+"/TLS=fail", "Ingress/legacy "+cns+"/TLS=skip"))
	if _, rep := report(); rep.Results[0].Properties["codes"] != "TLSMissing" || rep.Results[1].Properties["exemption"] != "legacy" ||
		rep.Results[0].Source != "apiwarden" || rep.Results[0].Category == "" {
		t.Errorf("PolicyReport results: %+v", rep.Results)
	}
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
	u, _ := report()
	time.Sleep(3 * time.Second)
	if now := status().ResourceVersion; now != rv {
		t.Errorf("a resync of an unchanged cluster wrote the status: resourceVersion %s -> %s", rv, now)
	}
	if now, _ := report(); now == nil || now.GetResourceVersion() != u.GetResourceVersion() {
		t.Errorf("a resync of an unchanged cluster wrote the PolicyReport")
	}
	// A report deleted by hand is written again.
	if err := k8s.Delete(ctx, u); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted PolicyReport written again", reported(policyreport.Summary{Fail: 1, Skip: 1},
		"Ingress/bare "+cns+"/TLS=fail", "Ingress/legacy "+cns+"/TLS=skip"))
	// So is one whose content was changed by hand (its hash annotation left alone).
	u, _ = report()
	if err := k8s.Patch(ctx, u, client.RawPatch(types.MergePatchType, []byte(`{"summary":{"fail":0,"pass":7}}`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the edited PolicyReport written again", reported(policyreport.Summary{Fail: 1, Skip: 1},
		"Ingress/bare "+cns+"/TLS=fail", "Ingress/legacy "+cns+"/TLS=skip"))
	if n := eventsFor("bare"); n != 1 {
		t.Errorf("Events repeated on resync: %d", n)
	}

	// The exemption expires: legacy becomes violating, at the expiry.
	fake.Advance(2 * time.Hour)
	eventually(t, "the expired exemption counted as a violation", counts(2, 0, 0, 2))
	eventually(t, "the expired exemption reported as a failure", reported(policyreport.Summary{Fail: 2},
		"Ingress/bare "+cns+"/TLS=fail", "Ingress/legacy "+cns+"/TLS=fail"))

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
	eventually(t, "the fix reported as a pass", reported(policyreport.Summary{Pass: 1, Fail: 1},
		"Ingress/legacy "+cns+"/TLS=fail", "Ingress/bare "+cns+"/TLS=pass"))
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
	eventually(t, "the Gateway reported", reported(policyreport.Summary{Pass: 1, Fail: 2},
		"Gateway/edge "+cns+"/TLS=fail", "Ingress/legacy "+cns+"/TLS=fail", "Ingress/bare "+cns+"/TLS=pass"))

	// With no baseline left, the namespace has nothing to report.
	if err := k8s.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the PolicyReport removed with the baseline", func() bool { u, _ := report(); return u == nil })
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
// reconciles returns how many reconciles controller has finished, from
// controller-runtime's own counter: a test that asserts that a change
// wrote nothing first waits for the reconcile the change caused.
func reconciles(t *testing.T, controller string) float64 {
	t.Helper()
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == controller {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

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

// TestPolicyReportSharedGateway: a route attached to a Gateway of another
// namespace is covered by the APIPolicy on that Gateway; its namespace's
// PolicyReport says so, and follows when that policy goes.
func TestPolicyReportSharedGateway(t *testing.T) {
	ctx := context.Background()
	runs++
	app, infra := fmt.Sprintf("app-%d", runs), fmt.Sprintf("infra-%d", runs)
	for _, n := range []string{app, infra} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"shared-gw-test": app}}}); err != nil {
			t.Fatal(err)
		}
	}
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: infra, Name: "shared"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: "eg", Listeners: []gatewayv1.Listener{{Name: "https", Protocol: gatewayv1.HTTPSProtocolType, Port: 443,
			TLS:           &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "shared-cert"}}},
			AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: ptr.To(gatewayv1.NamespacesFromAll)}}}}}}
	route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: app, Name: "orders"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "shared", Namespace: ptr.To(gatewayv1.Namespace(infra))}}}}}
	policy := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: infra, Name: "edge"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{gwRef("Gateway", "shared")},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}}},
	}}
	b := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: app}, Spec: apiwardenv1alpha1.APIBaselineSpec{
		EnforcementAction: apiwardenv1alpha1.EnforcementActionAudit,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": app}},
		Require:           &apiwardenv1alpha1.BaselineRequirements{Authentication: &apiwardenv1alpha1.AuthenticationRequirement{}},
	}}
	for _, o := range []client.Object{gw, route, policy, b} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	result := func(want string) func() bool {
		return func() bool {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(policyreport.GVK)
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: app, Name: policyreport.Name}, u); err != nil {
				return false
			}
			rep, err := policyreport.FromUnstructured(u)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Results {
				if r.Resources[0].Kind == "HTTPRoute" && r.Resources[0].Name == "orders" && r.Rule == "Authentication" {
					return r.Result == want
				}
			}
			return false
		}
	}
	eventually(t, "the route reported as authenticated through the shared Gateway's policy", result("pass"))
	if err := k8s.Delete(ctx, policy); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the route reported as unauthenticated once that policy is gone", result("fail"))
}
