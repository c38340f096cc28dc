package controllers_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/render/envoygateway"
	"github.com/apiwarden/apiwarden/internal/render/rendertest"
)

func gwRef(kind, name string) apiwardenv1alpha1.PolicyTargetReference {
	return apiwardenv1alpha1.PolicyTargetReference{Group: gatewayv1.GroupName, Kind: kind, Name: name}
}

func policyCond(t *testing.T, name, typ string) *metav1.Condition {
	return policyCondIn(t, ns, name, typ)
}

func policyCondIn(t *testing.T, namespace, name, typ string) *metav1.Condition {
	t.Helper()
	var p apiwardenv1alpha1.APIPolicy
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, &p); err != nil {
		return nil
	}
	if p.Status.ObservedGeneration != p.Generation {
		return nil
	}
	return meta.FindStatusCondition(p.Status.Conditions, typ)
}

func waitCond(t *testing.T, name, typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	return waitCondIn(t, ns, name, typ, status, reason)
}

func waitCondIn(t *testing.T, namespace, name, typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var got *metav1.Condition
	deadline := time.Now().Add(20 * time.Second)
	for {
		got = policyCondIn(t, namespace, name, typ)
		if got != nil && got.Status == status && got.Reason == reason {
			return got
		}
		if time.Now().After(deadline) {
			l := logs.String()
			t.Fatalf("timed out waiting for %s %s=%s/%s; last: %+v\nlogs: %s", name, typ, status, reason, got, l[max(0, len(l)-4000):])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func exists(t *testing.T, o client.Object, name string) bool {
	t.Helper()
	err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, o)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func updatePolicy(t *testing.T, name string, mutate func(*apiwardenv1alpha1.APIPolicy)) {
	t.Helper()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var p apiwardenv1alpha1.APIPolicy
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			return err
		}
		mutate(&p)
		return k8s.Update(context.Background(), &p)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestAPIPolicyController walks one policy through the controller's life:
// the gateway's CRDs missing then installed (no restart), rendering and
// server-side apply of every kind, a conflict, an update that prunes, a
// target that goes and comes back, DryRun, and status written only on change.
func TestAPIPolicyController(t *testing.T) {
	ctx := context.Background()
	newNamespace(t)
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: "eg",
		Listeners: []gatewayv1.Listener{
			{Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: 80},
			{Name: "https", Protocol: gatewayv1.HTTPSProtocolType, Port: 443, TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "edge-cert"}}}},
		},
	}}
	route := func() *gatewayv1.HTTPRoute {
		return &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"}, Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge", SectionName: ptr.To(gatewayv1.SectionName("https"))}}},
		}}
	}
	for _, o := range []client.Object{gw, route()} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	orders := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{gwRef("HTTPRoute", "orders")},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "partners"}}}},
		RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyConsumer, Requests: 10, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
		Request:        &apiwardenv1alpha1.RequestLimits{MaxBodyBytes: ptr.To[int64](1 << 20)},
	}}
	edge := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge-policy"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{gwRef("Gateway", "edge")},
		TLS:        &apiwardenv1alpha1.TLSPolicy{MinVersion: apiwardenv1alpha1.TLSVersion13, HTTPRedirect: apiwardenv1alpha1.FeatureEnabled, HSTS: &apiwardenv1alpha1.HSTS{MaxAgeSeconds: 31536000}},
	}}
	for _, o := range []client.Object{orders, edge} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	// Envoy Gateway's CRDs may have been installed by an earlier test of
	// this package; test/gatewaylater checks, in a control plane of its
	// own, the GatewayNotInstalled condition and the CRDs arriving (and
	// going) while the manager runs.
	installEnvoyGatewayCRDs(t)
	var sp egv1a1.SecurityPolicy
	waitCond(t, "orders-api", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)
	waitCond(t, "edge-policy", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)

	// The metrics endpoint counts policies by their Enforced condition.
	if got := metricValue(t, "apiwarden_policies", map[string]string{"enforced": "True", "reason": "Enforced"}); got < 2 {
		t.Errorf("apiwarden_policies{enforced=True,reason=Enforced} = %v, want at least 2", got)
	}

	// What was applied: owned by the policy, managed by apiwarden.
	name := "orders-api-httproute-orders"
	if !exists(t, &sp, name) {
		t.Fatalf("SecurityPolicy %s was not applied", name)
	}
	if sp.Spec.ExtAuth == nil || sp.Spec.ExtAuth.GRPC == nil || *sp.Spec.ExtAuth.ContextExtensions[0].Value != ns+"/orders-api" {
		t.Errorf("SecurityPolicy extAuth = %+v", sp.Spec.ExtAuth)
	}
	if len(sp.OwnerReferences) != 1 || sp.OwnerReferences[0].Name != "orders-api" || !*sp.OwnerReferences[0].Controller {
		t.Errorf("owner references = %+v", sp.OwnerReferences)
	}
	managed := false
	for _, mf := range sp.ManagedFields {
		managed = managed || (mf.Manager == "apiwarden" && mf.Operation == metav1.ManagedFieldsOperationApply)
	}
	if !managed {
		t.Errorf("SecurityPolicy not server-side applied by apiwarden: %+v", sp.ManagedFields)
	}
	var btp egv1a1.BackendTrafficPolicy
	if !exists(t, &btp, name) || btp.Spec.RequestBuffer == nil || btp.Spec.RateLimit == nil {
		t.Fatalf("BackendTrafficPolicy %s missing or incomplete: %+v", name, btp.Spec)
	}
	var ctp egv1a1.ClientTrafficPolicy
	if !exists(t, &ctp, "edge-policy-gateway-edge") || *ctp.Spec.TLS.MinVersion != egv1a1.TLSv13 || ctp.Spec.Headers.LateResponseHeaders.Set[0].Name != "Strict-Transport-Security" {
		t.Fatalf("ClientTrafficPolicy missing or wrong: %+v", ctp.Spec)
	}
	var redirect gatewayv1.HTTPRoute
	if !exists(t, &redirect, "edge-policy-gateway-edge-http-https-redirect") {
		t.Fatal("the HTTPS redirect route was not applied")
	}
	var grant gatewayv1.ReferenceGrant
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: envNS, Name: "apiwarden-authz-from-" + ns}, &grant); err != nil {
		t.Fatalf("ReferenceGrant for the authz Service: %v", err)
	}
	// Deleted by someone, it comes back: without it Envoy Gateway refuses
	// the SecurityPolicies' ext_authz backend.
	if err := k8s.Delete(ctx, &grant); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the authz ReferenceGrant to be applied again", func() bool {
		var again gatewayv1.ReferenceGrant
		err := k8s.Get(ctx, client.ObjectKeyFromObject(&grant), &again)
		return err == nil && again.UID != grant.UID
	})
	var p apiwardenv1alpha1.APIPolicy
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(orders), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Status.Targets) != 1 || len(p.Status.Targets[0].Rendered) != 2 {
		t.Fatalf("status targets = %+v", p.Status.Targets)
	}

	// Status is written only when it changes: a change to the target that
	// changes nothing rendered leaves the policy's resourceVersion alone.
	rv := p.ResourceVersion
	var r gatewayv1.HTTPRoute
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orders"}, &r); err != nil {
		t.Fatal(err)
	}
	r.Labels = map[string]string{"touched": "yes"}
	before := reconciles(t, "apipolicy")
	if err := k8s.Update(ctx, &r); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reconcile after the route's change", func() bool { return reconciles(t, "apipolicy") > before })
	time.Sleep(time.Second) // and any write it would make
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(orders), &p); err != nil {
		t.Fatal(err)
	}
	if p.ResourceVersion != rv {
		t.Errorf("status rewritten without a change: resourceVersion %s -> %s", rv, p.ResourceVersion)
	}

	// A newer policy on the same route conflicts; the older one stays.
	dup := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-dup"}, Spec: *orders.Spec.DeepCopy()}
	dup.Spec.Mode = ""
	time.Sleep(1100 * time.Millisecond) // creationTimestamp has one-second resolution
	if err := k8s.Create(ctx, dup); err != nil {
		t.Fatal(err)
	}
	c := waitCond(t, "orders-dup", apiwardenv1alpha1.ConditionAccepted, metav1.ConditionFalse, apiwardenv1alpha1.ReasonConflicted)
	if !strings.Contains(c.Message, "orders-api") {
		t.Errorf("Conflicted message does not name the winner: %q", c.Message)
	}
	if exists(t, &egv1a1.SecurityPolicy{}, "orders-dup-httproute-orders") {
		t.Error("the conflicted policy rendered objects")
	}
	waitCond(t, "orders-api", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)

	// An update converges and prunes what is no longer rendered.
	updatePolicy(t, "orders-api", func(p *apiwardenv1alpha1.APIPolicy) { p.Spec.RateLimit, p.Spec.Request = nil, nil })
	eventually(t, "BackendTrafficPolicy pruned", func() bool { return !exists(t, &egv1a1.BackendTrafficPolicy{}, name) })
	waitCond(t, "orders-api", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)

	// The target goes: TargetNotFound, and what was rendered for it is
	// pruned. It comes back: the watch renders it again at once.
	if err := k8s.Delete(ctx, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"}}); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "orders-api", apiwardenv1alpha1.ConditionAccepted, metav1.ConditionFalse, apiwardenv1alpha1.ReasonTargetNotFound)
	eventually(t, "SecurityPolicy pruned", func() bool { return !exists(t, &egv1a1.SecurityPolicy{}, name) })
	if err := k8s.Create(ctx, route()); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "orders-api", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)

	// DryRun renders nothing that blocks: the redirect and the TLS minimum
	// go, the HSTS header stays, and status says what would be blocked.
	updatePolicy(t, "edge-policy", func(p *apiwardenv1alpha1.APIPolicy) { p.Spec.Mode = apiwardenv1alpha1.PolicyModeDryRun })
	c = waitCond(t, "edge-policy", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionFalse, apiwardenv1alpha1.ReasonDryRun)
	if !strings.Contains(c.Message, "redirected to HTTPS") || !strings.Contains(c.Message, "below 1.3") {
		t.Errorf("DryRun message does not say what would be blocked: %q", c.Message)
	}
	eventually(t, "redirect route pruned in DryRun", func() bool {
		return !exists(t, &gatewayv1.HTTPRoute{}, "edge-policy-gateway-edge-http-https-redirect")
	})
	// The TLS minimum and HSTS (browsers keep it) both block: the
	// ClientTrafficPolicy that carried them goes.
	eventually(t, "ClientTrafficPolicy pruned in DryRun", func() bool {
		return !exists(t, &egv1a1.ClientTrafficPolicy{}, "edge-policy-gateway-edge")
	})
	if !strings.Contains(c.Message, "refuse plain HTTP") {
		t.Errorf("DryRun message does not report HSTS: %q", c.Message)
	}

	// An object apiwarden did not make is never taken over, even when it
	// has the name apiwarden would give its own.
	legacy := route()
	legacy.Name = "legacy"
	if err := k8s.Create(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	theirs := &egv1a1.SecurityPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken-httproute-legacy"}, Spec: egv1a1.SecurityPolicySpec{
		PolicyTargetReferences: egv1a1.PolicyTargetReferences{TargetRefs: []gatewayv1.LocalPolicyTargetReferenceWithSectionName{{
			LocalPolicyTargetReference: gatewayv1.LocalPolicyTargetReference{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: "legacy"}}}},
		CORS: &egv1a1.CORS{AllowOrigins: []egv1a1.Origin{"https://theirs.example.com"}},
	}}
	if err := k8s.Create(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	taken := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{gwRef("HTTPRoute", "legacy")},
		Authentication: orders.Spec.Authentication.DeepCopy(),
	}}
	if err := k8s.Create(ctx, taken); err != nil {
		t.Fatal(err)
	}
	c = waitCond(t, "taken", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionFalse, apiwardenv1alpha1.ReasonReconcileError)
	if !strings.Contains(c.Message, "not controlled by this APIPolicy") {
		t.Errorf("takeover refusal message: %q", c.Message)
	}
	if !exists(t, theirs, "taken-httproute-legacy") || len(theirs.OwnerReferences) != 0 || theirs.Spec.ExtAuth != nil {
		t.Errorf("apiwarden changed an object it does not own: %+v", theirs)
	}

	// Events record the changes.
	var events corev1.EventList
	if err := k8s.List(ctx, &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == "APIPolicy" {
			reasons[e.Reason] = true
		}
	}
	for _, want := range []string{apiwardenv1alpha1.ReasonEnforced, apiwardenv1alpha1.ReasonTargetNotFound, apiwardenv1alpha1.ReasonConflicted, apiwardenv1alpha1.ReasonDryRun, "Pruned"} {
		if !reasons[want] {
			t.Errorf("no Event with reason %s on the policies (got %v)", want, reasons)
		}
	}
}

