package install

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/policyreport"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestUninstallOrder follows docs/install.md's "Uninstalling" with the real
// manager running as the chart's account: with apiwarden still running,
// deleting the APIBaselines and then the APIPolicies and APIKeySets leaves
// nothing behind that only apiwarden could clean up (a key delivered into
// another namespace, the hash store in apiwarden's namespace, the CEL
// params, the PolicyReport) and no object whose
// finalizer would hold the CRDs' deletion once the manager is gone.
func TestUninstallOrder(t *testing.T) {
	helmPath = tool(t, "helm")
	const release, namespace = "aw-uninstall", "aw-uninstall-system"
	const apps, team = "uninstall-apps", "uninstall-team"
	objs, _ := renderChart(t, release, namespace, nil)
	kept := withoutWebhooks(objs)
	ensureNamespace(t, namespace)
	applyAll(t, append(chartCRDs(t), kept...), nil)
	ports := make([]int, 1)
	var err error
	if ports[0], err = testenv.FreePort(); err != nil {
		t.Fatal(err)
	}
	probe := fmt.Sprintf("127.0.0.1:%d", ports[0])
	m := startManagerAs(t, namespace, release+"-apiwarden",
		"--roles=controllers", "--namespace="+namespace, "--leader-election-namespace="+namespace,
		"--metrics-bind-address=0", "--health-probe-bind-address="+probe)
	m.waitReady(probe)

	ctx := context.Background()
	ensureNamespace(t, apps)
	ensureNamespace(t, team)
	create := func(o client.Object) {
		t.Helper()
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
	}
	create(&gatewayv1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "keys"}, Spec: gatewayv1.ReferenceGrantSpec{
		From: []gatewayv1.ReferenceGrantFrom{{Group: "apiwarden.io", Kind: "APIKeySet", Namespace: apps}},
		To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Secret"}},
	}})
	// A key delivered into another namespace (a finalizer deletes it), an
	// exposed Service under a CEL-mode Audit baseline (params and a
	// PolicyReport), and the policy that protects it.
	create(&apiwardenv1alpha1.APIKeySet{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "keys"}, Spec: apiwardenv1alpha1.APIKeySetSpec{
		Consumers: []apiwardenv1alpha1.Consumer{{Name: "remote", SecretRef: &apiwardenv1alpha1.SecretDelivery{Namespace: team, Name: "api-key"}}}}})
	create(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "api"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})
	create(&apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{{Group: "", Kind: "Service", Name: "api"}},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{
			KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}}},
	}})
	create(&apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "uninstall"}, Spec: apiwardenv1alpha1.APIBaselineSpec{
		EnforcementAction: apiwardenv1alpha1.EnforcementActionAudit, Admission: apiwardenv1alpha1.AdmissionModeCEL,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": apps}},
	}})
	exists := func(ctx context.Context, o client.Object, ns, name string) bool {
		return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, o) == nil
	}
	report := func() client.Object {
		r := &unstructured.Unstructured{}
		r.SetAPIVersion("wgpolicyk8s.io/v1alpha2")
		r.SetKind("PolicyReport")
		return r
	}
	m.until("the delivered key, the hash store, the params and the PolicyReport", 60*time.Second, func(ctx context.Context) bool {
		return exists(ctx, &corev1.Secret{}, team, "api-key") && exists(ctx, &corev1.ConfigMap{}, apps, exposure.ParamsName) &&
			exists(ctx, report(), apps, policyreport.Name) && exists(ctx, &corev1.Secret{}, namespace, keystore.HashStoreName(apps, "keys"))
	})
	ks := &apiwardenv1alpha1.APIKeySet{}
	if !exists(ctx, ks, apps, "keys") || !slices.Contains(ks.Finalizers, controllers.Finalizer) {
		t.Fatalf("the APIKeySet has no cleanup finalizer (%v): the test would prove nothing", ks.Finalizers)
	}

	// Step 1, apiwarden running: the baselines, then the policies and key sets.
	// (Other tests share this apiserver: the baseline goes by name, where
	// the docs delete every one.)
	if err := k8s.Delete(ctx, &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "uninstall"}}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{&apiwardenv1alpha1.APIPolicy{}, &apiwardenv1alpha1.APIKeySet{}} {
		if err := k8s.DeleteAllOf(ctx, o, client.InNamespace(apps)); err != nil {
			t.Fatal(err)
		}
	}
	m.until("apiwarden's objects gone and what they made cleaned up", 60*time.Second, func(ctx context.Context) bool {
		var ps apiwardenv1alpha1.APIPolicyList
		var kss apiwardenv1alpha1.APIKeySetList
		if k8s.List(ctx, &ps, client.InNamespace(apps)) != nil || k8s.List(ctx, &kss, client.InNamespace(apps)) != nil {
			return false
		}
		return len(ps.Items)+len(kss.Items) == 0 && !exists(ctx, &apiwardenv1alpha1.APIBaseline{}, "", "uninstall") &&
			!exists(ctx, &corev1.Secret{}, team, "api-key") && !exists(ctx, &corev1.ConfigMap{}, apps, exposure.ParamsName) &&
			!exists(ctx, report(), apps, policyreport.Name) && !exists(ctx, &corev1.Secret{}, namespace, keystore.HashStoreName(apps, "keys"))
	})

	// Nothing is left holding a finalizer (the lists above are empty), so
	// once the manager is gone the CRDs' deletion has nothing to wait for.
	m.checkNotRefused(t)
}
