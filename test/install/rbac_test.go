package install

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// allowedVerbs is every verb apiwarden's roles may grant. Verbs that hand
// out more than their resource (escalate, bind, impersonate), that act on
// many objects at once (deletecollection), or "*" fail the RBAC checks.
var allowedVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete"}

// checkRules returns every rule that grants a wildcard, a non-resource URL,
// or a verb outside allowedVerbs.
func checkRules(role string, rules []rbacv1.PolicyRule) []error {
	var errs []error
	fail := func(i int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s rule %d: "+format, append([]any{role, i}, args...)...))
	}
	if len(rules) == 0 {
		errs = append(errs, fmt.Errorf("%s has no rules", role))
	}
	for i, r := range rules {
		for field, values := range map[string][]string{"verbs": r.Verbs, "apiGroups": r.APIGroups, "resources": r.Resources, "resourceNames": r.ResourceNames} {
			for _, v := range values {
				if strings.Contains(v, "*") {
					fail(i, "%s holds the wildcard %q", field, v)
				}
			}
		}
		if len(r.NonResourceURLs) > 0 {
			fail(i, "grants non-resource URLs %v", r.NonResourceURLs)
		}
		if len(r.Resources) == 0 || len(r.Verbs) == 0 {
			fail(i, "names no resource or no verb")
		}
		for _, v := range r.Verbs {
			if v != "*" && !slices.Contains(allowedVerbs, v) {
				fail(i, "verb %q is not in the allow-list %v", v, allowedVerbs)
			}
		}
	}
	return errs
}

// checkRoles runs checkRules on every Role and ClusterRole of an installation.
func checkRoles(in *install) []error {
	var errs []error
	if len(in.clusterRoles) == 0 {
		errs = append(errs, fmt.Errorf("no ClusterRole rendered"))
	}
	for _, r := range in.clusterRoles {
		if isMetricsReader(r) {
			continue // for Prometheus to bind; grants get on /metrics only
		}
		if r.AggregationRule != nil {
			errs = append(errs, fmt.Errorf("ClusterRole %s aggregates other roles", r.Name))
		}
		errs = append(errs, checkRules("ClusterRole "+r.Name, r.Rules)...)
	}
	for _, r := range in.roles {
		errs = append(errs, checkRules("Role "+r.Namespace+"/"+r.Name, r.Rules)...)
	}
	return errs
}

// isMetricsReader reports whether r is the metrics-reader ClusterRole: one
// rule, get on the non-resource URL /metrics and nothing else. It is the one
// role apiwarden renders for others to bind (Prometheus's ServiceAccount).
func isMetricsReader(r *rbacv1.ClusterRole) bool {
	return strings.HasSuffix(r.Name, "metrics-reader") && r.AggregationRule == nil && len(r.Rules) == 1 &&
		slices.Equal(r.Rules[0].NonResourceURLs, []string{"/metrics"}) && slices.Equal(r.Rules[0].Verbs, []string{"get"}) &&
		len(r.Rules[0].APIGroups)+len(r.Rules[0].Resources)+len(r.Rules[0].ResourceNames) == 0
}

// forUsers reports whether r is one of the roles apiwarden ships for people
// (config/rbac/user_roles.yaml): aggregated into the built-in view, edit and
// admin roles, or the baseline reader, and only about apiwarden's kinds and
// Namespaces.
func forUsers(r *rbacv1.ClusterRole) bool {
	aggregated := false
	for k := range r.Labels {
		aggregated = aggregated || strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-")
	}
	if !aggregated && !strings.HasSuffix(r.Name, "baseline-reader") {
		return false
	}
	for _, rule := range r.Rules {
		if len(rule.APIGroups) == 0 || len(rule.NonResourceURLs) > 0 {
			return false
		}
		for _, g := range rule.APIGroups {
			if g != "apiwarden.io" && !(g == "" && slices.Equal(rule.Resources, []string{"namespaces"}) && slices.Equal(rule.Verbs, []string{"get"})) {
				return false
			}
		}
	}
	return len(r.Rules) > 0
}

