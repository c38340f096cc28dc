package exposure

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// ExcludeLabel, set to "true" on a namespace, takes it out of every
// baseline's scope. It is meant for infrastructure namespaces whose
// controllers create load balancers (a gateway's own namespace, say), and
// apiwarden's own; ordinary exceptions belong in an APIBaseline exemption,
// with a reason and an expiry.
const ExcludeLabel = "apiwarden.io/exclude"

// Supported reports whether the engine evaluates objects of this type.
func Supported(obj runtime.Object) bool {
	_, ok := KindOf(obj)
	return ok
}

// KindOf returns the kind of an object the engine evaluates.
func KindOf(obj runtime.Object) (string, bool) {
	switch obj.(type) {
	case *networkingv1.Ingress:
		return "Ingress", true
	case *corev1.Service:
		return "Service", true
	case *gatewayv1.Gateway:
		return "Gateway", true
	case *gatewayv1.HTTPRoute:
		return "HTTPRoute", true
	case *gatewayv1.GRPCRoute:
		return "GRPCRoute", true
	}
	return "", false
}

// Evaluate decides whether obj exposes an API and which requirements of the
// APIBaselines in snap it fails at time now. It returns an error only for an
// object type it does not evaluate.
func Evaluate(obj runtime.Object, snap Snapshot, now time.Time, opts Options) (Verdict, error) {
	var a *analysis
	switch o := obj.(type) {
	case *networkingv1.Ingress:
		a = analyzeIngress(o)
	case *corev1.Service:
		a = analyzeService(o)
	case *gatewayv1.Gateway:
		a = analyzeGateway(snap, o)
	case *gatewayv1.HTTPRoute:
		a = analyzeHTTPRoute(o)
	case *gatewayv1.GRPCRoute:
		a = analyzeGRPCRoute(o)
	default:
		return Verdict{}, fmt.Errorf("exposure: unsupported object type %T", obj)
	}
	v := Verdict{Exposed: a.exposed}
	if !a.exposed {
		return v, nil
	}
	baselines := governing(snap, a.namespace, opts)
	if len(baselines) == 0 {
		return v, nil
	}

	// Effective protection per scope, computed once for every baseline.
	apiEff := make([]effective, len(a.apiScopes))
	for i, sc := range a.apiScopes {
		apiEff[i] = resolve(snap, sc)
	}
	tlsEff := make([]effective, len(a.tlsScopes))
	for i, sc := range a.tlsScopes {
		tlsEff[i] = resolve(snap, sc)
	}

	for _, b := range baselines {
		v.Governed = append(v.Governed, b.Name)
		req := requirements(b)
		var found []finding
		for _, f := range a.findings {
			if req.requires(f.control) {
				found = append(found, f)
			}
		}
		if req.TLS != nil {
			for i, sc := range a.tlsScopes {
				found = append(found, checkTLSVersion(a, sc, tlsEff[i], req.TLS)...)
			}
		}
		for i, sc := range a.apiScopes {
			found = append(found, checkAPI(a, sc, apiEff[i], req)...)
		}
		action := b.Spec.EnforcementAction
		if action == "" {
			action = apiwardenv1alpha1.EnforcementActionDeny
		}
		for _, f := range found {
			viol := Violation{
				Code: f.code, Control: f.control, Field: f.field, Message: f.message,
				Baseline: b.Name, Action: action,
				Hint: fmt.Sprintf("%s or ask a platform owner for an exemption in APIBaseline %q.", f.hint, b.Name),
			}
			if ex := exemptionFor(b, a, f.control, now); ex != nil {
				viol.Exemption = ex.Name
				exp := ex.Expires.Time
				viol.ExemptionExpires = &exp
				if v.NextExpiry.IsZero() || exp.Before(v.NextExpiry) {
					v.NextExpiry = exp
				}
				v.Exempted = append(v.Exempted, viol)
				continue
			}
			v.Violations = append(v.Violations, viol)
		}
	}
	return v, nil
}

