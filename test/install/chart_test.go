package install

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// chartDir is the Helm chart, relative to the repository's root.
const chartDir = "charts/apiwarden"

// kubeVersion is the Kubernetes version helm renders for: envtest's.
const kubeVersion = "1.37.2"

// helmTemplate renders the chart as release in namespace with --set values.
func helmTemplate(release, namespace string, set []string) ([]byte, error) {
	args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return run(helmPath, args...)
}

// renderChart renders the chart as helmTemplate does and decodes the
// objects, failing t on error.
func renderChart(t *testing.T, release, namespace string, set []string) ([]*unstructured.Unstructured, *install) {
	t.Helper()
	out, err := helmTemplate(release, namespace, set)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs, decodeInstall(t, objs)
}

// helmPath is set by the tests that need helm, through tool().
var helmPath string

// chartCRDs reads the CRDs the chart installs (its crds/ directory), as
// `helm install` applies them before the templates.
func chartCRDs(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot, chartDir, "crds", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no CRDs in %s/crds: %v", chartDir, err)
	}
	var out []*unstructured.Unstructured
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeObjects(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, objs...)
	}
	return out
}

// managerArgs returns the args of the named Deployment's manager container.
func managerArgs(t *testing.T, in *install, name string) []string {
	t.Helper()
	for _, d := range in.deployments {
		if d.Name == name {
			return d.Spec.Template.Spec.Containers[0].Args
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

// TestChart lints and renders the chart with several value sets, checks each
// rendering as TestKustomizeDefault checks config/default (wiring, HA, RBAC,
// Pod Security), applies it with the chart's CRDs to a real kube-apiserver,
// and checks what each value set promises.
func TestChart(t *testing.T) {
	helmPath = tool(t, "helm")
	cases := []struct {
		name    string
		release string
		set     []string
		check   func(t *testing.T, objs []*unstructured.Unstructured, in *install)
	}{
		{name: "defaults", release: "apiwarden", check: func(t *testing.T, objs []*unstructured.Unstructured, in *install) {
			if len(in.deployments) != 1 {
				t.Fatalf("%d Deployments, want 1", len(in.deployments))
			}
			if v, _ := flagValue(managerArgs(t, in, "apiwarden-manager"), "roles"); v != "controllers,webhook,authz" {
				t.Errorf("--roles=%s, want every role", v)
			}
			if v, _ := flagValue(managerArgs(t, in, "apiwarden-manager"), "authz-service"); v != "apiwarden-authz" {
				t.Errorf("--authz-service=%s, want the chart's authz Service apiwarden-authz", v)
			}
			if len(in.webhooks) != 1 || in.webhooks[0].Annotations["cert-manager.io/inject-ca-from"] == "" || len(in.certificates) != 1 {
				t.Error("the webhook's certificate is not issued by cert-manager with its CA injected")
			}
			if img := in.deployments[0].Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+chartAppVersion(t)) {
				t.Errorf("image %s is not tagged with the chart's appVersion %s", img, chartAppVersion(t))
			}
			if len(ofKind(objs, "APIBaseline")) != 0 {
				t.Error("an APIBaseline is rendered although defaultBaseline.mode is off")
			}
			args := managerArgs(t, in, "apiwarden-manager")
			if v, _ := flagValue(args, "metrics-secure"); v != "true" {
				t.Errorf("--metrics-secure=%q, want true", v)
			}
			if v, _ := flagValue(args, "metrics-bind-address"); v != ":8443" {
				t.Errorf("--metrics-bind-address=%q, want :8443", v)
			}
			if !slices.ContainsFunc(in.clusterRoles, isMetricsReader) {
				t.Error("no metrics-reader ClusterRole for Prometheus to bind")
			}
			if v, _ := flagValue(args, "install-policyreport-crd"); v != "true" || !grants(in, "apiwarden", "customresourcedefinitions", "create") {
				t.Errorf("--install-policyreport-crd=%s, and the manager may create CRDs: %v; want both", v, grants(in, "apiwarden", "customresourcedefinitions", "create"))
			}
		}},
		{name: "PolicyReport CRD not installed", release: "aw-nocrd", set: []string{"policyReports.installCRD=false"}, check: func(t *testing.T, objs []*unstructured.Unstructured, in *install) {
			args := managerArgs(t, in, "aw-nocrd-apiwarden-manager")
			if v, _ := flagValue(args, "install-policyreport-crd"); v != "false" {
				t.Errorf("--install-policyreport-crd=%q, want false", v)
			}
			if v, _ := flagValue(args, "policy-reports"); v != "true" {
				t.Errorf("--policy-reports=%q, want true", v)
			}
			if grants(in, "aw-nocrd-apiwarden", "customresourcedefinitions", "create") {
				t.Error("the manager may create CRDs although the chart installs none")
			}
		}},
		{name: "plain metrics", release: "aw-plain", set: []string{"metrics.secure=false"}, check: func(t *testing.T, objs []*unstructured.Unstructured, in *install) {
			args := managerArgs(t, in, "aw-plain-apiwarden-manager")
			if v, _ := flagValue(args, "metrics-secure"); v != "false" {
				t.Errorf("--metrics-secure=%q, want false", v)
			}
			if v, _ := flagValue(args, "metrics-bind-address"); v != ":8080" {
				t.Errorf("--metrics-bind-address=%q, want :8080", v)
			}
			if slices.ContainsFunc(in.clusterRoles, isMetricsReader) {
				t.Error("a metrics-reader ClusterRole is rendered for an endpoint that checks no token")
			}
		}},
		{name: "authz as its own Deployment", release: "aw-authz", set: []string{"authz.separateDeployment=true", "authz.replicas=3"}, check: func(t *testing.T, objs []*unstructured.Unstructured, in *install) {
			if len(in.deployments) != 2 || len(in.pdbs) != 2 {
				t.Fatalf("%d Deployments and %d PodDisruptionBudgets, want 2 of each", len(in.deployments), len(in.pdbs))
			}
			if v, _ := flagValue(managerArgs(t, in, "aw-authz-apiwarden-manager"), "roles"); v != "controllers,webhook" {
				t.Errorf("manager --roles=%s, want controllers,webhook", v)
			}
			if v, _ := flagValue(managerArgs(t, in, "aw-authz-apiwarden-authz"), "roles"); v != "authz" {
				t.Errorf("authz --roles=%s, want authz", v)
			}
			for _, s := range in.services {
				if s.Name == "aw-authz-apiwarden-authz" && s.Spec.Selector["app.kubernetes.io/component"] != "authz" {
					t.Errorf("the authz Service selects %v, not the authz Deployment's pods", s.Spec.Selector)
				}
			}
			// The authz pods run as their own account, bound to the
			// authz ClusterRole only: no write but APIKeySet status and
			// the pepper.
			for _, d := range in.deployments {
				want := "aw-authz-apiwarden"
				if d.Name == "aw-authz-apiwarden-authz" {
					want = "aw-authz-apiwarden-authz"
				}
				if sa := d.Spec.Template.Spec.ServiceAccountName; sa != want {
					t.Errorf("Deployment %s runs as %s, want %s", d.Name, sa, want)
				}
			}
			for _, b := range in.crBindings {
				for _, s := range b.Subjects {
					if s.Name == "aw-authz-apiwarden-authz" && b.RoleRef.Name != "aw-authz-apiwarden-authz" {
						t.Errorf("the authz account is bound to ClusterRole %s", b.RoleRef.Name)
					}
				}
			}
			for _, r := range in.clusterRoles {
				if r.Name != "aw-authz-apiwarden-authz" {
					continue
				}
				for _, rule := range r.Rules {
					for _, v := range rule.Verbs {
						if v != "get" && v != "list" && v != "watch" && !slices.Contains(rule.Resources, "apikeysets/status") &&
							!slices.Contains(rule.Resources, "tokenreviews") && !slices.Contains(rule.Resources, "subjectaccessreviews") {
							t.Errorf("the authz ClusterRole may %s %v", v, rule.Resources)
						}
					}
				}
			}
		}},
		{name: "self-managed webhook certificate", release: "aw-selfcert", set: []string{"webhook.certificate.mode=self-managed"}, check: func(t *testing.T, objs []*unstructured.Unstructured, in *install) {
			if len(in.certificates) != 0 || len(in.issuers) != 0 {
				t.Error("cert-manager objects rendered for a self-managed certificate")
			}
			if len(in.webhooks) != 1 || len(in.webhooks[0].Annotations) != 0 {
				t.Error("the webhook configuration asks cert-manager to inject a CA")
			}
			args := managerArgs(t, in, "aw-selfcert-apiwarden-manager")
			for flag, want := range map[string]string{
				"webhook-cert-mode": "self-managed", "webhook-secret": "aw-selfcert-apiwarden-webhook-cert",
				"webhook-configuration": in.webhooks[0].Name, "webhook-service": "aw-selfcert-apiwarden-webhook",
			} {
				if v, _ := flagValue(args, flag); v != want {
					t.Errorf("--%s=%q, want %q", flag, v, want)
				}
			}
			if _, ok := flagValue(args, "webhook-cert-dir"); ok {
				t.Error("the manager still reads its certificate from a directory")
			}
			for _, v := range in.deployments[0].Spec.Template.Spec.Volumes {
				if v.Name == "webhook-certs" {
					t.Error("a certificate volume is mounted although the certificate is served from memory")
				}
			}
			// Its own webhook configuration, by name, and nothing else.
			var vwcRules []rbacv1.PolicyRule
			for _, r := range in.clusterRoles[0].Rules {
				if slices.Contains(r.Resources, "validatingwebhookconfigurations") {
					vwcRules = append(vwcRules, r)
				}
			}
			if len(vwcRules) != 1 || !slices.Equal(vwcRules[0].ResourceNames, []string{in.webhooks[0].Name}) || slices.Contains(vwcRules[0].Verbs, "create") {
				t.Errorf("the ClusterRole's rules on webhook configurations are %+v, want one, limited to %s", vwcRules, in.webhooks[0].Name)
			}
		}},
		{name: "Traefik", release: "aw-traefik", set: []string{"gateway=traefik"}, check: func(t *testing.T, objs []*unstructured.Unstructured, in *install) {
			if v, _ := flagValue(managerArgs(t, in, "aw-traefik-apiwarden-manager"), "gateway"); v != "traefik" {
				t.Errorf("--gateway=%q, want traefik", v)
			}
			// It writes Traefik's CRDs and the annotations on Ingresses.
			var middlewares, ingressPatch bool
			for _, r := range in.clusterRoles[0].Rules {
				middlewares = middlewares || (slices.Contains(r.APIGroups, "traefik.io") && slices.Contains(r.Resources, "middlewares") && slices.Contains(r.Verbs, "patch"))
				ingressPatch = ingressPatch || (slices.Contains(r.Resources, "ingresses") && slices.Contains(r.Verbs, "patch"))
			}
			if !middlewares || !ingressPatch {
				t.Errorf("the ClusterRole lets the manager write Middlewares: %v, patch Ingresses: %v", middlewares, ingressPatch)
			}
		}},
		{name: "default baseline Deny", release: "aw-deny", set: []string{"defaultBaseline.mode=Deny", "defaultBaseline.name=chart-deny"}, check: func(t *testing.T, objs []*unstructured.Unstructured, in *install) {
			got := &unstructured.Unstructured{}
			got.SetAPIVersion("apiwarden.io/v1alpha1")
			got.SetKind("APIBaseline")
			if err := k8s.Get(context.Background(), client.ObjectKey{Name: "chart-deny"}, got); err != nil {
				t.Fatal(err)
			}
			if a, _, _ := unstructured.NestedString(got.Object, "spec", "enforcementAction"); a != "Deny" {
				t.Errorf("APIBaseline chart-deny has enforcementAction %q, want Deny", a)
			}
		}},
		{name: "webhook off", release: "aw-nowebhook", set: []string{"roles.webhook=false"}, check: func(t *testing.T, objs []*unstructured.Unstructured, in *install) {
			if len(in.webhooks) != 0 || len(in.certificates) != 0 {
				t.Error("webhook objects rendered with roles.webhook=false")
			}
			args := managerArgs(t, in, "aw-nowebhook-apiwarden-manager")
			if v, _ := flagValue(args, "roles"); v != "controllers,authz" {
				t.Errorf("--roles=%s, want controllers,authz", v)
			}
			if _, ok := flagValue(args, "webhook-port"); ok {
				t.Error("the manager still gets webhook flags")
			}
		}},
		{name: "webhook settings", release: "aw-tuned", set: []string{"webhook.failurePolicy=Ignore", "webhook.timeoutSeconds=10", "webhook.excludedNamespaces={legacy}"}, check: func(t *testing.T, objs []*unstructured.Unstructured, in *install) {
			for _, h := range in.webhooks[0].Webhooks {
				if string(*h.FailurePolicy) != "Ignore" || *h.TimeoutSeconds != 10 {
					t.Errorf("webhook %s: failurePolicy %s, timeoutSeconds %d", h.Name, *h.FailurePolicy, *h.TimeoutSeconds)
				}
				excluded := h.NamespaceSelector.MatchExpressions[0]
				if excluded.Key != "kubernetes.io/metadata.name" || !slices.Equal(excluded.Values, []string{"legacy", "aw-tuned-system"}) {
					t.Errorf("webhook %s excludes %v, want legacy and the release namespace", h.Name, excluded)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			namespace := tc.release + "-system"
			lint := []string{"lint", chartDir, "--kube-version", kubeVersion, "--strict"}
			for _, s := range tc.set {
				lint = append(lint, "--set", s)
			}
			if out, err := run(helmPath, lint...); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			objs, in := renderChart(t, tc.release, namespace, tc.set)
			checkInstall(t, in, "the chart")
			for _, o := range objs {
				if ns := o.GetNamespace(); ns != "" && ns != namespace {
					t.Errorf("%s %s is in namespace %s, not the release's", o.GetKind(), o.GetName(), ns)
				}
			}
			ensureNamespace(t, namespace)
			applyAll(t, append(chartCRDs(t), objs...), nil)
			tc.check(t, objs, in)
		})
	}
}

// chartAppVersion reads appVersion from Chart.yaml.
func chartAppVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "appVersion:"); ok {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	t.Fatal("Chart.yaml has no appVersion")
	return ""
}

// TestChartSchemaRejects checks that values.schema.json refuses values of
// the wrong type or outside their enums, with a message naming the value.
func TestChartSchemaRejects(t *testing.T) {
	helmPath = tool(t, "helm")
	bad := map[string]string{
		"replicas=two":                            "/replicas",
		"defaultBaseline.mode=Block":              "/defaultBaseline/mode",
		"webhook.failurePolicy=Never":             "/webhook/failurePolicy",
		"webhook.timeoutSeconds=60":               "/webhook/timeoutSeconds",
		"webhook.certificate.mode=vault":          "/webhook/certificate/mode",
		"image.pullPolicy=Sometimes":              "/image/pullPolicy",
		"roles.authz=maybe":                       "/roles/authz",
		"replica=3":                               "replica",
		"gracefulShutdownTimeout=soon":            "/gracefulShutdownTimeout",
		"webhook.excludedNamespaces={Not_A_Name}": "/webhook/excludedNamespaces/0",
		"metrics.serviceMonitor.interval=often":   "/metrics/serviceMonitor/interval",
		"metrics.secure=maybe":                    "/metrics/secure",
		"policyReports.installCRD=yes":            "/policyReports/installCRD",
	}
	for set, want := range bad {
		args := []string{"template", "x", chartDir, "--kube-version", kubeVersion}
		if strings.HasPrefix(set, "replicas=") || strings.HasPrefix(set, "roles.") || strings.HasSuffix(set, "=maybe") || strings.HasSuffix(set, "=yes") {
			args = append(args, "--set-string", set)
		} else {
			args = append(args, "--set", set)
		}
		_, err := run(helmPath, args...)
		if err == nil {
			t.Errorf("--set %s: helm template accepted it", set)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: the error does not name %s: %v", set, want, err)
		}
	}
	// The templates themselves refuse what the schema cannot express.
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"roles.controllers=false", "roles.webhook=false", "roles.authz=false"}, "at least one of"},
		{[]string{"replicas=1"}, "no node could ever be drained"},
		{[]string{"authz.separateDeployment=true", "authz.replicas=1"}, "authz Deployment's replicas"},
		{[]string{"leaderElection=false"}, "would run the controllers in every replica at once"},
	} {
		if _, err := helmTemplate("x", "x", tc.set); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want an error containing %q, got %v", tc.set, tc.want, err)
		}
	}
	if _, err := helmTemplate("x", "x", []string{"replicas=1", "podDisruptionBudget.enabled=false"}); err != nil {
		t.Errorf("one replica without a PodDisruptionBudget is refused: %v", err)
	}
	if _, err := helmTemplate("x", "x", []string{"replicas=1", "podDisruptionBudget.enabled=false", "leaderElection=false"}); err != nil {
		t.Errorf("one replica without leader election is refused: %v", err)
	}
}

