package exposure

import (
	"sort"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// level is one attachment level of a scope: the targets whose policies apply
// there, most specific level first. section narrows Gateway and Service
// targets: a policy whose targetRef names another section does not apply.
type level struct {
	key     TargetKey
	section string
}

// scope is one path by which traffic reaches the object, such as one parent
// Gateway of a route or one backend Service of an Ingress. Every scope must
// be protected.
type scope struct {
	// levels are in precedence order: the route before its Gateway, the
	// Ingress before its Service.
	levels []level
	// field is the path of the field that creates the scope.
	field string
	// via describes the scope in messages, such as "through Gateway shop/edge";
	// empty for the object itself.
	via string
}

// effective is the protection that applies to a scope: each field comes from
// the most specific level that sets it (route over Gateway, Ingress over
// Service), and within a level from the oldest Enforce-mode policy.
type effective struct {
	tls            *apiwardenv1alpha1.TLSPolicy
	authentication *apiwardenv1alpha1.Authentication
	rateLimit      *apiwardenv1alpha1.RateLimit
	request        *apiwardenv1alpha1.RequestLimits
	cors           *apiwardenv1alpha1.CORS

	// policies names the Enforce-mode policies that contributed.
	policies []string
	// dryRun names DryRun policies that would have applied.
	dryRun []string
}

// sectionMatches reports whether a targetRef's sectionName applies to a scope
// level: a policy for a whole object applies to every section, and a policy
// for one section applies only when the level names that section.
func sectionMatches(ref apiwardenv1alpha1.PolicyTargetReference, section string) bool {
	return ref.SectionName == nil || *ref.SectionName == section
}

// policyOrder sorts policies oldest first, then by name, the documented
// conflict rule: at one level the older policy wins.
func policyOrder(ps []*apiwardenv1alpha1.APIPolicy) {
	sort.SliceStable(ps, func(i, j int) bool {
		ti, tj := ps[i].CreationTimestamp, ps[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return ps[i].Name < ps[j].Name
	})
}

// targets reports whether p targets key at section.
func targets(p *apiwardenv1alpha1.APIPolicy, key TargetKey, section string) bool {
	if p.Namespace != key.Namespace {
		return false
	}
	for _, ref := range p.Spec.TargetRefs {
		if ref.Group == key.Group && ref.Kind == key.Kind && ref.Name == key.Name && sectionMatches(ref, section) {
			return true
		}
	}
	return false
}

// resolve computes the effective protection of a scope.
func resolve(snap Snapshot, sc scope) effective {
	var eff effective
	for _, lv := range sc.levels {
		var enforce []*apiwardenv1alpha1.APIPolicy
		for _, p := range snap.PoliciesFor(lv.key) {
			if !targets(p, lv.key, lv.section) {
				continue
			}
			if p.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun {
				eff.dryRun = append(eff.dryRun, p.Name)
				continue
			}
			enforce = append(enforce, p)
		}
		if len(enforce) == 0 {
			continue
		}
		policyOrder(enforce)
		p := enforce[0]
		eff.policies = append(eff.policies, p.Name)
		s := &p.Spec
		if eff.tls == nil && s.TLS != nil {
			eff.tls = s.TLS
		}
		if eff.authentication == nil && s.Authentication != nil {
			eff.authentication = s.Authentication
		}
		if eff.rateLimit == nil && s.RateLimit != nil && len(s.RateLimit.Limits) > 0 {
			eff.rateLimit = s.RateLimit
		}
		if eff.request == nil && s.Request != nil {
			eff.request = s.Request
		}
		if eff.cors == nil && s.CORS != nil {
			eff.cors = s.CORS
		}
	}
	sort.Strings(eff.dryRun)
	return eff
}

// methods lists the authentication methods an Authentication configures.
func methods(a *apiwardenv1alpha1.Authentication) []apiwardenv1alpha1.AuthenticationMethod {
	if a == nil {
		return nil
	}
	var out []apiwardenv1alpha1.AuthenticationMethod
	if a.APIKey != nil {
		out = append(out, apiwardenv1alpha1.AuthenticationMethodAPIKey)
	}
	if a.JWT != nil {
		out = append(out, apiwardenv1alpha1.AuthenticationMethodJWT)
	}
	if a.MTLS != nil {
		out = append(out, apiwardenv1alpha1.AuthenticationMethodMTLS)
	}
	return out
}

// tlsRank orders TLS versions; an unknown version ranks lowest.
func tlsRank(v apiwardenv1alpha1.TLSVersion) int {
	switch v {
	case apiwardenv1alpha1.TLSVersion12:
		return 12
	case apiwardenv1alpha1.TLSVersion13:
		return 13
	}
	return 0
}
