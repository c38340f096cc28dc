// Package coverage_test runs `apiwarden coverage` (the built CLI) against a
// real kube-apiserver through a kubeconfig, and compares its table and JSON
// with golden files (go test ./test/coverage -update rewrites them).
package coverage_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestCoverageCLI(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	bin, err := testenv.BuildBinary("./cmd/apiwarden", dir)
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"apiwarden.io/governed": "true"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "payments", Labels: map[string]string{"apiwarden.io/governed": "true"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sandbox"}},
		&apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: apiwardenv1alpha1.APIBaselineSpec{
			EnforcementAction: apiwardenv1alpha1.EnforcementActionDeny,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"apiwarden.io/governed": "true"}},
			Require:           &apiwardenv1alpha1.BaselineRequirements{TLS: &apiwardenv1alpha1.TLSRequirement{MinVersion: apiwardenv1alpha1.TLSVersion12}},
			Exemptions: []apiwardenv1alpha1.Exemption{{Name: "status", Target: apiwardenv1alpha1.ExemptionTarget{Namespace: "shop", Kind: "Ingress", Name: "status"},
				Controls: []apiwardenv1alpha1.Control{apiwardenv1alpha1.ControlTLS}, Reason: "OPS-1234: public status page, moving",
				Expires: metav1.NewTime(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))}},
		}},
		testenv.Ingress("shop", "storefront", true), testenv.Ingress("shop", "status", false), testenv.Ingress("shop", "admin", false),
		testenv.Ingress("payments", "checkout", true), testenv.Ingress("sandbox", "toy", false),
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, golden string }{{"table", "table.golden"}, {"json", "json.golden"}} {
		var out, errb bytes.Buffer
		cmd := exec.Command(bin, "coverage", "--kubeconfig", kubeconfig, "-o", tc.name)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("apiwarden coverage -o %s: %v\n%s", tc.name, err, errb.String())
		}
		path := filepath.Join("testdata", tc.golden)
		if *update {
			if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("apiwarden coverage -o %s differs from %s:\n%s", tc.name, path, out.String())
		}
	}
	// -n: that namespace's block, the same as in the full report.
	full, err := os.ReadFile(filepath.Join("testdata", "table.golden"))
	if err != nil {
		t.Fatal(err)
	}
	var one, oneErr bytes.Buffer
	nsCmd := exec.Command(bin, "coverage", "--kubeconfig", kubeconfig, "-n", "shop")
	nsCmd.Stdout, nsCmd.Stderr = &one, &oneErr
	if err := nsCmd.Run(); err != nil {
		t.Fatalf("apiwarden coverage -n shop: %v\n%s", err, oneErr.String())
	}
	if !bytes.Contains(one.Bytes(), []byte("Namespace shop:")) || bytes.Contains(one.Bytes(), []byte("Namespace payments")) ||
		!bytes.Contains(full, bytes.TrimSpace(one.Bytes())) {
		t.Errorf("apiwarden coverage -n shop is not shop's block of the full report:\n%s", one.String())
	}
	// A namespace user: what the built-in view role aggregates
	// (system:aggregate-to-view, and apiwarden's view: the aggregation is
	// kube-controller-manager's, which does not run here), and read of the
	// Gateway API kinds in shop. Without the baseline reader
	// the report is refused with a hint; with it, it is shop's block.
	for _, role := range testenv.ConfigClusterRoles(t, "user_roles.yaml") {
		if err := k8s.Create(ctx, role); err != nil {
			t.Fatal(err)
		}
	}
	dev, err := env.AddUser(envtest.User{Name: "dev", Groups: []string{"system:authenticated"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	devConfig, err := dev.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	devKubeconfig := filepath.Join(dir, "dev-kubeconfig")
	if err := os.WriteFile(devKubeconfig, devConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	bind := func(o client.Object) {
		t.Helper()
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	devSubject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "dev"}}
	bind(&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "gateway-api-view"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"gateways", "httproutes", "grpcroutes"}, Verbs: []string{"get", "list", "watch"}}}})
	bind(&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "dev-gateway-api"}, Subjects: devSubject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "gateway-api-view"}})
	for _, role := range []string{"system:aggregate-to-view", "apiwarden-view"} {
		bind(&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "dev-" + strings.ReplaceAll(role, ":", "-")}, Subjects: devSubject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}})
	}
	asDev := func() (string, string, int) {
		var out, errb bytes.Buffer
		cmd := exec.Command(bin, "coverage", "--kubeconfig", devKubeconfig, "-n", "shop")
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}
	if _, errOut, code := asDev(); code != 2 || !strings.Contains(errOut, "forbidden") || !strings.Contains(errOut, "apiwarden-baseline-reader") {
		t.Errorf("without the baseline reader: exit %d, want 2 and a hint naming apiwarden-baseline-reader:\n%s", code, errOut)
	}
	bind(&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dev-baseline-reader"}, Subjects: devSubject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "apiwarden-baseline-reader"}})
	var devOut, devErr string
	var code int
	deadline := time.Now().Add(30 * time.Second)
	for devOut, devErr, code = asDev(); code != 0 && time.Now().Before(deadline); devOut, devErr, code = asDev() {
		time.Sleep(200 * time.Millisecond) // RBAC sees the binding a moment later
	}
	if code != 0 || devOut != one.String() {
		t.Errorf("as a namespace user with the baseline reader: exit %d\n%s\nwant the administrator's report:\n%s", code, devOut+devErr, one.String())
	}

	// Bad kubeconfig: a clear error, exit 2.
	cmd := exec.Command(bin, "coverage", "--kubeconfig", filepath.Join(dir, "missing"))
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 2 || !bytes.Contains(errb.Bytes(), []byte("kubeconfig")) {
		t.Errorf("missing kubeconfig: exit %d, %q", cmd.ProcessState.ExitCode(), errb.String())
	}
}