// requirementSet is a baseline's requirements with defaults applied, so that
// manifests read offline (without the apiserver's defaulting) mean the same.
type requirementSet struct {
	apiwardenv1alpha1.BaselineRequirements
}

func requirements(b *apiwardenv1alpha1.APIBaseline) requirementSet {
	if b.Spec.Require == nil {
		return requirementSet{apiwardenv1alpha1.BaselineRequirements{
			TLS:            &apiwardenv1alpha1.TLSRequirement{MinVersion: apiwardenv1alpha1.TLSVersion12},
			Authentication: &apiwardenv1alpha1.AuthenticationRequirement{},
			RateLimit:      &apiwardenv1alpha1.RateLimitRequirement{},
		}}
	}
	return requirementSet{*b.Spec.Require}
}

func (r requirementSet) requires(c apiwardenv1alpha1.Control) bool {
	switch c {
	case apiwardenv1alpha1.ControlTLS:
		return r.TLS != nil
	case apiwardenv1alpha1.ControlAuthentication:
		return r.Authentication != nil
	case apiwardenv1alpha1.ControlRateLimit:
		return r.RateLimit != nil
	case apiwardenv1alpha1.ControlRequestBody:
		return r.RequestBody != nil
	case apiwardenv1alpha1.ControlCORS:
		return r.CORS != nil
	}
	return false
}

// Governing returns the baselines in snap that govern namespace ns, sorted
// by name (with opts.Webhook, without those in CEL admission mode).
func Governing(snap Snapshot, ns string, opts Options) []*apiwardenv1alpha1.APIBaseline {
	return governing(snap, ns, opts)
}

// governing returns the baselines whose namespaceSelector selects namespace,
// sorted by name for a stable order.
func governing(snap Snapshot, namespace string, opts Options) []*apiwardenv1alpha1.APIBaseline {
	if systemNamespaces[namespace] || (opts.OwnNamespace != "" && namespace == opts.OwnNamespace) {
		return nil
	}
	var out []*apiwardenv1alpha1.APIBaseline
	nsLabels, known := snap.NamespaceLabels(namespace)
	// The label platform owners put on infrastructure namespaces (and
	// apiwarden's own); the webhook configuration's namespaceSelector
	// honours it too, so admission, the CLI and the scan agree.
	if known && nsLabels[ExcludeLabel] == "true" {
		return nil
	}
	for _, b := range snap.Baselines() {
		if opts.Webhook && b.Spec.Admission == apiwardenv1alpha1.AdmissionModeCEL {
			continue
		}
		if b.Spec.NamespaceSelector == nil {
			out = append(out, b)
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.NamespaceSelector)
		if err != nil {
			// The CRD's schema keeps selectors well-formed; a malformed one
			// read offline governs everything rather than nothing.
			out = append(out, b)
			continue
		}
		if !known {
			if opts.UnknownNamespacesGoverned {
				out = append(out, b)
			}
			continue
		}
		if sel.Matches(labels.Set(nsLabels)) {
			out = append(out, b)
		}
	}
	if len(out) > 1 {
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	}
	return out
}

// exemptionFor returns the first unexpired exemption of b that waives
// control for the object, or nil.
func exemptionFor(b *apiwardenv1alpha1.APIBaseline, a *analysis, control apiwardenv1alpha1.Control, now time.Time) *apiwardenv1alpha1.Exemption {
	for i := range b.Spec.Exemptions {
		ex := &b.Spec.Exemptions[i]
		// An exemption stops counting the moment it expires.
		if !now.Before(ex.Expires.Time) {
			continue
		}
		t := ex.Target
		if t.Namespace != a.namespace || (t.Kind != "" && t.Kind != a.kind) || (t.Name != "" && t.Name != a.name) {
			continue
		}
		if t.Selector != nil {
			sel, err := metav1.LabelSelectorAsSelector(t.Selector)
			if err != nil || !sel.Matches(labels.Set(a.labels)) {
				continue
			}
		}
		if len(ex.Controls) > 0 && !containsControl(ex.Controls, control) {
			continue
		}
		return ex
	}
	return nil
}

