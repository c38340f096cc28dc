// Package install proves that apiwarden installs like a product: the
// kustomize base (config/default) and the Helm chart (charts/apiwarden),
// rendered by the pinned kustomize and helm binaries, apply to a real
// kube-apiserver; their objects are wired to each other (Services select the
// manager's pods, the webhook names its Service and Certificate, ...); the
// RBAC they grant has no wildcard and no verb outside an allow-list; and the
// manager's pods meet the "restricted" Pod Security Standard, as judged by
// the pod-security-admission library and by the apiserver's own PodSecurity
// admission.
package install

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/apiwarden/apiwarden/internal/testenv"
)

var (
	// testEnv is the envtest control plane every test shares.
	testEnv *testenv.Environment
	// k8s reaches the envtest apiserver as a cluster admin.
	k8s client.Client
	// repoRoot is the directory of apiwarden's go.mod.
	repoRoot string
)

// restrictedNamespace enforces the restricted Pod Security Standard through
// the apiserver's PodSecurity admission plugin; the manager's pod templates
// are created there (server-side dry-run) to be judged by the apiserver.
const restrictedNamespace = "pss-restricted"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	if repoRoot, err = testenv.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer bins.Remove()
	env, err := testenv.Start(withoutAPIWardenCRDs)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	testEnv = env
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	sch := testenv.Scheme()
	if err := apiextensionsv1.AddToScheme(sch); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	k8s, err = client.New(env.Config, client.Options{Scheme: sch})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restrictedNamespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// withoutAPIWardenCRDs starts envtest with the Gateway API and cert-manager
// CRDs but not apiwarden's own: the rendered manifests must install those.
func withoutAPIWardenCRDs(e *envtest.Environment, root string) {
	own := filepath.Join(root, "config", "crd", "bases")
	var kept []string
	for _, p := range e.CRDInstallOptions.Paths {
		if p != own {
			kept = append(kept, p)
		}
	}
	e.CRDInstallOptions.Paths = kept
}
