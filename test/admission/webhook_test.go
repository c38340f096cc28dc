// Package admission runs apiwarden's admission webhooks behind a real kube-apiserver
// (envtest): the apiserver calls them as it would in a cluster.
package admission

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/testenv"
	"github.com/apiwarden/apiwarden/webhooks"
)

var (
	store     *webhooks.Store // what the webhook decides from
	k8s       client.Client   // talks to the apiserver directly
	cache     client.Reader   // the manager's cache, which the webhook reads
	restCfg   *rest.Config
	testStart = time.Now()
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	env, err := testenv.Start(testenv.WithWebhooks())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restCfg = env.Config

	wh := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  testenv.Scheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir,
		}),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err = webhooks.Setup(ctx, mgr, webhooks.Options{OwnNamespace: "apiwarden-system"}, true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		fmt.Fprintln(os.Stderr, "cache did not sync")
		return 1
	}
	cache = mgr.GetCache()
	if k8s, err = client.New(env.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The webhook server must answer before the suite starts.
	deadline := time.Now().Add(30 * time.Second)
	for mgr.GetWebhookServer().StartedChecker()(nil) != nil {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "webhook server did not start")
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, ns := range []string{"shop", "warn-ns", "guard", "apiwarden-system"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"suite": "webhooks"}}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	// The Deny baseline for namespace shop, which several tests rely on.
	if err := k8s.Create(ctx, &apiwardenv1alpha1.APIBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: apiwardenv1alpha1.APIBaselineSpec{
			EnforcementAction: apiwardenv1alpha1.EnforcementActionDeny,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "shop"}},
		},
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if store.Synced() && store.Has(&apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, true) {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "the cache did not observe the baseline")
			return 1
		}
	}
	return m.Run()
}

func mustYAML[T client.Object](t *testing.T, obj T, doc string) T {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		t.Fatalf("bad test YAML: %v", err)
	}
	return obj
}

// createAndWait creates obj and waits until the manager's cache, which the
// webhook reads, has it.
func createAndWait(t *testing.T, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
	waitCache(t, obj, true)
}

