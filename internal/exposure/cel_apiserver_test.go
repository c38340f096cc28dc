package exposure_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

const ownNamespace = "apiwarden-system"

// invalid counts the cases whose object the apiserver's own validation
// refuses (upper-case hosts, say): the engine judges manifests offline too,
// but admission never sees those objects.
var invalid int

// TestCELMatchesEngine is the differential test of CEL mode: every case of
// the engine's table goes through a real kube-apiserver, which evaluates
// the ValidatingAdmissionPolicy compiled for the case's baseline
// (AdmissionPolicy) against params computed for the case's policies
// (Params), and its verdict and message must be the engine's, as the webhook
// computes them (Evaluate with the webhook's options; the webhook's own
// envtest suite, test/admission, shows that it answers what Evaluate says).
//
// Each baseline of a case is compiled with enforcementAction Deny, so that
// every violation shows in the apiserver's answer; how actions map to
// bindings is TestCELActions'. Each case runs in a namespace of its own
// (the table's "shop" renamed), and waits until the apiserver has loaded
// its policy and params: a probe validation, added in front of the compiled
// one, denies an object named apiwarden-probe once both are in place. The
// compiled fast path (matchConditions) is part of what each case checks:
// an object it admits is never evaluated by the validations.
func TestCELMatchesEngine(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	k8s, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ownNamespace}}); err != nil {
		t.Fatal(err)
	}
	compared := 0
	for i, tc := range exposure.DiffCases(t) {
		prev := "shop"
		for j, b := range tc.Baselines {
			// A namespace per case and baseline: a policy the apiserver
			// has not yet forgotten must not judge the next one.
			ns := fmt.Sprintf("shop-%d-%d", i, j)
			rename(&tc, prev, ns)
			prev = ns
			t.Run(tc.Name+"/"+b.Name, func(t *testing.T) {
				runCELCase(ctx, t, k8s, tc, b, fmt.Sprintf("%d-%s", i, b.Name))
			})
			compared++
		}
	}
	t.Logf("%d cases compared, %d refused by the apiserver's validation before admission", compared-invalid, invalid)
	if compared-invalid < 60 {
		t.Fatalf("compared %d cases, want at least 60", compared-invalid)
	}
}

// rename moves a case from namespace from to namespace to.
func rename(tc *exposure.DiffCase, from, to string) {
	obj := tc.Object.(client.Object)
	if obj.GetNamespace() == from {
		obj.SetNamespace(to)
	}
	for _, p := range tc.Policies {
		if p.Namespace == from {
			p.Namespace = to
		}
	}
	for _, b := range tc.Baselines {
		for i := range b.Spec.Exemptions {
			if b.Spec.Exemptions[i].Target.Namespace == from {
				b.Spec.Exemptions[i].Target.Namespace = to
			}
		}
	}
	if l, ok := tc.Namespaces[from]; ok {
		tc.Namespaces = map[string]map[string]string{to: l}
	}
	setParents := func(refs []gatewayv1.ParentReference) {
		for i := range refs {
			if refs[i].Namespace != nil && string(*refs[i].Namespace) == from {
				n := gatewayv1.Namespace(to)
				refs[i].Namespace = &n
			}
		}
	}
	switch o := tc.Object.(type) {
	case *gatewayv1.HTTPRoute:
		setParents(o.Spec.ParentRefs)
	case *gatewayv1.GRPCRoute:
		setParents(o.Spec.ParentRefs)
	}
}

