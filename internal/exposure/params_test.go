package exposure

import (
	"maps"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// TestCompleteNeedsEveryCheckedField: a level is complete only when its
// winner sets, and passes, every field the baseline checks, since a field
// it leaves unset comes from a less specific level the params cannot vouch
// for; TLS may stay unset when the baseline asks for 1.2 only.
func TestCompleteNeedsEveryCheckedField(t *testing.T) {
	keys := &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "k"}}}}
	limit := &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 5, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}}
	body := int64(1024)
	full := apiwardenv1alpha1.APIPolicySpec{Authentication: keys, RateLimit: limit}
	cases := []struct {
		name string
		spec apiwardenv1alpha1.APIPolicySpec
		req  *apiwardenv1alpha1.BaselineRequirements
		want bool
	}{
		{"default requirements met", full, nil, true},
		{"no rate limit", apiwardenv1alpha1.APIPolicySpec{Authentication: keys}, nil, false},
		{"rate limit without limits", apiwardenv1alpha1.APIPolicySpec{Authentication: keys, RateLimit: &apiwardenv1alpha1.RateLimit{}}, nil, false},
		{"method not accepted", full, &apiwardenv1alpha1.BaselineRequirements{Authentication: &apiwardenv1alpha1.AuthenticationRequirement{Methods: []apiwardenv1alpha1.AuthenticationMethod{apiwardenv1alpha1.AuthenticationMethodJWT}}}, false},
		{"TLS 1.3 required, unset", full, &apiwardenv1alpha1.BaselineRequirements{TLS: &apiwardenv1alpha1.TLSRequirement{MinVersion: apiwardenv1alpha1.TLSVersion13}}, false},
		{"TLS 1.3 required and set", apiwardenv1alpha1.APIPolicySpec{TLS: &apiwardenv1alpha1.TLSPolicy{MinVersion: apiwardenv1alpha1.TLSVersion13}}, &apiwardenv1alpha1.BaselineRequirements{TLS: &apiwardenv1alpha1.TLSRequirement{MinVersion: apiwardenv1alpha1.TLSVersion13}}, true},
		{"CORS checked, unset", full, &apiwardenv1alpha1.BaselineRequirements{CORS: &apiwardenv1alpha1.CORSRequirement{}}, false},
		{"CORS checked, listed origins", apiwardenv1alpha1.APIPolicySpec{CORS: &apiwardenv1alpha1.CORS{AllowOrigins: []string{"https://app.example.com"}}}, &apiwardenv1alpha1.BaselineRequirements{CORS: &apiwardenv1alpha1.CORSRequirement{}}, true},
		{"CORS checked, any origin", apiwardenv1alpha1.APIPolicySpec{CORS: &apiwardenv1alpha1.CORS{AllowOrigins: []string{"*"}}}, &apiwardenv1alpha1.BaselineRequirements{CORS: &apiwardenv1alpha1.CORSRequirement{}}, false},
		{"body limit unset", apiwardenv1alpha1.APIPolicySpec{Request: &apiwardenv1alpha1.RequestLimits{}}, &apiwardenv1alpha1.BaselineRequirements{RequestBody: &apiwardenv1alpha1.RequestBodyRequirement{MaxBytes: 2048}}, false},
		{"body limit within", apiwardenv1alpha1.APIPolicySpec{Request: &apiwardenv1alpha1.RequestLimits{MaxBodyBytes: &body}}, &apiwardenv1alpha1.BaselineRequirements{RequestBody: &apiwardenv1alpha1.RequestBodyRequirement{MaxBytes: 2048}}, true},
		{"body limit above", apiwardenv1alpha1.APIPolicySpec{Request: &apiwardenv1alpha1.RequestLimits{MaxBodyBytes: &body}}, &apiwardenv1alpha1.BaselineRequirements{RequestBody: &apiwardenv1alpha1.RequestBodyRequirement{MaxBytes: 512}}, false},
	}
	for _, tc := range cases {
		b := &apiwardenv1alpha1.APIBaseline{Spec: apiwardenv1alpha1.APIBaselineSpec{Require: tc.req}}
		if got := complete(&apiwardenv1alpha1.APIPolicy{Spec: tc.spec}, requirements(b)); got != tc.want {
			t.Errorf("%s: complete = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestParamsLayout: every level with a policy is one record of LevelsKey,
// LevelFields reads it back, and each baseline's FastKey marks the level
// complete or not; the key changes with the requirements.
func TestParamsLayout(t *testing.T) {
	keys := &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "k"}}}}
	limit := &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 5, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}}
	ref := func(name string) []apiwardenv1alpha1.PolicyTargetReference {
		return []apiwardenv1alpha1.PolicyTargetReference{{Group: GroupNetworking, Kind: "Ingress", Name: name}}
	}
	ps := []*apiwardenv1alpha1.APIPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "full", Generation: 3}, Spec: apiwardenv1alpha1.APIPolicySpec{TargetRefs: ref("a"), Authentication: keys, RateLimit: limit}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "half"}, Spec: apiwardenv1alpha1.APIPolicySpec{TargetRefs: ref("ab"), Authentication: keys}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "dry"}, Spec: apiwardenv1alpha1.APIPolicySpec{TargetRefs: ref("c"), Mode: apiwardenv1alpha1.PolicyModeDryRun, Authentication: keys}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "dry2"}, Spec: apiwardenv1alpha1.APIPolicySpec{TargetRefs: ref("c"), Mode: apiwardenv1alpha1.PolicyModeDryRun, Authentication: keys}},
	}
	strict := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "strict"}}
	lax := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "lax"}, Spec: apiwardenv1alpha1.APIBaselineSpec{Require: &apiwardenv1alpha1.BaselineRequirements{
		Authentication: &apiwardenv1alpha1.AuthenticationRequirement{}}}}
	params := Params(NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{strict, lax}, ps, nil), ps, "shop")

	if f, ok := LevelFields(params, "Ingress", "shop", "a", ""); !ok || strings.Join(f, "|") != "|+APIKey|+full|+5:second:ClientIP:5|||" {
		t.Errorf("level a: %q, %v", f, ok)
	}
	// "a" is a prefix of "ab": the lookup must not confuse them.
	if f, ok := LevelFields(params, "Ingress", "shop", "ab", ""); !ok || f[2] != "+half" || f[3] != "" {
		t.Errorf("level ab: %q, %v", f, ok)
	}
	if f, ok := LevelFields(params, "Ingress", "shop", "c", ""); !ok || f[6] != "+dry,dry2" || f[1] != "" {
		t.Errorf("level c: %q, %v", f, ok)
	}
	if _, ok := LevelFields(params, "Ingress", "shop", "none", ""); ok {
		t.Error("a level without policies is listed")
	}
	rs := RecordSeparator
	if got, want := params[FastKey(strict)], rs+"c:Ingress_shop_a_"+rs+"i:Ingress_shop_ab_"+rs; got != want {
		t.Errorf("strict fast list %q, want %q", got, want)
	}
	if got, want := params[FastKey(lax)], rs+"c:Ingress_shop_a_"+rs+"c:Ingress_shop_ab_"+rs; got != want {
		t.Errorf("lax fast list %q, want %q", got, want)
	}
	if ParamsGeneration(params, "full") != "3" {
		t.Errorf("generations %q", params[GenerationsKey])
	}
	// The policies' order, which an informer's list does not keep, does
	// not change the params: an unchanged namespace is not written again.
	reversed := []*apiwardenv1alpha1.APIPolicy{ps[3], ps[2], ps[1], ps[0]}
	if again := Params(NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{strict, lax}, reversed, nil), reversed, "shop"); !maps.Equal(again, params) {
		t.Errorf("the params depend on the policies' order:\n%q\n%q", params, again)
	}
	changed := lax.DeepCopy()
	changed.Spec.Require.RateLimit = &apiwardenv1alpha1.RateLimitRequirement{}
	if FastKey(changed) == FastKey(lax) || FastKey(strict) == FastKey(lax) {
		t.Error("FastKey does not follow the baseline's name and requirements")
	}
}
