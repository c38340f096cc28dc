package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestCELAdmission: a baseline in CEL mode is compiled into policies the
// apiserver enforces with no webhook (none runs in this environment): an
// uncovered Ingress is denied with the engine's message; a policy that
// covers it reaches the namespace's params, and the same Ingress is then
// admitted; back in Webhook mode, the compiled policies and the params go.
func TestCELAdmission(t *testing.T) {
	ctx := context.Background()
	ns, b := celNamespace(t, "cel")
	eventually(t, "the compiled policies and bindings", func() bool {
		var vaps admissionregistrationv1.ValidatingAdmissionPolicyList
		var bindings admissionregistrationv1.ValidatingAdmissionPolicyBindingList
		_ = k8s.List(ctx, &vaps, client.MatchingLabels{exposure.AdmissionPolicyLabel: ns})
		_ = k8s.List(ctx, &bindings, client.MatchingLabels{exposure.AdmissionPolicyLabel: ns})
		// One per kind, and the guard on APIPolicy deletion (a Deny baseline).
		return len(vaps.Items) == len(exposure.CELKinds)+1 && len(bindings.Items) == len(exposure.CELKinds)+1
	})
	params := func() map[string]string {
		var cm corev1.ConfigMap
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: exposure.ParamsName}, &cm); err != nil {
			return nil
		}
		if cm.Data == nil {
			return map[string]string{}
		}
		return cm.Data
	}
	eventually(t, "the namespace's params", func() bool { return params() != nil })

	in := testenv.Ingress(ns, "shop", true)
	var denied string
	eventually(t, "the apiserver denying the uncovered Ingress", func() bool {
		err := k8s.Create(ctx, in.DeepCopy(), client.DryRunAll)
		denied = ""
		if err != nil {
			denied = err.Error()
		}
		return apierrors.IsForbidden(err) && strings.Contains(denied, "ValidatingAdmissionPolicy")
	})
	want := fmt.Sprintf("Ingress %s/shop is exposed without authentication: no APIPolicy in Enforce mode targeting Ingress shop or Service web sets spec.authentication.", ns)
	if !strings.Contains(denied, want) || !strings.Contains(denied, "without a rate limit") {
		t.Errorf("denial %q does not say %q", denied, want)
	}

	p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: "networking.k8s.io", Kind: "Ingress", Name: "shop"}},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}}},
		RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 10, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
	}}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the policy in the params", func() bool {
		fields, ok := exposure.LevelFields(params(), "Ingress", ns, "shop", "")
		return ok && len(fields) == 7 && fields[1] == "+APIKey" && exposure.ParamsGeneration(params(), "shop") == "1"
	})
	eventually(t, "the covered Ingress admitted", func() bool { return k8s.Create(ctx, in.DeepCopy(), client.DryRunAll) == nil })

	// A policy reports Enforced=True only once the params include its
	// generation: "Enforced" means that what it protects can be created.
	installEnvoyGatewayCRDs(t)
	rp := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: "api"}},
		Authentication: p.Spec.Authentication, RateLimit: p.Spec.RateLimit,
	}}
	if err := k8s.Create(ctx, rp); err != nil {
		t.Fatal(err)
	}
	c := waitCondIn(t, ns, "api", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)
	if got := exposure.ParamsGeneration(params(), "api"); got != "1" {
		t.Errorf("the policy reported Enforced (%s) before the params had it (generation %q)", c.Message, got)
	}

	// The CEL guard: the policy is the route's only protection, so the
	// apiserver refuses to delete it, with the webhook guard's words; the
	// Ingress's policy protects no object that exists, so it may go.
	var refused string
	eventually(t, "the apiserver refusing to delete the route's only policy", func() bool {
		err := k8s.Delete(ctx, rp.DeepCopy(), client.DryRunAll)
		refused = ""
		if err != nil {
			refused = err.Error()
		}
		return apierrors.IsForbidden(err) && strings.Contains(refused, "ValidatingAdmissionPolicy")
	})
	want = fmt.Sprintf("Deleting APIPolicy %s/api would leave exposed objects without the protection a Deny baseline requires: HTTPRoute %s/api (authentication, rate limit, required by APIBaseline %s). Attach another APIPolicy that provides it first, or remove the exposure.", ns, ns, ns)
	if !strings.HasSuffix(refused, want) {
		t.Errorf("guard denial %q does not end with %q", refused, want)
	}
	if err := k8s.Delete(ctx, p.DeepCopy(), client.DryRunAll); err != nil {
		t.Errorf("deleting a policy that protects nothing: %v", err)
	}
	// Updates that take away what the policy alone provides are refused
	// too; those that keep it are not.
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(rp), rp); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		change func(*apiwardenv1alpha1.APIPolicy)
		refuse bool
	}{
		"without its rate limit":  {func(p *apiwardenv1alpha1.APIPolicy) { p.Spec.RateLimit = nil }, true},
		"without authentication":  {func(p *apiwardenv1alpha1.APIPolicy) { p.Spec.Authentication = nil }, true},
		"in DryRun":               {func(p *apiwardenv1alpha1.APIPolicy) { p.Spec.Mode = apiwardenv1alpha1.PolicyModeDryRun }, true},
		"targeting another route": {func(p *apiwardenv1alpha1.APIPolicy) { p.Spec.TargetRefs[0].Name = "other" }, true},
		"with a label":            {func(p *apiwardenv1alpha1.APIPolicy) { p.Labels = map[string]string{"team": "shop"} }, false},
		"with a body limit as well": {func(p *apiwardenv1alpha1.APIPolicy) {
			p.Spec.Request = &apiwardenv1alpha1.RequestLimits{MaxBodyBytes: ptr.To(int64(1 << 20))}
		}, false},
	} {
		next := rp.DeepCopy()
		tc.change(next)
		err := k8s.Update(ctx, next, client.DryRunAll)
		switch {
		case tc.refuse && (!apierrors.IsForbidden(err) || !strings.Contains(err.Error(), fmt.Sprintf("Updating APIPolicy %s/api would leave exposed objects without the protection a Deny baseline requires: HTTPRoute %s/api", ns, ns))):
			t.Errorf("updating the route's only policy %s: %v, want the guard's refusal", name, err)
		case !tc.refuse && err != nil:
			t.Errorf("updating the route's only policy %s: %v, want it admitted", name, err)
		}
	}

	// A Warn baseline warns instead of denying and guards nothing: its
	// guard policy goes, and so do the guard's records in the params.
	updateBaseline(t, b, func(s *apiwardenv1alpha1.APIBaselineSpec) {
		s.EnforcementAction = apiwardenv1alpha1.EnforcementActionWarn
	})
	eventually(t, "the bindings warning instead of denying, and no guard", func() bool {
		var binding admissionregistrationv1.ValidatingAdmissionPolicyBinding
		err := k8s.Get(ctx, client.ObjectKey{Name: exposure.AdmissionPolicyName(ns, "Ingress")}, &binding)
		guardErr := k8s.Get(ctx, client.ObjectKey{Name: exposure.AdmissionPolicyName(ns, exposure.GuardKind)}, &admissionregistrationv1.ValidatingAdmissionPolicy{})
		return err == nil && len(binding.Spec.ValidationActions) == 1 && binding.Spec.ValidationActions[0] == admissionregistrationv1.Warn &&
			apierrors.IsNotFound(guardErr) && params()[exposure.GuardKey] == exposure.RecordSeparator+exposure.RecordSeparator
	})

	// Nothing changed, nothing written: a reconcile of the namespace (a
	// label it gains changes what no baseline selects) keeps the params'
	// resourceVersion. The params are first let settle: the Warn change
	// queued reconciles that may still be writing what it changed.
	var cm corev1.ConfigMap
	eventually(t, "the params to settle", func() bool {
		n := reconciles(t, "admissionparams")
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: exposure.ParamsName}, &cm); err != nil {
			return false
		}
		time.Sleep(time.Second)
		var later corev1.ConfigMap
		err := k8s.Get(ctx, client.ObjectKeyFromObject(&cm), &later)
		return err == nil && later.ResourceVersion == cm.ResourceVersion && reconciles(t, "admissionparams") == n
	})
	var nsObj corev1.Namespace
	if err := k8s.Get(ctx, client.ObjectKey{Name: ns}, &nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["touched"] = "yes"
	before := reconciles(t, "admissionparams")
	if err := k8s.Update(ctx, &nsObj); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reconcile of the params after the namespace's change", func() bool { return reconciles(t, "admissionparams") > before })
	time.Sleep(time.Second) // and any write it would make
	var again corev1.ConfigMap
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(&cm), &again); err != nil || again.ResourceVersion != cm.ResourceVersion {
		t.Errorf("the params were written again with nothing changed (%v):\nbefore %+v\nafter  %+v", err, cm.ObjectMeta, again.ObjectMeta)
	}

	// Back to the webhook: the compiled policies and the params go.
	updateBaseline(t, b, func(s *apiwardenv1alpha1.APIBaselineSpec) { s.Admission = apiwardenv1alpha1.AdmissionModeWebhook })
	eventually(t, "the compiled policies removed", func() bool {
		var vaps admissionregistrationv1.ValidatingAdmissionPolicyList
		_ = k8s.List(ctx, &vaps, client.MatchingLabels{exposure.AdmissionPolicyLabel: ns})
		return len(vaps.Items) == 0 && params() == nil
	})
}