func runCELCase(ctx context.Context, t *testing.T, k8s client.Client, tc exposure.DiffCase, b *apiwardenv1alpha1.APIBaseline, suffix string) {
	obj := tc.Object.DeepCopyObject().(client.Object)
	ns := obj.GetNamespace()
	labels := tc.Namespaces[ns]
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	b = b.DeepCopy()
	b.Spec.EnforcementAction = apiwardenv1alpha1.EnforcementActionDeny

	// What the webhook answers: the engine, with the namespace's labels as
	// the apiserver has them.
	var nsLabels corev1.Namespace
	if err := k8s.Get(ctx, client.ObjectKey{Name: ns}, &nsLabels); err != nil {
		t.Fatal(err)
	}
	snap := exposure.NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{b}, tc.Policies, map[string]map[string]string{ns: nsLabels.Labels})
	governed, want := engineVerdict(t, tc.Object, snap)

	kind, _ := exposure.KindOf(tc.Object)
	vap, binding, err := exposure.AdmissionPolicy(b, kind, exposure.Now, ownNamespace)
	if err != nil {
		t.Fatal(err)
	}
	vap.Name += "-" + suffix
	binding.Name, binding.Spec.PolicyName = vap.Name, vap.Name
	// Only this case's namespace, so that cases do not see each other.
	binding.Spec.MatchResources.NamespaceSelector.MatchExpressions = append(binding.Spec.MatchResources.NamespaceSelector.MatchExpressions,
		metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{ns}})
	// The probe skips the fast path, which would otherwise admit a copy
	// of a compliant object without evaluating the probe validation.
	for i := range vap.Spec.MatchConditions {
		vap.Spec.MatchConditions[i].Expression = "object.metadata.name == 'apiwarden-probe' || " + vap.Spec.MatchConditions[i].Expression
	}
	vap.Spec.Validations = append([]admissionregistrationv1.Validation{{
		Expression: "object.metadata.name != 'apiwarden-probe' || !(has(params.data) && 'apiwarden-probe' in params.data)",
		Message:    "apiwarden-probe-ready",
	}}, vap.Spec.Validations...)
	data := exposure.Params(snap, tc.Policies, ns)
	data["apiwarden-probe"] = ""
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: exposure.ParamsName}, Data: data}
	objs := []client.Object{cm, vap, binding}
	const probeLabel = "apiwarden-probe"
	if !governed {
		// The case's binding never applies to this namespace, so its
		// probe would never be refused. A second binding of the same
		// policy and params, for the probe alone, tells when the apiserver
		// has loaded them; it is created after the case's binding, so
		// the apiserver's informers hold that one by then.
		probeBinding := binding.DeepCopy()
		probeBinding.Name += "-probe"
		probeBinding.Spec.MatchResources.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{ns}}}}
		probeBinding.Spec.MatchResources.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{probeLabel: "true"}}
		objs = append(objs, probeBinding)
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("creating %T: %v", o, err)
		}
	}
	defer func() {
		for _, o := range slices.Backward(objs) {
			_ = k8s.Delete(ctx, o)
		}
	}()
	if vap.Status.TypeChecking != nil && len(vap.Status.TypeChecking.ExpressionWarnings) > 0 {
		t.Logf("type checking: %+v", vap.Status.TypeChecking.ExpressionWarnings)
	}

	// Wait for the apiserver to load the policy, its bindings and the
	// params.
	{
		deadline := time.Now().Add(15 * time.Second)
		for {
			// A fresh copy each time: Create writes the answer (a dry-run
			// ClusterIP, say) into the object.
			probe := obj.DeepCopyObject().(client.Object)
			probe.SetName("apiwarden-probe")
			if !governed {
				probe.SetLabels(map[string]string{probeLabel: "true"})
			}
			err := k8s.Create(ctx, probe, client.DryRunAll)
			if err != nil && strings.Contains(err.Error(), "apiwarden-probe-ready") {
				break
			}
			if apierrors.IsInvalid(err) {
				invalid++
				t.Skipf("the apiserver's validation refuses the object before admission, so admission never sees it: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the apiserver never loaded the case's policy and params; last answer: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	err = k8s.Create(ctx, obj, client.DryRunAll)
	got := denial(err)
	if err != nil && got == "" {
		t.Fatalf("the apiserver refused the object for another reason: %v", err)
	}
	// The webhook's lines, joined by spaces: the apiserver refuses line
	// breaks in a policy's message.
	if wantMsg := strings.Join(listed(want), " "); got != wantMsg {
		t.Errorf("CEL and the engine disagree.\nCEL:    %q\nengine: %q", got, wantMsg)
	}
}

// listed is how the webhook lists violations: the first ten, then a count.
func listed(texts []string) []string {
	if len(texts) <= 10 {
		return texts
	}
	return append(texts[:10:10], fmt.Sprintf("… and %d more violations; run `apiwarden check` on the manifest to see them all.", len(texts)-10))
}

// denial returns the message of a ValidatingAdmissionPolicy's denial, or "".
func denial(err error) string {
	if err == nil {
		return ""
	}
	const marker = "denied request: "
	s := err.Error()
	i := strings.Index(s, marker)
	if i < 0 {
		return ""
	}
	return s[i+len(marker):]
}

// engineVerdict is what the webhook answers: whether a baseline of snap
// governs obj, and the texts of its violations.
func engineVerdict(t testing.TB, obj runtime.Object, snap exposure.Snapshot) (bool, []string) {
	t.Helper()
	verdict, err := exposure.Evaluate(obj, snap, exposure.Now, exposure.Options{OwnNamespace: ownNamespace})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, v := range verdict.Violations {
		texts = append(texts, v.Text())
	}
	return len(verdict.Governed) > 0, texts
}
