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

	// authPolicy names the policy that set authentication.
	authPolicy string
	// dryRun names DryRun policies that would have applied.
	dryRun []string
}

// sectionMatches reports whether a targetRef's sectionName applies to a scope
// level: a policy for a whole object applies to every section, and a policy
// for one section applies only when the level names that section.
func sectionMatches(ref apiwardenv1alpha1.PolicyTargetReference, section string) bool {
	return ref.SectionName == nil || *ref.SectionName == section
}

// Older reports whether a was created before b, by name when created at the
// same time: the documented conflict rule is that at one level the older
// policy wins.
func Older(a, b *apiwardenv1alpha1.APIPolicy) bool {
	ta, tb := a.CreationTimestamp, b.CreationTimestamp
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return a.Name < b.Name
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
		var p *apiwardenv1alpha1.APIPolicy
		p, eff.dryRun = winner(snap, lv, eff.dryRun)
		if p == nil {
			continue
		}
		eff.adopt(p)
	}
	if len(eff.dryRun) > 1 {
		sort.Strings(eff.dryRun)
	}
	return eff
}

// adopt takes from p, the winner of the next level, each field no more
// specific level has set.
func (eff *effective) adopt(p *apiwardenv1alpha1.APIPolicy) {
	s := &p.Spec
	if eff.tls == nil && s.TLS != nil {
		eff.tls = s.TLS
	}
	if eff.authentication == nil && s.Authentication != nil {
		eff.authentication, eff.authPolicy = s.Authentication, p.Name
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

// complete reports whether w, the winner of a level, meets every
// requirement of req whatever the less specific levels set, so that a
// scope whose most specific level is w passes: w sets each field req
// checks (a more specific level's field wins) and each passes. The one
// field it need not set is TLS when req asks for TLS 1.2, which every
// version the API accepts meets.
func complete(w *apiwardenv1alpha1.APIPolicy, req requirementSet) bool {
	var eff effective
	eff.adopt(w)
	if (req.Authentication != nil && eff.authentication == nil) ||
		(req.RateLimit != nil && eff.rateLimit == nil) ||
		(req.RequestBody != nil && eff.request == nil) ||
		(req.CORS != nil && eff.cors == nil) {
		return false
	}
	var a analysis
	var sc scope
	if req.TLS != nil {
		if tlsRank(minTLS(req.TLS)) > tlsRank(apiwardenv1alpha1.TLSVersion12) && eff.tls == nil {
			return false
		}
		if len(checkTLSVersion(&a, sc, eff, req.TLS)) > 0 {
			return false
		}
	}
	return len(checkAPI(&a, sc, eff, req)) == 0
}

// winner returns the policy that protects one level: the oldest
// Enforce-mode policy targeting it, picked in one pass so that admission
// allocates nothing here; the names of DryRun policies there are appended
// to dryRun. Both the engine and the admission params (Params) use it.
func winner(snap Snapshot, lv level, dryRun []string) (*apiwardenv1alpha1.APIPolicy, []string) {
	var p *apiwardenv1alpha1.APIPolicy
	for _, c := range snap.PoliciesFor(lv.key) {
		if !targets(c, lv.key, lv.section) {
			continue
		}
		if c.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun {
			dryRun = append(dryRun, c.Name)
			continue
		}
		if p == nil || Older(c, p) {
			p = c
		}
	}
	return p, dryRun
}

// methods lists the authentication methods an Authentication configures,
// into buf to spare an allocation.
func methods(a *apiwardenv1alpha1.Authentication, buf *[3]apiwardenv1alpha1.AuthenticationMethod) []apiwardenv1alpha1.AuthenticationMethod {
	out := buf[:0]
	if a == nil {
		return out
	}
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