// waitCache waits until the manager's cache, and the admission store fed by
// its informers, have observed obj (or its absence).
func waitCache(t *testing.T, obj client.Object, present bool) {
	t.Helper()
	defer waitStore(t, obj, present)
	key := client.ObjectKeyFromObject(obj)
	fresh := obj.DeepCopyObject().(client.Object)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cache.Get(context.Background(), key, fresh)
		if present && err == nil && rv(fresh) >= rv(obj) {
			return
		}
		if !present && apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not observe %T %s (present=%v): %v", obj, key, present, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStore waits until the admission store agrees with the cache about obj.
func waitStore(t *testing.T, obj client.Object, present bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !store.Has(obj, present) {
		if time.Now().After(deadline) {
			t.Fatalf("the admission store did not observe %T %s (present=%v)", obj, client.ObjectKeyFromObject(obj), present)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rv reads a resourceVersion as the number etcd makes it. It is opaque to
// clients in general; this test only needs "at least as new as".
func rv(o client.Object) uint64 {
	n, _ := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
	return n
}

func baseline(t *testing.T, name string, action apiwardenv1alpha1.EnforcementAction, namespace string) *apiwardenv1alpha1.APIBaseline {
	t.Helper()
	b := &apiwardenv1alpha1.APIBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: apiwardenv1alpha1.APIBaselineSpec{
			EnforcementAction: action,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": namespace}},
		},
	}
	createAndWait(t, b)
	return b
}

// webhookCalls returns how many requests the webhook server has answered on
// path, from controller-runtime's own request counter.
func webhookCalls(path string) float64 {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		panic(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && l.GetValue() == path {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

func denied(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("the apiserver admitted the object; want a denial")
	}
	if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Fatalf("want a denial, got %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the denial does not say %q:\n%v", w, err)
		}
	}
}

const shopIngress = `
metadata: {name: storefront, namespace: shop}
spec:
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
`

func TestIngressDeniedThenAdmitted(t *testing.T) {
	ctx := context.Background()

	bare := mustYAML(t, &networkingv1.Ingress{}, shopIngress)
	err := k8s.Create(ctx, bare)
	denied(t, err,
		`admission webhook "ingresses.apiwarden.io" denied the request`,
		`Ingress shop/storefront exposes host shop.example.com without TLS: spec.tls has no entry for it. Add a TLS entry, or ask a platform owner for an exemption in APIBaseline "default".`,
		"Ingress shop/storefront is exposed without authentication",
		"without a rate limit")

	createAndWait(t, mustYAML(t, &apiwardenv1alpha1.APIPolicy{}, `
metadata: {name: storefront, namespace: shop}
spec:
  targetRefs: [{group: networking.k8s.io, kind: Ingress, name: storefront}]
  authentication: {apiKey: {keySetRefs: [{name: shop-keys}]}}
  rateLimit: {limits: [{by: ClientIP, requests: 20, unit: Second}]}
`))
	withTLS := mustYAML(t, &networkingv1.Ingress{}, shopIngress+"  tls: [{hosts: [shop.example.com], secretName: shop-tls}]\n")
	if err := k8s.Create(ctx, withTLS); err != nil {
		t.Fatalf("a protected Ingress was rejected: %v", err)
	}

	// An update that removes TLS is rejected too.
	withTLS.Spec.TLS = nil
	denied(t, k8s.Update(ctx, withTLS), "without TLS")
}

func TestHTTPRouteNeedsAPolicy(t *testing.T) {
	ctx := context.Background()
	route := func(name string) *gatewayv1.HTTPRoute {
		return mustYAML(t, &gatewayv1.HTTPRoute{}, fmt.Sprintf(`
metadata: {name: %s, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: orders, port: 8080}]}]
`, name))
	}
	denied(t, k8s.Create(ctx, route("orders")), "HTTPRoute shop/orders is exposed without authentication", "HTTPRoute orders or Gateway edge")

	// A policy on the parent Gateway covers every route attached to it.
	createAndWait(t, mustYAML(t, &apiwardenv1alpha1.APIPolicy{}, `
metadata: {name: edge, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]
  authentication: {jwt: {providers: [{name: idp, issuer: "https://idp.example.com", jwksURI: "https://idp.example.com/jwks"}]}}
  rateLimit: {limits: [{by: Consumer, requests: 5, unit: Second}]}
`))
	if err := k8s.Create(ctx, route("orders")); err != nil {
		t.Fatalf("a route covered by its Gateway's policy was rejected: %v", err)
	}

	// A route with no parent exposes nothing; matchConditions keep the
	// apiserver from calling the webhook at all.
	before := webhookCalls(webhooks.HTTPRoutePath)
	detached := route("detached")
	detached.Spec.ParentRefs = nil
	if err := k8s.Create(ctx, detached); err != nil {
		t.Fatal(err)
	}
	if after := webhookCalls(webhooks.HTTPRoutePath); after != before {
		t.Errorf("the webhook was called for a route without parents (%v → %v calls)", before, after)
	}
}

func TestServicesOutsideScopeNeverReachTheWebhook(t *testing.T) {
	ctx := context.Background()
	lb := func(ns, name string, typ corev1.ServiceType) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Type: typ, Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
			}},
		}
	}
	before := webhookCalls(webhooks.ServicePath)
	// kube-system is outside every webhook's namespaceSelector.
	if err := k8s.Create(ctx, lb("kube-system", "public-http", corev1.ServiceTypeLoadBalancer)); err != nil {
		t.Fatalf("a LoadBalancer in kube-system was rejected: %v", err)
	}
	// So is a namespace labelled apiwarden.io/exclude=true.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "excluded", Labels: map[string]string{"apiwarden.io/exclude": "true"}}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, lb("excluded", "public-http", corev1.ServiceTypeLoadBalancer)); err != nil {
		t.Fatalf("a LoadBalancer in an excluded namespace was rejected: %v", err)
	}
	// A ClusterIP Service is filtered out by matchConditions.
	if err := k8s.Create(ctx, lb("shop", "internal", corev1.ServiceTypeClusterIP)); err != nil {
		t.Fatalf("a ClusterIP Service was rejected: %v", err)
	}
	if after := webhookCalls(webhooks.ServicePath); after != before {
		t.Fatalf("the webhook was called %v times for Services it must never see", after-before)
	}
	// A LoadBalancer in a governed namespace does reach it, and is denied.
	denied(t, k8s.Create(ctx, lb("shop", "public-http", corev1.ServiceTypeLoadBalancer)),
		`Service shop/public-http exposes plain-HTTP port "http" (80) on its load balancer without TLS.`)
	if after := webhookCalls(webhooks.ServicePath); after != before+1 {
		t.Fatalf("want exactly one webhook call for the governed LoadBalancer, got %v", after-before)
	}
}

// warningCollector records the warnings the apiserver returns.
type warningCollector struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningCollector) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func TestWarnModeAdmitsWithWarnings(t *testing.T) {
	baseline(t, "warn-only", apiwardenv1alpha1.EnforcementActionWarn, "warn-ns")
	cfg := rest.CopyConfig(restCfg)
	collector := &warningCollector{}
	cfg.WarningHandler = collector
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in := mustYAML(t, &networkingv1.Ingress{}, strings.Replace(shopIngress, "namespace: shop", "namespace: warn-ns", 1))
	if _, err := cs.NetworkingV1().Ingresses("warn-ns").Create(context.Background(), in, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a Warn baseline rejected the Ingress: %v", err)
	}
	collector.mu.Lock()
	defer collector.mu.Unlock()
	all := strings.Join(collector.warnings, "\n")
	for _, want := range []string{"apiwarden TLSMissing: Ingress warn-ns/storefront exposes host shop.example.com without TLS", "apiwarden AuthMissing:", "apiwarden RateLimitMissing:"} {
		if !strings.Contains(all, want) {
			t.Errorf("no warning says %q; got:\n%s", want, all)
		}
	}
}