func containsControl(cs []apiwardenv1alpha1.Control, c apiwardenv1alpha1.Control) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// subject names the object and, for one of several scopes, the scope.
func subject(a *analysis, sc scope) string {
	if sc.via == "" {
		return a.ref()
	}
	return a.ref() + " " + sc.via
}

// targetsHint says which objects a covering APIPolicy may target.
func targetsHint(a *analysis, sc scope) string {
	names := make([]string, 0, len(sc.levels))
	for _, lv := range sc.levels {
		n := lv.key.Kind + " " + lv.key.Name
		if lv.key.Namespace != a.namespace {
			n += " (in namespace " + lv.key.Namespace + ")"
		}
		names = append(names, n)
	}
	return strings.Join(names, " or ")
}

func withDryRun(msg string, eff effective) string {
	if len(eff.dryRun) == 0 {
		return msg
	}
	return strings.TrimSuffix(msg, ".") + dryRunNote(eff.dryRun)
}

func checkTLSVersion(a *analysis, sc scope, eff effective, req *apiwardenv1alpha1.TLSRequirement) []finding {
	want := req.MinVersion
	if want == "" {
		want = apiwardenv1alpha1.TLSVersion12
	}
	got := apiwardenv1alpha1.TLSVersion12 // apiwarden's default when a policy sets none
	if eff.tls != nil && eff.tls.MinVersion != "" {
		got = eff.tls.MinVersion
	}
	if tlsRank(got) >= tlsRank(want) {
		return nil
	}
	return []finding{{
		code: CodeTLSVersionTooLow, control: apiwardenv1alpha1.ControlTLS, field: sc.field,
		message: withDryRun(fmt.Sprintf("%s accepts TLS %s, below the required minimum TLS %s.", subject(a, sc), got, want), eff),
		hint:    fmt.Sprintf("Attach an APIPolicy targeting %s with spec.tls.minVersion: %q,", targetsHint(a, sc), want),
	}}
}