// TestEnforcedWaitsForParams: an APIPolicy under a CEL-mode baseline reports
// Enforced=True only once its namespace's params list its generation, so
// that "Enforced" means that what it protects can now be created. The test
// holds the params back deterministically: a ValidatingAdmissionPolicy of
// its own refuses every write of the namespace's params ConfigMap, and
// only once that is seen to hold is the APIPolicy created. The policy must
// then stay AdmissionParamsPending, and turn Enforced once the freeze goes.
func TestEnforcedWaitsForParams(t *testing.T) {
	ctx := context.Background()
	installEnvoyGatewayCRDs(t)
	ns, b := celNamespace(t, "cel-gate")
	defer func() { _ = k8s.Delete(ctx, b) }()
	var cm corev1.ConfigMap
	eventually(t, "the namespace's params", func() bool {
		return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: exposure.ParamsName}, &cm) == nil
	})

	// The freeze: every CREATE or UPDATE of the params in this namespace
	// is refused.
	freeze := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns}, Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
		FailurePolicy: ptr.To(admissionregistrationv1.Fail),
		MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
			ResourceNames: []string{exposure.ParamsName},
			RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}}}},
		Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "params frozen by the test"}},
	}}
	freezeBinding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns}, Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
		PolicyName:        freeze.Name,
		MatchResources:    &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
	}}
	for _, o := range []client.Object{freeze, freezeBinding} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	unfreeze := func() {
		_ = k8s.Delete(ctx, freezeBinding)
		_ = k8s.Delete(ctx, freeze)
	}
	defer unfreeze()
	eventually(t, "the freeze to hold", func() bool {
		probe := cm.DeepCopy()
		probe.Data = map[string]string{"probe": "1"}
		err := k8s.Update(ctx, probe, client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "params frozen by the test")
	})

	p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: "api"}},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}}},
		RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 10, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
	}}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitCondIn(t, ns, "api", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionFalse, apiwardenv1alpha1.ReasonAdmissionParamsPending)
	// It stays pending while the params cannot change (the controllers
	// retry the write with backoff meanwhile).
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c := policyCondIn(t, ns, "api", apiwardenv1alpha1.ConditionEnforced); c == nil || c.Reason != apiwardenv1alpha1.ReasonAdmissionParamsPending {
			t.Fatalf("with the params frozen, Enforced became %+v", c)
		}
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(&cm), &cm); err != nil {
		t.Fatal(err)
	}
	if got := exposure.ParamsGeneration(cm.Data, "api"); got != "" {
		t.Fatalf("the freeze did not hold: the params list generation %q", got)
	}

	unfreeze()
	waitCondIn(t, ns, "api", apiwardenv1alpha1.ConditionEnforced, metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced)
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(&cm), &cm); err != nil {
		t.Fatal(err)
	}
	if got := exposure.ParamsGeneration(cm.Data, "api"); got != "1" {
		t.Errorf("Enforced with the params at generation %q, want 1", got)
	}
}

