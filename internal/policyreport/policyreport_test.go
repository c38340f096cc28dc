package policyreport

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/coverage"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

func TestCRD(t *testing.T) {
	crd, err := CRD()
	if err != nil {
		t.Fatal(err)
	}
	if crd.Spec.Group != GVK.Group || crd.Spec.Names.Kind != GVK.Kind || len(crd.Spec.Versions) == 0 || crd.Spec.Versions[0].Name != GVK.Version {
		t.Fatalf("embedded CRD is %s %s %v", crd.Spec.Group, crd.Spec.Names.Kind, crd.Spec.Versions)
	}
}

func baselines() []*apiwardenv1alpha1.APIBaseline {
	return []*apiwardenv1alpha1.APIBaseline{
		{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, // TLS, Authentication, RateLimit
		{ObjectMeta: metav1.ObjectMeta{Name: "strict"}, Spec: apiwardenv1alpha1.APIBaselineSpec{Require: &apiwardenv1alpha1.BaselineRequirements{
			RequestBody: &apiwardenv1alpha1.RequestBodyRequirement{MaxBytes: 1024}}}},
	}
}

func TestBuild(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	expires := now.Add(time.Hour)
	objs := []coverage.Object{
		{Kind: "Ingress", Namespace: "shop", Name: "bare", UID: "u1", Verdict: exposure.Verdict{Exposed: true, Governed: []string{"default"},
			Violations: []exposure.Violation{
				{Code: exposure.CodeTLSMissing, Control: apiwardenv1alpha1.ControlTLS, Field: "spec.rules[0].host", Message: "Host a has no TLS.", Hint: "Add it.", Baseline: "default", Action: apiwardenv1alpha1.EnforcementActionAudit},
				{Code: exposure.CodeTLSMissing, Control: apiwardenv1alpha1.ControlTLS, Field: "spec.rules[1].host", Message: "Host b has no TLS.", Baseline: "default", Action: apiwardenv1alpha1.EnforcementActionAudit},
			},
			Exempted: []exposure.Violation{{Code: exposure.CodeAuthMissing, Control: apiwardenv1alpha1.ControlAuthentication, Message: "No auth.", Baseline: "default",
				Exemption: "legacy", ExemptionExpires: &expires}}}},
		{Kind: "HTTPRoute", Namespace: "shop", Name: "api", UID: "u2", Verdict: exposure.Verdict{Exposed: true, Governed: []string{"default", "strict"}}},
		{Kind: "Service", Namespace: "shop", Name: "internal", UID: "u3", Verdict: exposure.Verdict{}},                                       // not exposed
		{Kind: "Service", Namespace: "other", Name: "x", UID: "u4", Verdict: exposure.Verdict{Exposed: true, Governed: []string{"default"}}}, // other namespace
	}
	rep := Build("shop", objs, baselines(), nil, now, 0)
	if rep.Summary != (Summary{Pass: 5, Fail: 1, Skip: 1}) || rep.Omitted != 0 || len(rep.Results) != 7 {
		t.Fatalf("summary %+v, %d results, %d omitted", rep.Summary, len(rep.Results), rep.Omitted)
	}
	fail, skip := rep.Results[0], rep.Results[1]
	if fail.Result != ResultFail || fail.Policy != "default" || fail.Rule != "TLS" || fail.Resources[0].UID != "u1" ||
		fail.Resources[0].APIVersion != "networking.k8s.io/v1" || fail.Severity != "high" ||
		fail.Message != "Host a has no TLS. Add it. Host b has no TLS." ||
		fail.Properties["codes"] != "TLSMissing" || fail.Properties["fields"] != "spec.rules[0].host,spec.rules[1].host" ||
		fail.Properties["enforcementAction"] != "Audit" || fail.Timestamp.Seconds != now.Unix() {
		t.Errorf("fail result: %+v", fail)
	}
	if skip.Result != ResultSkip || skip.Rule != "Authentication" || skip.Properties["exemption"] != "legacy" ||
		skip.Properties["exemptionExpires"] != "2026-11-26T11:00:00Z" || !strings.Contains(skip.Message, `exemption "legacy" of APIBaseline default until 2026-11-26T11:00:00Z`) {
		t.Errorf("skip result: %+v", skip)
	}
	var rules []string
	for _, r := range rep.Results[2:] {
		rules = append(rules, r.Resources[0].Name+"/"+r.Policy+"/"+r.Rule+"="+r.Result)
	}
	want := "api/default/TLS=pass api/default/Authentication=pass api/default/RateLimit=pass api/strict/RequestBody=pass bare/default/RateLimit=pass"
	if got := strings.Join(rules, " "); got != want {
		t.Errorf("passes:\n got %s\nwant %s", got, want)
	}

	// A later build with nothing changed is equal, timestamps included, and
	// survives the trip through the apiserver's form.
	u, err := rep.Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	again := Build("shop", objs, baselines(), &back, now.Add(time.Minute), 0)
	if !Equal(again, back) {
		t.Errorf("an unchanged namespace built a different report")
	}
	// The hash ignores timestamps, and is what the object carries.
	fresh := Build("shop", objs, baselines(), nil, now.Add(time.Hour), 0)
	if fresh.Hash() != rep.Hash() || u.GetAnnotations()[HashAnnotation] != rep.Hash() {
		t.Errorf("hash %s, fresh %s, annotation %s", rep.Hash(), fresh.Hash(), u.GetAnnotations()[HashAnnotation])
	}
	// A fix changes that one result and its timestamp only.
	objs[0].Verdict.Violations = nil
	fixed := Build("shop", objs, baselines(), &back, now.Add(time.Minute), 0)
	if Equal(fixed, back) || fixed.Hash() == rep.Hash() || fixed.Summary != (Summary{Pass: 6, Skip: 1}) {
		t.Fatalf("after the fix: %+v", fixed.Summary)
	}
	for _, r := range fixed.Results {
		changed := r.Resources[0].Name == "bare" && r.Rule == "TLS"
		if (r.Timestamp.Seconds != now.Unix()) != changed {
			t.Errorf("%s/%s timestamp %d", r.Resources[0].Name, r.Rule, r.Timestamp.Seconds)
		}
	}
}

func TestBuildBound(t *testing.T) {
	var objs []coverage.Object
	for i := 0; i < 10; i++ {
		v := exposure.Verdict{Exposed: true, Governed: []string{"default"}}
		if i == 7 {
			v.Violations = []exposure.Violation{{Code: exposure.CodeRateLimitMissing, Control: apiwardenv1alpha1.ControlRateLimit, Baseline: "default"}}
		}
		objs = append(objs, coverage.Object{Kind: "Service", Namespace: "big", Name: string(rune('a' + i)), Verdict: v})
	}
	rep := Build("big", objs, baselines(), nil, time.Now(), 4)
	if len(rep.Results) != 4 || rep.Omitted != 26 || rep.Summary.Pass != 29 || rep.Summary.Fail != 1 || rep.Results[0].Result != ResultFail {
		t.Fatalf("bounded report: %d results, %d omitted, %+v, first %s", len(rep.Results), rep.Omitted, rep.Summary, rep.Results[0].Result)
	}
	u, err := rep.Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	if u.GetAnnotations()[OmittedAnnotation] != "26" || u.GetLabels()[ManagedByLabel] != Source || u.GetName() != Name || u.GetNamespace() != "big" {
		t.Errorf("metadata: %v %v", u.GetAnnotations(), u.GetLabels())
	}
}