func checkAPI(a *analysis, sc scope, eff effective, req requirementSet) []finding {
	var out []finding
	if r := req.Authentication; r != nil {
		var buf [3]apiwardenv1alpha1.AuthenticationMethod
		got := methods(eff.authentication, &buf)
		allowed := r.Methods
		if len(allowed) == 0 {
			allowed = allMethods
		}
		switch {
		case len(got) == 0:
			out = append(out, finding{
				code: CodeAuthMissing, control: apiwardenv1alpha1.ControlAuthentication, field: sc.field,
				message: withDryRun(fmt.Sprintf("%s is exposed without authentication: no APIPolicy in Enforce mode targeting %s sets spec.authentication.", subject(a, sc), targetsHint(a, sc)), eff),
				hint:    fmt.Sprintf("Attach an APIPolicy targeting %s with spec.authentication (%s),", targetsHint(a, sc), methodList(allowed)),
			})
		case !anyAllowed(got, allowed):
			out = append(out, finding{
				code: CodeAuthMethodNotAllowed, control: apiwardenv1alpha1.ControlAuthentication, field: sc.field,
				message: fmt.Sprintf("%s authenticates with %s only, which the baseline does not accept.", subject(a, sc), methodList(got)),
				hint:    fmt.Sprintf("Configure one of %s in APIPolicy %q,", methodList(allowed), eff.authPolicy),
			})
		}
	}
	if r := req.RateLimit; r != nil {
		switch {
		case eff.rateLimit == nil:
			out = append(out, finding{
				code: CodeRateLimitMissing, control: apiwardenv1alpha1.ControlRateLimit, field: sc.field,
				message: withDryRun(fmt.Sprintf("%s is exposed without a rate limit: no APIPolicy in Enforce mode targeting %s sets spec.rateLimit.", subject(a, sc), targetsHint(a, sc)), eff),
				hint:    fmt.Sprintf("Attach an APIPolicy targeting %s with spec.rateLimit.limits,", targetsHint(a, sc)),
			})
		case r.Ceiling != nil:
			ceiling := r.Ceiling.PerSecond()
			for _, l := range eff.rateLimit.Limits {
				if l.Rate().PerSecond() > ceiling {
					out = append(out, finding{
						code: CodeRateLimitAboveCeiling, control: apiwardenv1alpha1.ControlRateLimit, field: sc.field,
						message: fmt.Sprintf("%s allows %d requests per %s by %s, above the ceiling of %d per %s.", subject(a, sc), l.Requests, strings.ToLower(string(l.Unit)), l.By, r.Ceiling.Requests, strings.ToLower(string(r.Ceiling.Unit))),
						hint:    "Lower the limit in the covering APIPolicy,",
					})
					break
				}
			}
		}
	}
	if r := req.RequestBody; r != nil {
		switch {
		case eff.request == nil || eff.request.MaxBodyBytes == nil:
			out = append(out, finding{
				code: CodeBodyLimitMissing, control: apiwardenv1alpha1.ControlRequestBody, field: sc.field,
				message: withDryRun(fmt.Sprintf("%s has no request body limit: no APIPolicy in Enforce mode targeting %s sets spec.request.maxBodyBytes.", subject(a, sc), targetsHint(a, sc)), eff),
				hint:    fmt.Sprintf("Set spec.request.maxBodyBytes to at most %d in an APIPolicy targeting %s,", r.MaxBytes, targetsHint(a, sc)),
			})
		case *eff.request.MaxBodyBytes > r.MaxBytes:
			out = append(out, finding{
				code: CodeBodyLimitTooLarge, control: apiwardenv1alpha1.ControlRequestBody, field: sc.field,
				message: fmt.Sprintf("%s accepts request bodies of %d bytes, above the maximum of %d.", subject(a, sc), *eff.request.MaxBodyBytes, r.MaxBytes),
				hint:    "Lower spec.request.maxBodyBytes in the covering APIPolicy,",
			})
		}
	}
	if r := req.CORS; r != nil && eff.cors != nil {
		credentials := eff.cors.AllowCredentials != nil && *eff.cors.AllowCredentials
		for _, o := range eff.cors.AllowOrigins {
			if credentials && strings.Contains(o, "*") {
				out = append(out, finding{
					code: CodeCORSWildcardOrigin, control: apiwardenv1alpha1.ControlCORS, field: sc.field,
					message: fmt.Sprintf("%s allows credentials in cross-origin requests from a wildcard origin (%q).", subject(a, sc), o),
					hint:    "List the trusted origins in spec.cors.allowOrigins of the covering APIPolicy, or drop allowCredentials,",
				})
				break
			}
			if o == "*" && r.WildcardOrigins != apiwardenv1alpha1.FeatureEnabled {
				out = append(out, finding{
					code: CodeCORSWildcardOrigin, control: apiwardenv1alpha1.ControlCORS, field: sc.field,
					message: fmt.Sprintf("%s allows cross-origin requests from any origin (\"*\").", subject(a, sc)),
					hint:    "List the trusted origins in spec.cors.allowOrigins of the covering APIPolicy,",
				})
				break
			}
		}
	}
	return out
}

var allMethods = []apiwardenv1alpha1.AuthenticationMethod{
	apiwardenv1alpha1.AuthenticationMethodAPIKey, apiwardenv1alpha1.AuthenticationMethodJWT, apiwardenv1alpha1.AuthenticationMethodMTLS,
}

func anyAllowed(got, allowed []apiwardenv1alpha1.AuthenticationMethod) bool {
	for _, g := range got {
		for _, a := range allowed {
			if g == a {
				return true
			}
		}
	}
	return false
}

func methodList(ms []apiwardenv1alpha1.AuthenticationMethod) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m)
	}
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