// TestGeneratedClusterRole reads the ClusterRole controller-gen generates
// from the RBAC markers (make manifests) and holds it to the allow-list.
func TestGeneratedClusterRole(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(data)
	if err != nil {
		t.Fatal(err)
	}
	roles := typed[rbacv1.ClusterRole](t, objs, "ClusterRole")
	if len(roles) != 1 {
		t.Fatalf("config/rbac/role.yaml holds %d ClusterRoles, want 1", len(roles))
	}
	if errs := checkRules("config/rbac/role.yaml", roles[0].Rules); len(errs) > 0 {
		t.Errorf("the generated ClusterRole grants too much (fix the +kubebuilder:rbac markers, then make manifests):%s", errorsText(errs))
	}
	// Owner references with blockOwnerDeletion need update on the owner's
	// finalizers where OwnerReferencesPermissionEnforcement runs
	// (OpenShift, hardened clusters): APIPolicies own the rendered
	// objects, APIKeySets their Secrets, APIBaselines the compiled
	// admission policies.
	for _, owner := range []string{"apipolicies", "apikeysets", "apibaselines"} {
		granted := false
		for _, r := range roles[0].Rules {
			granted = granted || (slices.Contains(r.APIGroups, "apiwarden.io") && slices.Contains(r.Resources, owner+"/finalizers") && slices.Contains(r.Verbs, "update"))
		}
		if !granted {
			t.Errorf("the ClusterRole does not grant update on %s/finalizers, which owner references with blockOwnerDeletion need", owner)
		}
	}
}

// TestRBACCheckRejects is the negative control: each rule here must be
// refused, so a passing RBAC test means something.
func TestRBACCheckRejects(t *testing.T) {
	ok := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}}
	if errs := checkRules("good", []rbacv1.PolicyRule{ok}); len(errs) > 0 {
		t.Fatalf("a least-privilege rule was refused:%s", errorsText(errs))
	}
	bad := map[string]rbacv1.PolicyRule{
		"wildcard verb":        {APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"*"}},
		"wildcard resource":    {APIGroups: []string{""}, Resources: []string{"*"}, Verbs: []string{"get"}},
		"wildcard subresource": {APIGroups: []string{"apiwarden.io"}, Resources: []string{"apipolicies/*"}, Verbs: []string{"get"}},
		"wildcard group":       {APIGroups: []string{"*"}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
		"escalate":             {APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"escalate"}},
		"impersonate":          {APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"impersonate"}},
		"deletecollection":     {APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"deletecollection"}},
		"non-resource URL":     {NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}},
	}
	for name, r := range bad {
		if errs := checkRules(name, []rbacv1.PolicyRule{ok, r}); len(errs) == 0 {
			t.Errorf("%s: %+v was accepted", name, r)
		}
	}
	// The metrics reader is skipped by the checks only while it grants get
	// on /metrics and nothing else.
	metrics := rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}
	reader := func(rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
		return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "apiwarden-metrics-reader"}, Rules: rules}
	}
	if !isMetricsReader(reader(metrics)) {
		t.Error("the metrics reader is not recognised")
	}
	for name, r := range map[string]*rbacv1.ClusterRole{
		"another rule":   reader(metrics, ok),
		"another URL":    reader(rbacv1.PolicyRule{NonResourceURLs: []string{"/*"}, Verbs: []string{"get"}}),
		"another verb":   reader(rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get", "post"}}),
		"a resource too": reader(rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}),
	} {
		if isMetricsReader(r) {
			t.Errorf("%s: %+v passes as the metrics reader", name, r.Rules)
		}
	}
	// A role for people is exempt from "bound to nothing" only while it is
	// about apiwarden's kinds (and reading Namespaces).
	aggregated := map[string]string{"rbac.authorization.k8s.io/aggregate-to-edit": "true"}
	mine := rbacv1.PolicyRule{APIGroups: []string{"apiwarden.io"}, Resources: []string{"apipolicies"}, Verbs: []string{"get"}}
	if !forUsers(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "x-edit", Labels: aggregated}, Rules: []rbacv1.PolicyRule{mine}}) {
		t.Error("an aggregated role on apiwarden's kinds is not recognised")
	}
	for name, r := range map[string]*rbacv1.ClusterRole{
		"not aggregated": {ObjectMeta: metav1.ObjectMeta{Name: "x-edit"}, Rules: []rbacv1.PolicyRule{mine}},
		"secrets":        {ObjectMeta: metav1.ObjectMeta{Name: "x-edit", Labels: aggregated}, Rules: []rbacv1.PolicyRule{mine, {APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}},
		"namespace edit": {ObjectMeta: metav1.ObjectMeta{Name: "x-baseline-reader"}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "update"}}}},
		"no rules":       {ObjectMeta: metav1.ObjectMeta{Name: "x-baseline-reader"}},
		"URLs":           {ObjectMeta: metav1.ObjectMeta{Name: "x-view", Labels: aggregated}, Rules: []rbacv1.PolicyRule{mine, {NonResourceURLs: []string{"*"}, Verbs: []string{"get"}}}},
	} {
		if forUsers(r) {
			t.Errorf("%s: %+v passes as a role for people", name, r.Rules)
		}
	}
}