// celNamespace creates a namespace <prefix>-<n>, an HTTPRoute "api" there
// attached to Gateway "edge", and a CEL-mode baseline of the namespace's
// name that governs only it.
func celNamespace(t *testing.T, prefix string) (string, *apiwardenv1alpha1.APIBaseline) {
	t.Helper()
	ctx := context.Background()
	runs++
	ns := fmt.Sprintf("%s-%d", prefix, runs)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"cel-test": ns}}}); err != nil {
		t.Fatal(err)
	}
	route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}}}}
	if err := k8s.Create(ctx, route); err != nil {
		t.Fatal(err)
	}
	b := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: apiwardenv1alpha1.APIBaselineSpec{
		Admission:         apiwardenv1alpha1.AdmissionModeCEL,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"cel-test": ns}},
	}}
	if err := k8s.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	return ns, b
}

// installEnvoyGatewayCRDs installs Envoy Gateway's CRDs unless they are
// there already, so that policies can be Enforced.
func installEnvoyGatewayCRDs(t *testing.T) {
	t.Helper()
	if k8s.List(context.Background(), &egv1a1.SecurityPolicyList{}) != nil {
		if err := env.InstallEnvoyGatewayCRDs(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestParamsGuard: while a baseline is in CEL mode, a namespace's own
// users cannot forge its params (which decide what the apiserver admits):
// a user allowed to write ConfigMaps there is refused on the params and
// only there, while the manager keeps writing them; a baseline that leaves
// CEL mode stops owning the guard.
func TestParamsGuard(t *testing.T) {
	ctx := context.Background()
	ns, b := celNamespace(t, "cel-guard")
	defer func() { _ = k8s.Delete(ctx, b) }()
	owns := func(o client.Object) bool {
		for _, ref := range o.GetOwnerReferences() {
			if ref.Name == b.Name {
				return true
			}
		}
		return false
	}
	guard := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	eventually(t, "the params guard, owned by the baseline", func() bool {
		return k8s.Get(ctx, client.ObjectKey{Name: exposure.ParamsGuardName}, guard) == nil && owns(guard)
	})
	var cm corev1.ConfigMap
	eventually(t, "the namespace's params", func() bool {
		return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: exposure.ParamsName}, &cm) == nil
	})

	// alice may write ConfigMaps in the namespace.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "configmaps"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "update", "patch"}}}}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "configmaps"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}}}
	for _, o := range []client.Object{role, rb} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "alice"}
	alice, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	forged := cm.DeepCopy()
	forged.Data = map[string]string{"levels": "forged"}
	var refused error
	eventually(t, "the apiserver refusing alice's write of the params", func() bool {
		refused = alice.Update(ctx, forged.DeepCopy(), client.DryRunAll)
		return apierrors.IsForbidden(refused) && strings.Contains(refused.Error(), "ValidatingAdmissionPolicy")
	})
	if want := "holds apiwarden's CEL admission params"; !strings.Contains(refused.Error(), want) {
		t.Errorf("refusal %q does not say %q", refused, want)
	}
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}, Data: map[string]string{"a": "b"}}
	if err := alice.Create(ctx, other, client.DryRunAll); err != nil {
		t.Errorf("alice may write other ConfigMaps: %v", err)
	}
	// The manager still writes the params: a new policy reaches them.
	p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: "api"}},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}}},
	}}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the policy in the params", func() bool {
		return k8s.Get(ctx, client.ObjectKeyFromObject(&cm), &cm) == nil && exposure.ParamsGeneration(cm.Data, "api") == "1"
	})

	// Out of CEL mode, the baseline no longer owns the guard.
	updateBaseline(t, b, func(s *apiwardenv1alpha1.APIBaselineSpec) { s.Admission = apiwardenv1alpha1.AdmissionModeWebhook })
	eventually(t, "the guard without the baseline among its owners", func() bool {
		err := k8s.Get(ctx, client.ObjectKey{Name: exposure.ParamsGuardName}, guard)
		return apierrors.IsNotFound(err) || (err == nil && !owns(guard))
	})
}