// TestChartCopiesCurrent fails when the chart's copies of generated files
// differ from their sources: run make chart-crds.
func TestChartCopiesCurrent(t *testing.T) {
	same := func(src, dst string) {
		a, err := os.ReadFile(filepath.Join(repoRoot, src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(repoRoot, dst))
		if err != nil {
			t.Errorf("%s: %v (run make chart-crds)", dst, err)
			return
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run make chart-crds", dst, src)
		}
	}
	srcs, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	for _, p := range srcs {
		same(filepath.Join("config", "crd", "bases", filepath.Base(p)), filepath.Join(chartDir, "crds", filepath.Base(p)))
	}
	dsts, _ := filepath.Glob(filepath.Join(repoRoot, chartDir, "crds", "*"))
	if len(dsts) != len(srcs) {
		t.Errorf("%s/crds holds %d files, config/crd/bases %d: run make chart-crds", chartDir, len(dsts), len(srcs))
	}
	same("config/rbac/role.yaml", chartDir+"/files/manager-role.yaml")
	same("config/rbac/authz/role.yaml", chartDir+"/files/authz-role.yaml")
	same("config/rbac/policyreport-crd-installer/role.yaml", chartDir+"/files/policyreport-crd-installer-role.yaml")
	same("config/webhook/manifests.yaml", chartDir+"/files/webhooks.yaml")
	same("config/monitoring/alerts.yaml", chartDir+"/files/alerts.yaml")
}

// grants reports whether a ClusterRole bound to the release namespace's
// ServiceAccount account grants verb on resource.
func grants(in *install, account, resource, verb string) bool {
	for _, b := range in.crBindings {
		if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return s.Kind == rbacv1.ServiceAccountKind && s.Name == account }) {
			continue
		}
		for _, r := range in.clusterRoles {
			if r.Name != b.RoleRef.Name {
				continue
			}
			for _, rule := range r.Rules {
				if slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) {
					return true
				}
			}
		}
	}
	return false
}
