package install

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// defaultNamespace is where config/default installs apiwarden.
const defaultNamespace = "apiwarden-system"

// wantKustomizeKinds is what config/default must hold, kind by kind.
var wantKustomizeKinds = map[string]int{
	"Namespace":                      1,
	"CustomResourceDefinition":       3,
	"ServiceAccount":                 1,
	"ClusterRole":                    6, // the manager's, the PolicyReport CRD installer, metrics-reader for Prometheus, and view, edit and baseline-reader for people
	"ClusterRoleBinding":             2,
	"Role":                           1,
	"RoleBinding":                    1,
	"Deployment":                     1,
	"Service":                        3, // webhook, authz, metrics
	"ValidatingWebhookConfiguration": 1,
	"Issuer":                         1,
	"Certificate":                    1,
	"NetworkPolicy":                  1,
	"PodDisruptionBudget":            1,
}

// TestKustomizeDefault renders config/default with the pinned kustomize and
// applies every object to a real kube-apiserver, then reads the samples
// through the CRDs it installed, and checks the wiring, HA settings, RBAC and
// Pod Security of what it rendered.
func TestKustomizeDefault(t *testing.T) {
	objs := renderKustomize(t, "config/default")
	got := map[string]int{}
	for _, o := range objs {
		got[o.GetKind()]++
		if ns := o.GetNamespace(); ns != "" && ns != defaultNamespace {
			t.Errorf("%s %s is in namespace %s, want %s", o.GetKind(), o.GetName(), ns, defaultNamespace)
		}
		if o.GetLabels()["app.kubernetes.io/part-of"] != "apiwarden" {
			t.Errorf("%s %s lacks the label app.kubernetes.io/part-of=apiwarden", o.GetKind(), o.GetName())
		}
	}
	for kind, n := range wantKustomizeKinds {
		if got[kind] != n {
			t.Errorf("config/default renders %d %s, want %d", got[kind], kind, n)
		}
	}
	for kind := range got {
		if _, ok := wantKustomizeKinds[kind]; !ok {
			t.Errorf("config/default renders a %s, which this test does not know: add it to wantKustomizeKinds and check it", kind)
		}
	}
	ns := ofKind(objs, "Namespace")
	if len(ns) == 1 && ns[0].GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s does not enforce the restricted Pod Security Standard", ns[0].GetName())
	}

	checkInstall(t, decodeInstall(t, objs), "config/default")

	// The CRDs it installs serve the samples users start from; they are
	// created (dry-run) before the webhook configuration, whose webhook does
	// not run here.
	applyAll(t, objs, func() { createSamples(t) })
}

// createSamples creates (server-side dry-run) every object in
// config/samples.
func createSamples(t *testing.T) {
	t.Helper()
	samples, err := filepath.Glob(filepath.Join(repoRoot, "config", "samples", "*.yaml"))
	if err != nil || len(samples) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	for _, p := range samples {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sobjs, err := decodeObjects(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range sobjs {
			if o.GetNamespace() != "" {
				ensureNamespace(t, o.GetNamespace())
			}
			if err := k8s.Create(context.Background(), o, client.DryRunAll); err != nil {
				t.Errorf("sample %s: %v", filepath.Base(p), err)
			}
		}
	}
}

// TestWiringCheckRejects is the negative control for checkWiring and
// checkHA: config/default with one reference broken at a time must fail.
func TestWiringCheckRejects(t *testing.T) {
	objs := renderKustomize(t, "config/default")
	if errs := checkWiring(decodeInstall(t, objs)); len(errs) > 0 {
		t.Fatalf("the unbroken control fails:%s", errorsText(errs))
	}
	breaks := map[string]func(objs []*unstructured.Unstructured){
		"webhook Service renamed": func(objs []*unstructured.Unstructured) {
			for _, s := range ofKind(objs, "Service") {
				if strings.HasSuffix(s.GetName(), "webhook-service") {
					s.SetName("renamed")
				}
			}
		},
		"CA injected from a missing Certificate": func(objs []*unstructured.Unstructured) {
			setField(t, objs, "ValidatingWebhookConfiguration", map[string]any{"cert-manager.io/inject-ca-from": "apiwarden-system/serving-cert"}, "metadata", "annotations")
		},
		"Certificate Secret not mounted": func(objs []*unstructured.Unstructured) {
			setField(t, objs, "Certificate", "other-secret", "spec", "secretName")
		},
		"Service selects no pod": func(objs []*unstructured.Unstructured) {
			setField(t, objs, "Service", map[string]any{"app": "nothing"}, "spec", "selector")
		},
		"NetworkPolicy without the webhook port": func(objs []*unstructured.Unstructured) {
			setField(t, objs, "NetworkPolicy", []any{map[string]any{"ports": []any{map[string]any{"port": int64(8080)}}}}, "spec", "ingress")
		},
		"PDB selects no pod": func(objs []*unstructured.Unstructured) {
			setField(t, objs, "PodDisruptionBudget", map[string]any{"matchLabels": map[string]any{"app": "nothing"}}, "spec", "selector")
		},
		"unknown ServiceAccount": func(objs []*unstructured.Unstructured) {
			setField(t, objs, "Deployment", "default", "spec", "template", "spec", "serviceAccountName")
		},
	}
	for name, breakIt := range breaks {
		broken := deepCopyObjects(objs)
		breakIt(broken)
		if errs := checkWiring(decodeInstall(t, broken)); len(errs) == 0 {
			t.Errorf("%s: checkWiring found nothing", name)
		}
	}
	haBreaks := map[string]func(d *appsv1.Deployment){
		"one replica":            func(d *appsv1.Deployment) { d.Spec.Replicas = new(int32(1)) },
		"no anti-affinity":       func(d *appsv1.Deployment) { d.Spec.Template.Spec.Affinity = nil },
		"no topology spread":     func(d *appsv1.Deployment) { d.Spec.Template.Spec.TopologySpreadConstraints = nil },
		"grace period too short": func(d *appsv1.Deployment) { d.Spec.Template.Spec.TerminationGracePeriodSeconds = new(int64(30)) },
		"readiness on /healthz": func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/healthz"
		},
		"shutdown longer than kill": func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Args = append(d.Spec.Template.Spec.Containers[0].Args, "--graceful-shutdown-timeout=60s")
		},
	}
	d := typed[appsv1.Deployment](t, objs, "Deployment")[0]
	if errs := checkHA(d, 2); len(errs) > 0 {
		t.Fatalf("the unbroken control fails:%s", errorsText(errs))
	}
	for name, breakIt := range haBreaks {
		broken := d.DeepCopy()
		breakIt(broken)
		if errs := checkHA(broken, 2); len(errs) == 0 {
			t.Errorf("%s: checkHA found nothing", name)
		}
	}
	if !slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "NetworkPolicy" }) {
		t.Error("no NetworkPolicy to break")
	}
}