// updateBaseline reads b afresh, changes its spec with change, and writes
// it back.
func updateBaseline(t *testing.T, b *apiwardenv1alpha1.APIBaseline, change func(*apiwardenv1alpha1.APIBaselineSpec)) {
	t.Helper()
	ctx := context.Background()
	// The controllers write the baseline's status meanwhile: read afresh
	// and try again on a conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return err
		}
		change(&b.Spec)
		return k8s.Update(ctx, b)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestGuardFollowsExemptionExpiry: while an exemption waives a route's
// authentication, its APIPolicy is not its only protection and the CEL
// guard does not hold it; when the exemption expires the guard does, with
// nothing else changing (the params controller comes back at the expiry).
func TestGuardFollowsExemptionExpiry(t *testing.T) {
	ctx := context.Background()
	ns, b := celNamespace(t, "expiry")
	expires := metav1.NewTime(time.Now().Add(4 * time.Second).Truncate(time.Second))
	updateBaseline(t, b, func(s *apiwardenv1alpha1.APIBaselineSpec) {
		s.Require = &apiwardenv1alpha1.BaselineRequirements{Authentication: &apiwardenv1alpha1.AuthenticationRequirement{}}
		s.Exemptions = []apiwardenv1alpha1.Exemption{{Name: "api-auth", Target: apiwardenv1alpha1.ExemptionTarget{Namespace: ns, Kind: "HTTPRoute", Name: "api"},
			Controls: []apiwardenv1alpha1.Control{apiwardenv1alpha1.ControlAuthentication}, Reason: "OPS-7: keys arrive this sprint", Expires: expires}}
	})
	p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: "api"}},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}}},
	}}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	guard := func() string {
		var cm corev1.ConfigMap
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: exposure.ParamsName}, &cm); err != nil {
			return ""
		}
		return cm.Data[exposure.GuardKey]
	}
	holds := func() bool { return strings.Contains(guard(), exposure.RecordSeparator+"api"+exposure.ParamsSeparator) }
	var params corev1.ConfigMap
	eventually(t, "the policy in the params", func() bool {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: exposure.ParamsName}, &params)
		return err == nil && exposure.ParamsGeneration(params.Data, "api") == "1"
	})
	if time.Now().Before(expires.Time) && holds() {
		t.Fatalf("the guard holds the policy while the exemption waives the route's authentication: %q", guard())
	}
	eventually(t, "the guard to hold the policy once the exemption expired", holds)
	if time.Now().Before(expires.Time) {
		t.Errorf("the guard held the policy before the exemption expired")
	}
}

