package install

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestHelmInstallUpgradeUninstall drives the chart's life cycle with the real
// helm against the envtest apiserver, as a user would: install (helm applies
// crds/ and validates the templates against the server), upgrade to authz as
// its own Deployment, and uninstall, which removes what the chart made.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	helmPath = tool(t, "helm")
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := testEnv.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	const release, namespace = "aw-life", "aw-life-system"
	helm := func(args ...string) string {
		t.Helper()
		// The repository settings and cache stay out of the user's home.
		args = append(args, "--kubeconfig", kubeconfig, "--namespace", namespace,
			"--repository-config", filepath.Join(dir, "repositories.yaml"), "--repository-cache", filepath.Join(dir, "cache"))
		out, err := run(helmPath, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return string(out)
	}
	ctx := context.Background()
	deployment := func(name string) error {
		return k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &appsv1.Deployment{})
	}

	notes := helm("install", release, chartDir, "--create-namespace", "--set", "defaultBaseline.mode=Audit", "--set", "defaultBaseline.name=helm-life")
	if !strings.Contains(notes, "--clusterrole="+release+"-apiwarden-metrics-reader") {
		t.Errorf("the install notes do not say how to let Prometheus scrape:\n%s", notes)
	}
	t.Cleanup(func() {
		// A failed test must not leave the webhook configuration behind.
		vwc := &unstructured.Unstructured{}
		vwc.SetAPIVersion("admissionregistration.k8s.io/v1")
		vwc.SetKind("ValidatingWebhookConfiguration")
		vwc.SetName(release + "-apiwarden")
		_ = k8s.Delete(context.Background(), vwc)
	})
	if err := deployment(release + "-apiwarden-manager"); err != nil {
		t.Fatalf("after helm install: %v", err)
	}
	baseline := &unstructured.Unstructured{}
	baseline.SetAPIVersion("apiwarden.io/v1alpha1")
	baseline.SetKind("APIBaseline")
	if err := k8s.Get(ctx, client.ObjectKey{Name: "helm-life"}, baseline); err != nil {
		t.Fatalf("the default APIBaseline: %v", err)
	}
	if a, _, _ := unstructured.NestedString(baseline.Object, "spec", "enforcementAction"); a != "Audit" {
		t.Errorf("the default APIBaseline's enforcementAction is %q, want Audit", a)
	}

	helm("upgrade", release, chartDir, "--reuse-values", "--set", "authz.separateDeployment=true")
	if err := deployment(release + "-apiwarden-authz"); err != nil {
		t.Fatalf("after helm upgrade: %v", err)
	}

	helm("uninstall", release, "--wait=false")
	for _, name := range []string{release + "-apiwarden-manager", release + "-apiwarden-authz"} {
		if err := deployment(name); !apierrors.IsNotFound(err) {
			t.Errorf("Deployment %s after helm uninstall: %v", name, err)
		}
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "helm-life"}, baseline); !apierrors.IsNotFound(err) {
		t.Errorf("the default APIBaseline after helm uninstall: %v", err)
	}
}