func TestPolicyGuard(t *testing.T) {
	baseline(t, "guard", apiwardenv1alpha1.EnforcementActionDeny, "guard")
	ctx := context.Background()
	policy := mustYAML(t, &apiwardenv1alpha1.APIPolicy{}, `
metadata: {name: api, namespace: guard}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api}]
  authentication: {apiKey: {keySetRefs: [{name: keys}]}}
  rateLimit: {limits: [{by: Global, requests: 100, unit: Second}]}
`)
	createAndWait(t, policy)
	route := mustYAML(t, &gatewayv1.HTTPRoute{}, `
metadata: {name: api, namespace: guard}
spec:
  parentRefs: [{name: edge}]
`)
	createAndWait(t, route)

	// Dropping authentication would leave the route bare.
	var current apiwardenv1alpha1.APIPolicy
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(policy), &current); err != nil {
		t.Fatal(err)
	}
	current.Spec.Authentication = nil
	denied(t, k8s.Update(ctx, &current),
		"This update of APIPolicy guard/api would leave exposed objects without the protection a Deny baseline requires: HTTPRoute guard/api (authentication, required by APIBaseline guard)")

	// An update that keeps protection is fine.
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(policy), &current); err != nil {
		t.Fatal(err)
	}
	current.Spec.RateLimit.Limits[0].Requests = 50
	if err := k8s.Update(ctx, &current); err != nil {
		t.Fatalf("an update that keeps protection was rejected: %v", err)
	}

	denied(t, k8s.Delete(ctx, policy),
		"Deleting APIPolicy guard/api would leave exposed objects without the protection a Deny baseline requires: HTTPRoute guard/api (authentication, rate limit, required by APIBaseline guard)")

	// Once the route is gone, the policy protects nothing and may go.
	if err := k8s.Delete(ctx, route); err != nil {
		t.Fatal(err)
	}
	waitCache(t, route, false)
	if err := k8s.Delete(ctx, policy); err != nil {
		t.Fatalf("deleting a policy that protects nothing was rejected: %v", err)
	}

	// A policy on a Gateway protects every route attached to it.
	gwPolicy := mustYAML(t, &apiwardenv1alpha1.APIPolicy{}, `
metadata: {name: edge, namespace: guard}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]
  authentication: {apiKey: {keySetRefs: [{name: keys}]}}
  rateLimit: {limits: [{by: Global, requests: 100, unit: Second}]}
`)
	createAndWait(t, gwPolicy)
	attached := mustYAML(t, &gatewayv1.HTTPRoute{}, `
metadata: {name: attached, namespace: guard}
spec:
  parentRefs: [{name: edge}]
`)
	createAndWait(t, attached)
	denied(t, k8s.Delete(ctx, gwPolicy), "Deleting APIPolicy guard/edge would leave", "HTTPRoute guard/attached (authentication, rate limit")

	// An older, weaker policy that gains a target takes over from the
	// target's own policy (older wins): the guard checks the new targets too.
	weak := mustYAML(t, &apiwardenv1alpha1.APIPolicy{}, `
metadata: {name: a-weak, namespace: guard}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: other}]
  authentication: {apiKey: {keySetRefs: [{name: keys}]}}
`)
	createAndWait(t, weak)
	createAndWait(t, mustYAML(t, &apiwardenv1alpha1.APIPolicy{}, `
metadata: {name: q-strong, namespace: guard}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: b}]
  authentication: {apiKey: {keySetRefs: [{name: keys}]}}
  rateLimit: {limits: [{by: Global, requests: 100, unit: Second}]}
`))
	createAndWait(t, mustYAML(t, &gatewayv1.HTTPRoute{}, `
metadata: {name: b, namespace: guard}
spec:
  parentRefs: [{name: internal}]
`))
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(weak), weak); err != nil {
		t.Fatal(err)
	}
	weak.Spec.TargetRefs = append(weak.Spec.TargetRefs, apiwardenv1alpha1.PolicyTargetReference{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "b"})
	denied(t, k8s.Update(ctx, weak), "This update of APIPolicy guard/a-weak would leave", "HTTPRoute guard/b (rate limit")
}