// TestCompiledPolicyEditsReverted: someone weakening a compiled binding
// (validationActions Deny → Audit) sees it restored; the spec-hash
// annotation alone, which the edit leaves as it was, does not hide it.
func TestCompiledPolicyEditsReverted(t *testing.T) {
	ctx := context.Background()
	ns, b := celNamespace(t, "edited")
	key := client.ObjectKey{Name: exposure.AdmissionPolicyName(ns, "Ingress")}
	var binding admissionregistrationv1.ValidatingAdmissionPolicyBinding
	eventually(t, "the compiled binding", func() bool { return k8s.Get(ctx, key, &binding) == nil })
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, key, &binding); err != nil {
			return err
		}
		binding.Spec.ValidationActions = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Audit}
		return k8s.Update(ctx, &binding)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the binding denying again", func() bool {
		var got admissionregistrationv1.ValidatingAdmissionPolicyBinding
		return k8s.Get(ctx, key, &got) == nil && len(got.Spec.ValidationActions) == 1 && got.Spec.ValidationActions[0] == admissionregistrationv1.Deny
	})
	// After the restore, the compiler's next change is written whole: the
	// actions become exactly [Warn] (an apply over the restored fields,
	// which the restore's update owns, would have asked for [Deny, Warn]
	// and been refused).
	updateBaseline(t, b, func(s *apiwardenv1alpha1.APIBaselineSpec) {
		s.EnforcementAction = apiwardenv1alpha1.EnforcementActionWarn
	})
	eventually(t, "the binding warning, and only warning", func() bool {
		var got admissionregistrationv1.ValidatingAdmissionPolicyBinding
		return k8s.Get(ctx, key, &got) == nil && slices.Equal(got.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn})
	})
	updateBaseline(t, b, func(s *apiwardenv1alpha1.APIBaselineSpec) {
		s.EnforcementAction = apiwardenv1alpha1.EnforcementActionDeny
	})
	eventually(t, "the binding denying after the baseline's change back", func() bool {
		var got admissionregistrationv1.ValidatingAdmissionPolicyBinding
		return k8s.Get(ctx, key, &got) == nil && slices.Equal(got.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny})
	})

	// The policy: failurePolicy Ignore, its validation neutered and
	// apiwarden's annotations removed, as kubectl edit or a GitOps tool
	// that owns no such object would. apiwarden keeps no memory of what it
	// wrote (its record is on the object), so what a restarted manager
	// sees is what this one sees: the edit must be undone.
	var vap admissionregistrationv1.ValidatingAdmissionPolicy
	var want admissionregistrationv1.ValidatingAdmissionPolicySpec
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, key, &vap); err != nil {
			return err
		}
		want = *vap.Spec.DeepCopy()
		vap.Spec.FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
		vap.Spec.Validations[0].Expression = "true"
		vap.Annotations = nil
		return k8s.Update(ctx, &vap)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the policy's spec restored whole", func() bool {
		var got admissionregistrationv1.ValidatingAdmissionPolicy
		return k8s.Get(ctx, key, &got) == nil && equality.Semantic.DeepEqual(got.Spec, want)
	})
	// Restored once, then left alone: no write loop.
	var settled admissionregistrationv1.ValidatingAdmissionPolicy
	if err := k8s.Get(ctx, key, &settled); err != nil {
		t.Fatal(err)
	}
	n := reconciles(t, "admissionpolicy")
	// A foreign annotation on the binding reconciles the baseline (it owns
	// the binding) and changes no spec.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, key, &binding); err != nil {
			return err
		}
		binding.Annotations["example.com/touched"] = "yes"
		return k8s.Update(ctx, &binding)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reconcile after the restore", func() bool { return reconciles(t, "admissionpolicy") > n })
	time.Sleep(time.Second)
	var again admissionregistrationv1.ValidatingAdmissionPolicy
	if err := k8s.Get(ctx, key, &again); err != nil || again.ResourceVersion != settled.ResourceVersion {
		t.Errorf("the restored policy was written again (%v)", err)
	}
}

