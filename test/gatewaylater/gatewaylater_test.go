// Package gatewaylater checks that the APIPolicy controller copes with the
// gateway's CRDs coming and going while it runs: it starts in a control
// plane without Envoy Gateway's CRDs (its own, so no other test can have
// installed them first), reports GatewayNotInstalled, enforces once the
// CRDs are installed, without a restart, and says so again when they go.
package gatewaylater

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/envoygateway"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

var (
	env *testenv.Environment
	k8s client.Client
)

const ns = "shop"

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	var err error
	if env, err = testenv.Start(); err != nil { // Gateway API, cert-manager and apiwarden CRDs; not Envoy Gateway's
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	opts := ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}}
	opts.Cache = controllers.CacheOptions()
	mgr, err := ctrl.NewManager(env.Config, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := (&controllers.APIPolicyReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"),
		Renderer: envoygateway.Renderer{}, Authz: render.DefaultAuthzService}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = mgr.Start(ctx) }()
	sch := testenv.Scheme()
	if err := apiextensionsv1.AddToScheme(sch); err != nil { // the test removes a CRD
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if k8s, err = client.New(env.Config, client.Options{Scheme: sch}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, name := range []string{ns, render.DefaultAuthzService.Namespace} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// eventually polls cond for up to 30 s and fails with what it last saw.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("timed out waiting for %s; last: %s", what, last)
}

// enforced waits until the policy's Enforced condition has status and
// reason for its current generation, and returns it.
func enforced(t *testing.T, name string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	eventually(t, fmt.Sprintf("%s Enforced=%s/%s", name, status, reason), func() (bool, string) {
		var p apiwardenv1alpha1.APIPolicy
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(p.Status.Conditions, apiwardenv1alpha1.ConditionEnforced)
		if c == nil {
			return false, "no Enforced condition"
		}
		got = *c
		return c.Status == status && c.Reason == reason && c.ObservedGeneration == p.Generation, fmt.Sprintf("%+v", *c)
	})
	return got
}

func TestEnvoyGatewayInstalledLaterAndRemoved(t *testing.T) {
	ctx := context.Background()
	if err := k8s.List(ctx, &egv1a1.SecurityPolicyList{}); !meta.IsNoMatchError(err) {
		t.Fatalf("this test needs a control plane without Envoy Gateway's CRDs; listing SecurityPolicies gave %v", err)
	}
	route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
	}}
	policy := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: "orders"}},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "partners"}}}},
	}}
	for _, o := range []client.Object{route, policy} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	// 1. Without the CRDs the policy says which one is missing.
	c := enforced(t, "orders-api", metav1.ConditionFalse, apiwardenv1alpha1.ReasonGatewayNotInstalled)
	if !strings.Contains(c.Message, "securitypolicies.gateway.envoyproxy.io") {
		t.Errorf("the GatewayNotInstalled message does not name the missing CRD: %q", c.Message)
	}

	// 2. Installing them is enough: no restart, no change to the policy.
	if err := env.InstallEnvoyGatewayCRDs(); err != nil {
		t.Fatal(err)
	}
	enforced(t, "orders-api", metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)
	const rendered = "orders-api-httproute-orders"
	var sp egv1a1.SecurityPolicy
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: rendered}, &sp); err != nil {
		t.Fatalf("SecurityPolicy %s after the CRDs came: %v", rendered, err)
	}

	// 3. The CRD goes (and its objects with it): the policy says so again.
	crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: "securitypolicies.gateway.envoyproxy.io"}}
	if err := k8s.Delete(ctx, crd); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the SecurityPolicy CRD to be gone", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(crd), crd)
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	enforced(t, "orders-api", metav1.ConditionFalse, apiwardenv1alpha1.ReasonGatewayNotInstalled)

	// 4. It comes back: the SecurityPolicy is applied again, although the
	// controller had applied the same content before (it must not skip
	// the apply as a no-op).
	if err := env.InstallEnvoyGatewayCRDs(); err != nil {
		t.Fatal(err)
	}
	enforced(t, "orders-api", metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)
	eventually(t, "the SecurityPolicy to be applied again", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: rendered}, &egv1a1.SecurityPolicy{})
		return err == nil, fmt.Sprint(err)
	})
}