func TestExemptionAdmitsUntilItExpires(t *testing.T) {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}}); err != nil {
		t.Fatal(err)
	}
	b := &apiwardenv1alpha1.APIBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy"},
		Spec: apiwardenv1alpha1.APIBaselineSpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "legacy"}},
			Exemptions: []apiwardenv1alpha1.Exemption{{
				Name: "old-portal", Target: apiwardenv1alpha1.ExemptionTarget{Namespace: "legacy", Kind: "Ingress", Name: "portal"},
				Reason: "OPS-42: portal moves to the gateway in Q1", Expires: metav1.NewTime(testStart.Add(time.Hour)),
			}},
		},
	}
	createAndWait(t, b)
	in := mustYAML(t, &networkingv1.Ingress{}, strings.NewReplacer("namespace: shop", "namespace: legacy", "name: storefront", "name: portal").Replace(shopIngress))
	if err := k8s.Create(ctx, in); err != nil {
		t.Fatalf("an exempted Ingress was rejected: %v", err)
	}
	// The same object, once the exemption has expired, is rejected.
	var current apiwardenv1alpha1.APIBaseline
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(b), &current); err != nil {
		t.Fatal(err)
	}
	current.Spec.Exemptions[0].Expires = metav1.NewTime(testStart.Add(-time.Minute))
	if err := k8s.Update(ctx, &current); err != nil {
		t.Fatal(err)
	}
	waitCache(t, &current, true)
	in.Labels = map[string]string{"touched": "yes"}
	denied(t, k8s.Update(ctx, in), "Ingress legacy/portal exposes host shop.example.com without TLS")

	// Setting, then removing, only the gateway annotations apiwarden writes
	// on its targets is admitted even now: they change no exposure
	// decision, and refusing them would keep a policy's protection off
	// this Ingress (or its finalizer on).
	for _, set := range []bool{true, false} {
		var cur networkingv1.Ingress
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(in), &cur); err != nil {
			t.Fatal(err)
		}
		if set {
			cur.Annotations = map[string]string{"traefik.ingress.kubernetes.io/router.middlewares": "legacy-auth@kubernetescrd"}
		} else {
			delete(cur.Annotations, "traefik.ingress.kubernetes.io/router.middlewares")
		}
		if err := k8s.Update(ctx, &cur); err != nil {
			t.Fatalf("an update of only the gateway annotations (set %v) was refused: %v", set, err)
		}
	}
}

// TestPolicyGuardLetsMetadataThrough: an APIPolicy on a Gateway with more
// routes than the guard checks (500) refuses changes it cannot check, but
// not an update of its metadata alone (the controller's finalizers,
// labels a GitOps tool sets), which protects nothing.
func TestPolicyGuardLetsMetadataThrough(t *testing.T) {
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "big"}}); err != nil {
		t.Fatal(err)
	}
	baseline(t, "big", apiwardenv1alpha1.EnforcementActionDeny, "big")
	policy := mustYAML(t, &apiwardenv1alpha1.APIPolicy{}, `
metadata: {name: edge, namespace: big}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]
  authentication: {apiKey: {keySetRefs: [{name: keys}]}}
  rateLimit: {limits: [{by: Global, requests: 100, unit: Second}]}
`)
	createAndWait(t, policy)
	createAndWait(t, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "big", Name: "edge"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: "eg", Listeners: []gatewayv1.Listener{{Name: "https", Protocol: gatewayv1.HTTPSProtocolType, Port: 443,
			TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "edge-cert"}}}}}}})
	for i := range 501 {
		route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "big", Name: fmt.Sprintf("r-%03d", i)},
			Spec: gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}}}}
		if err := k8s.Create(ctx, route); err != nil {
			t.Fatalf("route %d: %v", i, err)
		}
	}
	// The guard reads the routes from the manager's cache: wait for them.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var list gatewayv1.HTTPRouteList
		if err := cache.List(ctx, &list, client.InNamespace("big")); err == nil && len(list.Items) == 501 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache did not observe the 501 routes")
		}
	}

	var current apiwardenv1alpha1.APIPolicy
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(policy), &current); err != nil {
		t.Fatal(err)
	}
	current.Spec.RateLimit.Limits[0].Requests = 50
	denied(t, k8s.Update(ctx, current.DeepCopy()), "This update of APIPolicy big/edge cannot be checked: it protects more than 500 objects")

	current.Labels = map[string]string{"argocd.argoproj.io/instance": "edge"}
	current.Finalizers = append(current.Finalizers, "example.com/cleanup")
	current.Spec.RateLimit.Limits[0].Requests = 100
	if err := k8s.Update(ctx, &current); err != nil {
		t.Fatalf("an update of the labels and finalizers alone was refused: %v", err)
	}
	current.Finalizers = nil
	if err := k8s.Update(ctx, &current); err != nil {
		t.Fatalf("removing the finalizer was refused: %v", err)
	}
}