// TestCompiledPolicyEditRevertedAfterRestart: what apiwarden wrote is
// recorded on the object, not in the process, so a manager that starts
// after someone edited a compiled policy still puts it back. Two
// reconcilers stand for the manager before and after a restart; the object
// carries no label of a baseline, so the running manager leaves it alone.
func TestCompiledPolicyEditRevertedAfterRestart(t *testing.T) {
	ctx := context.Background()
	runs++
	name := fmt.Sprintf("apiwarden-restart-%d", runs)
	desired := func() *admissionregistrationv1.ValidatingAdmissionPolicy {
		return &admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr.To(admissionregistrationv1.Fail),
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"networking.k8s.io"}, APIVersions: []string{"v1"}, Resources: []string{"ingresses"}},
					}}}},
				Validations: []admissionregistrationv1.Validation{{Expression: "has(object.spec.tls)", Message: "TLS"}},
			},
		}
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), desired()) })
	before := &controllers.AdmissionPolicyReconciler{Client: k8s}
	if err := before.ApplyCompiled(ctx, desired()); err != nil {
		t.Fatal(err)
	}
	var vap admissionregistrationv1.ValidatingAdmissionPolicy
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &vap); err != nil {
		t.Fatal(err)
	}
	want := *vap.Spec.DeepCopy()
	// A second apply of the same content writes nothing.
	if err := before.ApplyCompiled(ctx, desired()); err != nil {
		t.Fatal(err)
	}
	var same admissionregistrationv1.ValidatingAdmissionPolicy
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &same); err != nil || same.ResourceVersion != vap.ResourceVersion {
		t.Fatalf("an unchanged policy was written again (%v)", err)
	}
	// Edited, apiwarden's annotations left as they were: a match
	// condition that never holds turns the policy off. A server-side apply
	// alone would keep it (match conditions are a map list, and apiwarden
	// sets none), as the manager did after a restart before the record was
	// kept on the object.
	vap.Spec.MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "off", Expression: "false"}}
	vap.Spec.FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
	if err := k8s.Update(ctx, &vap); err != nil {
		t.Fatal(err)
	}
	after := &controllers.AdmissionPolicyReconciler{Client: k8s}
	if err := after.ApplyCompiled(ctx, desired()); err != nil {
		t.Fatal(err)
	}
	var got admissionregistrationv1.ValidatingAdmissionPolicy
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &got); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got.Spec, want) {
		t.Errorf("after a restart the edited policy was not restored:\ngot  %+v\nwant %+v", got.Spec, want)
	}

	// A stale read: the reconciler sees the policy as it was before an
	// edit, while its compiled content changes. Its write must fail on the
	// resourceVersion instead of recording the edit as its own.
	stale := got.DeepCopy()
	got.Spec.MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "off", Expression: "false"}}
	if err := k8s.Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	direct, err := client.NewWithWatch(env.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	staleReader := interceptor.NewClient(direct, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if v, ok := obj.(*admissionregistrationv1.ValidatingAdmissionPolicy); ok && key.Name == name {
				stale.DeepCopyInto(v)
				return nil
			}
			return c.Get(ctx, key, obj, opts...)
		},
	})
	changed := desired()
	changed.Spec.Validations[0].Message = "TLS, please"
	if err := (&controllers.AdmissionPolicyReconciler{Client: staleReader}).ApplyCompiled(ctx, changed); !apierrors.IsConflict(err) {
		t.Fatalf("a write from a stale read: %v, want a conflict", err)
	}
	// The next reconcile, reading the edit, writes the whole spec.
	if err := after.ApplyCompiled(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.MatchConditions) != 0 || got.Spec.Validations[0].Message != "TLS, please" {
		t.Errorf("after the stale write was refused, the policy is %+v", got.Spec)
	}
}
