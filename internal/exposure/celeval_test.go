package exposure_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// This file evaluates compiled ValidatingAdmissionPolicies in process, with
// the apiserver's own admission packages (k8s.io/apiserver at the version
// the envtest apiserver runs) put together as its validating plugin puts
// them: the same CEL environment, variable composition, cost budget and
// params wrapping. It makes the compiled expressions' cost measurable in a
// Go benchmark, and the differential test cheap enough to run on every
// case of the engine's table; the apiserver test (cel_apiserver_test.go)
// stays the authority on what a real apiserver answers.

// inProcess compiles vap as the validating admission plugin does
// (compilePolicy in k8s.io/apiserver's validating package).
func inProcess(t testing.TB, vap *admissionregistrationv1.ValidatingAdmissionPolicy) validating.Validator {
	t.Helper()
	compiler, err := cel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		t.Fatal(err)
	}
	hasParams := vap.Spec.ParamKind != nil
	vars := make([]cel.NamedExpressionAccessor, len(vap.Spec.Variables))
	for i, v := range vap.Spec.Variables {
		vars[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
	}
	opt := cel.OptionalVariableDeclarations{HasParams: hasParams, HasAuthorizer: true}
	compiler.CompileAndStoreVariables(vars, opt, environment.StoredExpressions)
	validations := make([]cel.ExpressionAccessor, len(vap.Spec.Validations))
	messages := make([]cel.ExpressionAccessor, len(vap.Spec.Validations))
	for i, v := range vap.Spec.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
	}
	var matcher matchconditions.Matcher
	if len(vap.Spec.MatchConditions) > 0 {
		mcs := make([]cel.ExpressionAccessor, len(vap.Spec.MatchConditions))
		for i := range vap.Spec.MatchConditions {
			mcs[i] = (*matchconditions.MatchCondition)(&vap.Spec.MatchConditions[i])
		}
		matcher = matchconditions.NewMatcher(compiler.CompileCondition(mcs, opt, environment.StoredExpressions), vap.Spec.FailurePolicy, "policy", "validate", vap.Name)
	}
	v := validating.NewValidator(
		compiler.CompileCondition(validations, opt, environment.StoredExpressions),
		matcher,
		compiler.CompileCondition(nil, opt, environment.StoredExpressions),
		compiler.CompileCondition(messages, cel.OptionalVariableDeclarations{HasParams: hasParams}, environment.StoredExpressions),
		vap.Spec.FailurePolicy, nil)
	if err := v.CompileError(); err != nil {
		t.Fatal(err)
	}
	return v
}

// wrappedParams is what the apiserver hands the policy as params: its
// informer's ConfigMap, which has no TypeMeta, wrapped so that CEL sees
// apiVersion and kind (wrappedParam in the validating package). Its
// ToUnstructured converts the whole ConfigMap on every evaluation, as the
// apiserver's does.
type wrappedParams struct {
	metav1.TypeMeta
	cm *corev1.ConfigMap
}

func (w *wrappedParams) ToUnstructured() any {
	res, err := runtime.DefaultUnstructuredConverter.ToUnstructured(w.cm)
	if err != nil {
		return nil
	}
	res["apiVersion"], res["kind"] = "v1", "ConfigMap"
	return res
}

// MarshalJSON is never called; it makes wrappedParams the
// structured-merge-diff UnstructuredConverter that wrappedParam is.
func (w *wrappedParams) MarshalJSON() ([]byte, error) {
	return nil, errors.New("MarshalJSON unimplemented for wrappedParams")
}

func (w *wrappedParams) DeepCopyObject() runtime.Object {
	return &wrappedParams{TypeMeta: w.TypeMeta, cm: w.cm.DeepCopy()}
}

// evalInProcess evaluates v on a CREATE (old == nil) or UPDATE of obj in
// namespace ns with params (nil: the binding's parameterNotFoundAction is
// the caller's business), and returns the message of the denial, or "".
func evalInProcess(t testing.TB, v validating.Validator, obj, old client.Object, params *corev1.ConfigMap, ns *corev1.Namespace) string {
	t.Helper()
	gvk, err := apiutilGVK(obj)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: resourceOf(gvk.Kind)}
	op := admission.Create
	var oldObj runtime.Object
	if old != nil {
		op, oldObj = admission.Update, old
	}
	attrs := admission.NewAttributesRecord(obj, oldObj, gvk, obj.GetNamespace(), obj.GetName(), gvr, "", op, nil, true, &user.DefaultInfo{Name: "bench"})
	va := &admission.VersionedAttributes{Attributes: attrs, VersionedKind: gvk}
	va.VersionedObject.Set(obj)
	if oldObj != nil {
		va.VersionedOldObject.Set(oldObj)
	}
	var p runtime.Object
	if params != nil {
		p = &wrappedParams{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, cm: params}
	}
	res := v.Validate(context.Background(), gvr, va, p, ns, celconfig.RuntimeCELCostBudget, nil)
	for _, d := range res.Decisions {
		if d.Action == validating.ActionDeny {
			if d.Evaluation == validating.EvalError {
				t.Fatalf("evaluation error: %s", d.Message)
			}
			return d.Message
		}
	}
	return ""
}

