package exposure

import (
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// TestGuard: a policy that is an exposed route's only protection under a
// Deny baseline is listed with what its deletion takes away; a policy
// another one backs up, or one that protects nothing, is not.
func TestGuard(t *testing.T) {
	baseline := decode(t, denyBaseline)[0].(*apiwardenv1alpha1.APIBaseline)
	obj := decode(t, route)[0].(client.Object)
	var policies []*apiwardenv1alpha1.APIPolicy
	for _, o := range decode(t, policy("only", routeRef, fullProtection)+"\n---\n"+policy("elsewhere", ingressRef, fullProtection)) {
		policies = append(policies, o.(*apiwardenv1alpha1.APIPolicy))
	}
	guard := func(ps []*apiwardenv1alpha1.APIPolicy) string {
		snap := NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{baseline}, ps, map[string]map[string]string{"shop": nil})
		return Guard(snap, ps, []client.Object{obj}, "shop", now, Options{})
	}
	want := RecordSeparator + "only" + ParamsSeparator + `HTTPRoute shop/orders (authentication, rate limit, required by APIBaseline default)` + RecordSeparator
	if got := guard(policies); got != want {
		t.Errorf("guard = %q, want %q", got, want)
	}
	// A second policy on the Gateway gives the route the same protections:
	// neither is its only protection.
	gw := decode(t, policy("gw", gatewayRef, fullProtection))[0].(*apiwardenv1alpha1.APIPolicy)
	if got := guard(append(policies, gw)); strings.Contains(got, "only"+ParamsSeparator) {
		t.Errorf("guard lists a policy that another backs up: %q", got)
	}
	// A Warn baseline guards nothing.
	baseline.Spec.EnforcementAction = apiwardenv1alpha1.EnforcementActionWarn
	if got := guard(policies); got != RecordSeparator+RecordSeparator {
		t.Errorf("guard under a Warn baseline = %q", got)
	}
}