// TestRenderedObjectsAccepted sends every object of the renderer's golden
// cases to the apiserver (server-side dry run), so the real Envoy Gateway and
// Gateway API schemas and CEL rules judge them.
func TestRenderedObjectsAccepted(t *testing.T) {
	ctx := context.Background()
	if err := env.InstallEnvoyGatewayCRDs(); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	files, err := filepath.Glob("../internal/render/envoygateway/testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	n := 0
	for _, f := range files {
		out := rendertest.RenderFile(t, envoygateway.Renderer{}, f)
		for _, doc := range strings.Split(string(out), "\n---\n") {
			var u unstructured.Unstructured
			body := strings.TrimPrefix(strings.TrimSpace(doc), "---")
			if err := yaml.Unmarshal([]byte(body), &u.Object); err != nil || u.Object == nil || u.GetKind() == "" {
				continue // comment-only chunk
			}
			if n := u.GetNamespace(); n != "" {
				if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil && !apierrors.IsAlreadyExists(err) {
					t.Fatal(err)
				}
			}
			eventually(t, "CRDs served", func() bool {
				err := k8s.Patch(ctx, &u, client.Apply, client.DryRunAll, client.FieldOwner("apiwarden-test"), client.ForceOwnership)
				if err != nil && !meta.IsNoMatchError(err) {
					t.Fatalf("%s: %s %s rejected by the apiserver: %v", filepath.Base(f), u.GetKind(), u.GetName(), err)
				}
				return err == nil
			})
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d objects checked", n)
	}
	t.Logf("%d rendered objects accepted by the apiserver", n)
}

// TestStatusDropsVanishedObjects: a rendered object the status lists that
// is already gone (deleted by someone, or a prune whose status write was
// lost) leaves the list on the next reconcile instead of staying forever.
func TestStatusDropsVanishedObjects(t *testing.T) {
	ctx := context.Background()
	installEnvoyGatewayCRDs(t)
	newNamespace(t)
	route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}}}}
	p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{gwRef("HTTPRoute", "orders")},
		RateLimit:  &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 10, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
	}}
	for _, o := range []client.Object{route, p} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitCond(t, "orders-api", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)
	vanished := apiwardenv1alpha1.RenderedObject{APIVersion: "gateway.envoyproxy.io/v1alpha1", Kind: "SecurityPolicy", Name: "orders-api-vanished"}
	var cur apiwardenv1alpha1.APIPolicy
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Status.Targets[0].Rendered = append(cur.Status.Targets[0].Rendered, vanished)
	if err := k8s.Status().Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	// A spec change makes the controller reconcile the policy.
	cur.Spec.RateLimit.Limits[0].Requests = 20
	if err := k8s.Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the vanished object to leave the status", func() bool {
		var got apiwardenv1alpha1.APIPolicy
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil || got.Status.ObservedGeneration != got.Generation {
			return false
		}
		for _, tgt := range got.Status.Targets {
			if slices.Contains(tgt.Rendered, vanished) {
				return false
			}
		}
		return true
	})
}