func apiutilGVK(obj client.Object) (schema.GroupVersionKind, error) {
	kind, ok := exposure.KindOf(obj)
	if !ok {
		return schema.GroupVersionKind{}, fmt.Errorf("no kind for %T", obj)
	}
	for _, k := range exposure.CELKinds {
		if k.Kind == kind {
			v := "v1"
			return schema.GroupVersionKind{Group: k.Group, Version: v, Kind: kind}, nil
		}
	}
	return schema.GroupVersionKind{}, fmt.Errorf("no CEL policy for kind %s", kind)
}

func resourceOf(kind string) string {
	for _, k := range exposure.CELKinds {
		if k.Kind == kind {
			return k.Resource
		}
	}
	return strings.ToLower(kind) + "s"
}

// TestCELInProcessMatchesEngine is TestCELMatchesEngine without the
// apiserver: every case of the engine's table, every baseline, through the
// apiserver's admission packages in process. It also checks, for every case,
// that the compiled policy's verdict is the engine's whichever order the
// expressions are evaluated in (a fast path that disagreed with the full
// violation list would show here).
func TestCELInProcessMatchesEngine(t *testing.T) {
	compared, fast, slowPass := 0, 0, 0
	for i, tc := range exposure.DiffCases(t) {
		for _, b := range tc.Baselines {
			b = b.DeepCopy()
			b.Spec.EnforcementAction = apiwardenv1alpha1.EnforcementActionDeny
			obj := tc.Object.(client.Object)
			ns := obj.GetNamespace()
			snap := exposure.NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{b}, tc.Policies, tc.Namespaces)
			governed, want := engineVerdict(t, tc.Object, snap)
			if !governed {
				continue
			}
			kind, _ := exposure.KindOf(tc.Object)
			vap, _, err := exposure.AdmissionPolicy(b, kind, exposure.Now, ownNamespace)
			if err != nil {
				t.Fatal(err)
			}
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: exposure.ParamsName}, Data: exposure.Params(snap, tc.Policies, ns)}
			nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: tc.Namespaces[ns]}}
			got := evalInProcess(t, inProcess(t, vap), obj, nil, cm, nsObj)
			if wantMsg := strings.Join(listed(want), " "); got != wantMsg {
				t.Errorf("case %d %s/%s: CEL and the engine disagree.\nCEL:    %q\nengine: %q", i, tc.Name, b.Name, got, wantMsg)
			}
			compared++
			// The fast path alone: a policy that denies what the
			// matchCondition would skip.
			probe := vap.DeepCopy()
			probe.Spec.MatchConditions = nil
			probe.Spec.Validations = []admissionregistrationv1.Validation{{Expression: vap.Spec.MatchConditions[0].Expression, Message: "fast"}}
			if evalInProcess(t, inProcess(t, probe), obj, nil, cm, nsObj) != "" {
				fast++
				if len(want) > 0 {
					t.Errorf("case %d %s/%s: the fast path admits an object with violations: %q", i, tc.Name, b.Name, want)
				}
			} else if len(want) == 0 {
				slowPass++
			}
		}
	}
	t.Logf("%d cases compared; %d compliant objects took the fast path, %d the full check", compared, fast, slowPass)
	if compared < 60 {
		t.Fatalf("compared %d cases, want at least 60", compared)
	}
	if fast < 10 {
		t.Fatalf("only %d cases took the fast path, want at least 10: the table no longer exercises it", fast)
	}
}

