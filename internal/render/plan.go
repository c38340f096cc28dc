package render

import (
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// Lookup is what planning knows of the cluster: the controller answers from
// its informer cache, `apiwarden render` from the manifests it was given.
type Lookup interface {
	// Target returns the object a key names, or nil when it does not exist.
	Target(key exposure.TargetKey) (client.Object, error)
	// PoliciesFor returns the APIPolicies naming the target in their
	// targetRefs, whatever their sectionName and mode.
	PoliciesFor(key exposure.TargetKey) []*apiwardenv1alpha1.APIPolicy
}

// Outcome classifies a target's plan.
type Outcome string

// Plan outcomes.
const (
	// OutcomeRendered: the renderer produced the target's configuration.
	OutcomeRendered Outcome = "Rendered"
	// OutcomeTargetNotFound: the target does not exist.
	OutcomeTargetNotFound Outcome = "TargetNotFound"
	// OutcomeConflicted: another policy wins this target.
	OutcomeConflicted Outcome = "Conflicted"
	// OutcomeUnsupported: the renderer cannot program this kind of target.
	OutcomeUnsupported Outcome = "Unsupported"
	// OutcomeInvalid: the spec cannot be rendered as written.
	OutcomeInvalid Outcome = "Invalid"
)

// TargetPlan is the plan for one targetRef of a policy.
type TargetPlan struct {
	// Ref is the targetRef.
	Ref apiwardenv1alpha1.PolicyTargetReference
	// Outcome says what happened; Message explains anything but Rendered.
	Outcome Outcome
	Message string
	// Input is what was rendered (set when Outcome is Rendered).
	Input Input
	// Result holds the objects and notes (set when Outcome is Rendered).
	Result Result
}

// Wins reports whether policy a takes a target from policy b at the same
// level. This is the documented conflict rule, the same one the admission
// engine applies: an Enforce policy wins over a DryRun one, and between
// policies of the same mode the older wins (by creation time, then name).
func Wins(a, b *apiwardenv1alpha1.APIPolicy) bool {
	ad, bd := a.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun, b.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun
	if ad != bd {
		return !ad
	}
	return exposure.Older(a, b)
}

// sameSection reports whether two targetRefs of the same object attach at
// the same level: both to the whole object, or both to the same section. A
// policy on one listener and a policy on the whole Gateway do not conflict:
// the listener's is the more specific, as in Envoy Gateway.
func sameSection(a, b apiwardenv1alpha1.PolicyTargetReference) bool {
	if a.SectionName == nil || b.SectionName == nil {
		return a.SectionName == nil && b.SectionName == nil
	}
	return *a.SectionName == *b.SectionName
}

func sameObject(a, b apiwardenv1alpha1.PolicyTargetReference) bool {
	return a.Group == b.Group && a.Kind == b.Kind && a.Name == b.Name
}

// winner returns the policy other than p that takes ref from p, or nil.
func winner(p *apiwardenv1alpha1.APIPolicy, ref apiwardenv1alpha1.PolicyTargetReference, lk Lookup) *apiwardenv1alpha1.APIPolicy {
	key := exposure.TargetKey{Group: ref.Group, Kind: ref.Kind, Namespace: p.Namespace, Name: ref.Name}
	var best *apiwardenv1alpha1.APIPolicy
	for _, o := range lk.PoliciesFor(key) {
		if o.UID == p.UID && o.Name == p.Name {
			continue
		}
		for _, oref := range o.Spec.TargetRefs {
			if sameObject(ref, oref) && sameSection(ref, oref) && Wins(o, p) && (best == nil || Wins(o, best)) {
				best = o
			}
		}
	}
	return best
}

// gatewayPolicies returns, for each parent Gateway of a route in parentRefs
// order, the Enforce policy that applies to the route at the Gateway level:
// for a parentRef naming a listener, the winning policy of that listener,
// else of the whole Gateway; for a parentRef naming no listener (the route
// attaches to every listener), the winning policy of the whole Gateway, else
// the oldest winning listener policy. Parents without one are skipped.
func gatewayPolicies(route client.Object, lk Lookup) []*apiwardenv1alpha1.APIPolicy {
	var refs []gatewayv1.ParentReference
	switch r := route.(type) {
	case *gatewayv1.HTTPRoute:
		refs = r.Spec.ParentRefs
	case *gatewayv1.GRPCRoute:
		refs = r.Spec.ParentRefs
	default:
		return nil
	}
	var out []*apiwardenv1alpha1.APIPolicy
	for _, pr := range refs {
		if (pr.Group != nil && string(*pr.Group) != GatewayGroup) || (pr.Kind != nil && string(*pr.Kind) != "Gateway") {
			continue // a mesh Service or another kind of parent
		}
		ns := route.GetNamespace()
		if pr.Namespace != nil {
			ns = string(*pr.Namespace)
		}
		gw := exposure.TargetKey{Group: GatewayGroup, Kind: "Gateway", Namespace: ns, Name: string(pr.Name)}
		// winners by section ("" = the whole Gateway), the Enforce policy
		// that wins each section.
		winners := map[string]*apiwardenv1alpha1.APIPolicy{}
		for _, c := range lk.PoliciesFor(gw) {
			if c.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun || c.Namespace != gw.Namespace {
				continue
			}
			for _, ref := range c.Spec.TargetRefs {
				if ref.Group != gw.Group || ref.Kind != gw.Kind || ref.Name != gw.Name {
					continue
				}
				section := ""
				if ref.SectionName != nil {
					section = *ref.SectionName
				}
				if w := winners[section]; w == nil || Wins(c, w) {
					winners[section] = c
				}
			}
		}
		var pick *apiwardenv1alpha1.APIPolicy
		switch {
		case pr.SectionName != nil && winners[string(*pr.SectionName)] != nil:
			pick = winners[string(*pr.SectionName)]
		case winners[""] != nil:
			pick = winners[""]
		case pr.SectionName == nil:
			for _, w := range winners {
				if pick == nil || exposure.Older(w, pick) {
					pick = w
				}
			}
		}
		if pick != nil {
			out = append(out, pick)
		}
	}
	return out
}

// Plan resolves and renders every targetRef of p. It never fails as a
// whole: each target carries its own outcome, so one missing route does not
// stop the others from being enforced.
func Plan(p *apiwardenv1alpha1.APIPolicy, lk Lookup, r Renderer, authz AuthzService) ([]TargetPlan, error) {
	out := make([]TargetPlan, 0, len(p.Spec.TargetRefs))
	for _, ref := range p.Spec.TargetRefs {
		tp := TargetPlan{Ref: ref}
		key := exposure.TargetKey{Group: ref.Group, Kind: ref.Kind, Namespace: p.Namespace, Name: ref.Name}
		obj, err := lk.Target(key)
		if err != nil {
			return nil, fmt.Errorf("reading %s %s/%s: %w", ref.Kind, p.Namespace, ref.Name, err)
		}
		switch {
		case obj == nil:
			tp.Outcome, tp.Message = OutcomeTargetNotFound, fmt.Sprintf("%s %s/%s does not exist", ref.Kind, p.Namespace, ref.Name)
		case !r.Supports(ref.Group, ref.Kind):
			tp.Outcome, tp.Message = OutcomeUnsupported, fmt.Sprintf("the %s renderer cannot program %s targets; admission still counts this policy for it", r.Name(), ref.Kind)
		default:
			if w := winner(p, ref, lk); w != nil {
				tp.Outcome, tp.Message = OutcomeConflicted, fmt.Sprintf("APIPolicy %s also targets %s %s and wins (Enforce over DryRun, then the older policy)", w.Name, ref.Kind, ref.Name)
				break
			}
			in := Input{Policy: p, Spec: p.Spec, Target: ref, Object: obj, Authz: authz}
			var parentNotes []Note
			if IsRoute(ref.Group, ref.Kind) {
				if gps := gatewayPolicies(obj, lk); len(gps) > 0 {
					gp := gps[0]
					if p.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun {
						// A route-level policy replaces the Gateway's in
						// Envoy Gateway; a DryRun one must not switch off
						// what the Gateway's policy enforces.
						tp.Outcome = OutcomeRendered
						tp.Input = in
						tp.Result.Unsupported = append(tp.Result.Unsupported, Note{Field: "spec.mode",
							Message: fmt.Sprintf("DryRun renders nothing here: APIPolicy %s/%s on the parent Gateway keeps enforcing this route", gp.Namespace, gp.Name)})
						out = append(out, tp)
						continue
					}
					in.Spec = Merge(p.Spec, &gp.Spec)
					in.GatewayValidatesClients = gp.Spec.Authentication != nil && gp.Spec.Authentication.MTLS != nil
					if p.Spec.Authentication == nil && gp.Spec.Authentication != nil {
						in.AuthPolicy = gp.Namespace + "/" + gp.Name
					}
					for _, other := range gps[1:] {
						if other.UID != gp.UID || other.Name != gp.Name || other.Namespace != gp.Namespace {
							parentNotes = append(parentNotes, Note{Field: "spec.targetRefs",
								Message: fmt.Sprintf("the route's parent Gateways have different policies (%s/%s, %s/%s); the fields it inherits come from the first parent's, which replaces the other's on this route in Envoy Gateway", gp.Namespace, gp.Name, other.Namespace, other.Name)})
							break
						}
					}
				}
			}
			res, err := r.Render(in)
			if err != nil {
				tp.Outcome, tp.Message = OutcomeInvalid, err.Error()
				break
			}
			res.Unsupported = append(parentNotes, res.Unsupported...)
			tp.Outcome, tp.Input, tp.Result = OutcomeRendered, in, res
		}
		out = append(out, tp)
	}
	return out, nil
}