// TestFastPathWithShardedList: with a thousand policies in the namespace
// the fast list is sharded by the last character of the object's name, and
// the fast path still finds a covered Ingress, while an uncovered one, or a
// covered one with a host missing from spec.tls, takes the full check and
// is denied.
func TestFastPathWithShardedList(t *testing.T) {
	b := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: apiwardenv1alpha1.APIBaselineSpec{Admission: apiwardenv1alpha1.AdmissionModeCEL}}
	v, cm, ns := benchSetup(t, 1000)
	shards := 0
	for k := range cm.Data {
		if strings.HasPrefix(k, exposure.FastKey(b)+".") {
			shards++
		}
	}
	if _, whole := cm.Data[exposure.FastKey(b)]; whole || shards != 10 {
		t.Fatalf("the fast list of 1,000 levels is not sharded by last character: whole=%v, %d shards", whole, shards)
	}
	vap, _, err := exposure.AdmissionPolicy(b, "Ingress", time.Now(), ownNamespace)
	if err != nil {
		t.Fatal(err)
	}
	probe := vap.DeepCopy()
	probe.Spec.MatchConditions = nil
	probe.Spec.Validations = []admissionregistrationv1.Validation{{Expression: vap.Spec.MatchConditions[0].Expression, Message: "fast"}}
	fast := inProcess(t, probe)
	for _, name := range []string{"ing-0", "ing-7", "ing-999"} {
		if evalInProcess(t, fast, benchIngress("bench", name, 20), nil, cm, ns) == "" {
			t.Errorf("covered Ingress %s did not take the fast path", name)
		}
	}
	uncovered := benchIngress("bench", "ing-1000", 1)
	partial := benchIngress("bench", "ing-3", 3)
	partial.Spec.TLS = partial.Spec.TLS[:2]
	for _, in := range []*networkingv1.Ingress{uncovered, partial} {
		if evalInProcess(t, fast, in, nil, cm, ns) != "" {
			t.Errorf("Ingress %s took the fast path", in.Name)
		}
		if evalInProcess(t, v, in, nil, cm, ns) == "" {
			t.Errorf("Ingress %s was admitted", in.Name)
		}
	}
}

// benchIngress is an Ingress of n hosts, each in spec.tls.
func benchIngress(ns, name string, n int) *networkingv1.Ingress {
	in := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	for h := range n {
		host := fmt.Sprintf("h%d.%s.example.com", h, name)
		in.Spec.Rules = append(in.Spec.Rules, networkingv1.IngressRule{Host: host})
		in.Spec.TLS = append(in.Spec.TLS, networkingv1.IngressTLS{Hosts: []string{host}, SecretName: "tls"})
	}
	return in
}

// benchSetup is a Deny baseline governing namespace "bench", np policies
// there each protecting its own Ingress (authentication and a rate limit),
// the compiled Ingress policy and the namespace's params.
func benchSetup(t testing.TB, np int) (validating.Validator, *corev1.ConfigMap, *corev1.Namespace) {
	const ns = "bench"
	var ps []*apiwardenv1alpha1.APIPolicy
	for i := range np {
		ps = append(ps, &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("ing-%d", i), Generation: 1}, Spec: apiwardenv1alpha1.APIPolicySpec{
			TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: "networking.k8s.io", Kind: "Ingress", Name: fmt.Sprintf("ing-%d", i)}},
			Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}}},
			RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 5, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
		}})
	}
	b := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: apiwardenv1alpha1.APIBaselineSpec{Admission: apiwardenv1alpha1.AdmissionModeCEL}}
	snap := exposure.NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{b}, ps, nil)
	vap, _, err := exposure.AdmissionPolicy(b, "Ingress", time.Now(), ownNamespace)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: exposure.ParamsName}, Data: exposure.Params(snap, ps, ns)}
	return inProcess(t, vap), cm, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
}

// BenchmarkAdmissionPolicy measures one evaluation of the compiled Ingress
// policy of a CEL-mode baseline, in process, for a compliant Ingress of 1
// and 20 hosts, with params of 10 and 1,000 policies; "trivial" is a policy
// with the same params whose only validation is "true", the floor every
// ValidatingAdmissionPolicy with params pays.
//
//	go test ./internal/exposure -run '^$' -bench AdmissionPolicy -benchmem
func BenchmarkAdmissionPolicy(b *testing.B) {
	for _, np := range []int{10, 1000} {
		v, cm, ns := benchSetup(b, np)
		trivial := &admissionregistrationv1.ValidatingAdmissionPolicy{Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			ParamKind:   &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
			Validations: []admissionregistrationv1.Validation{{Expression: "true"}},
		}}
		tv := inProcess(b, trivial)
		for _, hosts := range []int{1, 20} {
			in := benchIngress("bench", "ing-1", hosts)
			if msg := evalInProcess(b, v, in, nil, cm, ns); msg != "" {
				b.Fatalf("the compliant Ingress was denied: %s", msg)
			}
			b.Run(fmt.Sprintf("policies=%d/hosts=%d/compiled", np, hosts), func(b *testing.B) {
				for b.Loop() {
					evalInProcess(b, v, in, nil, cm, ns)
				}
			})
			b.Run(fmt.Sprintf("policies=%d/hosts=%d/trivial", np, hosts), func(b *testing.B) {
				for b.Loop() {
					evalInProcess(b, tv, in, nil, cm, ns)
				}
			})
		}
	}
}
