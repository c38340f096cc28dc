// Package exposure decides, for one object, whether it exposes an API and
// whether the APIBaselines in force are met: TLS, authentication, rate
// limits, request limits, CORS. It is pure (no client I/O): what it knows of
// the cluster comes through a Snapshot. The admission webhook, the CLI and
// the coverage scan all call Evaluate, so their answers never differ.
package exposure

import (
	"time"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// Code is a stable, machine-readable violation code.
type Code string

// Violation codes. They are part of apiwarden's interface: reports,
// metrics and CI rules key on them, so they never change meaning.
const (
	// CodeTLSMissing: an Ingress host (or every host) is served without TLS.
	CodeTLSMissing Code = "TLSMissing"
	// CodeInsecureListener: a Gateway listener speaks plain HTTP without an
	// APIPolicy that redirects it to HTTPS.
	CodeInsecureListener Code = "InsecureListener"
	// CodeInsecurePort: a Service exposes a plain-HTTP port outside the cluster.
	CodeInsecurePort Code = "InsecurePort"
	// CodeTLSVersionTooLow: the covering APIPolicy allows a TLS version
	// below the baseline's minimum.
	CodeTLSVersionTooLow Code = "TLSVersionTooLow"
	// CodeAuthMissing: no APIPolicy in Enforce mode authenticates clients.
	CodeAuthMissing Code = "AuthMissing"
	// CodeAuthMethodNotAllowed: the covering APIPolicy authenticates only
	// with methods the baseline does not accept.
	CodeAuthMethodNotAllowed Code = "AuthMethodNotAllowed"
	// CodeRateLimitMissing: no APIPolicy in Enforce mode limits the rate.
	CodeRateLimitMissing Code = "RateLimitMissing"
	// CodeRateLimitAboveCeiling: a rate limit is looser than the baseline's ceiling.
	CodeRateLimitAboveCeiling Code = "RateLimitAboveCeiling"
	// CodeBodyLimitMissing: no request body limit where the baseline requires one.
	CodeBodyLimitMissing Code = "BodyLimitMissing"
	// CodeBodyLimitTooLarge: the body limit is above the baseline's maximum.
	CodeBodyLimitTooLarge Code = "BodyLimitTooLarge"
	// CodeCORSWildcardOrigin: CORS allows any origin where the baseline forbids it.
	CodeCORSWildcardOrigin Code = "CORSWildcardOrigin"
	// CodeKeyInQuery: a route matches on a query parameter that carries a
	// credential, which puts API keys in URLs.
	CodeKeyInQuery Code = "KeyInQuery"
)

// Description says in one sentence what the code reports, for rule lists
// such as SARIF's.
func (c Code) Description() string {
	switch c {
	case CodeTLSMissing:
		return "An Ingress host is served without TLS."
	case CodeInsecureListener:
		return "A Gateway listener serves plain HTTP without a redirect to HTTPS."
	case CodeInsecurePort:
		return "A Service exposes a plain-HTTP port outside the cluster."
	case CodeTLSVersionTooLow:
		return "TLS below the baseline's minimum version is accepted."
	case CodeAuthMissing:
		return "An exposed API has no authentication."
	case CodeAuthMethodNotAllowed:
		return "An exposed API authenticates only with methods the baseline does not accept."
	case CodeRateLimitMissing:
		return "An exposed API has no rate limit."
	case CodeRateLimitAboveCeiling:
		return "A rate limit is above the baseline's ceiling."
	case CodeBodyLimitMissing:
		return "An exposed API has no request body limit."
	case CodeBodyLimitTooLarge:
		return "A request body limit is above the baseline's maximum."
	case CodeCORSWildcardOrigin:
		return "CORS allows any origin."
	case CodeKeyInQuery:
		return "Credentials are matched in the query string."
	}
	return string(c)
}

// Protection names, in a few words, the protection whose absence the code
// reports, for messages that list what a change would take away.
func (c Code) Protection() string {
	switch c {
	case CodeAuthMissing, CodeAuthMethodNotAllowed, CodeKeyInQuery:
		return "authentication"
	case CodeRateLimitMissing, CodeRateLimitAboveCeiling:
		return "rate limit"
	case CodeBodyLimitMissing, CodeBodyLimitTooLarge:
		return "request body limit"
	case CodeInsecureListener:
		return "HTTP-to-HTTPS redirect"
	case CodeTLSVersionTooLow:
		return "minimum TLS version"
	case CodeTLSMissing, CodeInsecurePort:
		return "TLS"
	case CodeCORSWildcardOrigin:
		return "CORS origin restriction"
	}
	return string(c)
}

// Introduced returns the violations in after that before did not have (the
// same code, field and baseline): what a change to the cluster would cause.
func Introduced(before, after []Violation) []Violation {
	had := make(map[string]bool, len(before))
	for _, v := range before {
		had[string(v.Code)+"|"+v.Field+"|"+v.Baseline] = true
	}
	var out []Violation
	for _, v := range after {
		if !had[string(v.Code)+"|"+v.Field+"|"+v.Baseline] {
			out = append(out, v)
		}
	}
	return out
}

// Violation is one requirement an object fails.
type Violation struct {
	// Code is the stable violation code.
	Code Code `json:"code"`
	// Control is the baseline requirement the violation belongs to.
	Control apiwardenv1alpha1.Control `json:"control"`
	// Field is the path of the offending field in the object, such as
	// "spec.rules[0].host".
	Field string `json:"field"`
	// Message says, in one sentence, what is missing.
	Message string `json:"message"`
	// Hint says how to fix it.
	Hint string `json:"hint"`
	// Baseline names the APIBaseline that requires what is missing.
	Baseline string `json:"baseline"`
	// Action is that baseline's enforcement action.
	Action apiwardenv1alpha1.EnforcementAction `json:"action"`
	// Exemption names the exemption that waives the violation, if any.
	Exemption string `json:"exemption,omitempty"`
	// ExemptionExpires is when that exemption stops counting.
	ExemptionExpires *time.Time `json:"exemptionExpires,omitempty"`
}

// Text returns the message and the hint as one or two sentences, as a
// denial shows them.
func (v Violation) Text() string {
	if v.Hint == "" {
		return v.Message
	}
	return v.Message + " " + v.Hint
}

// Verdict is the engine's answer for one object.
type Verdict struct {
	// Exposed says whether the object exposes an API outside the cluster.
	Exposed bool `json:"exposed"`
	// Governed lists the APIBaselines that govern the object's namespace.
	Governed []string `json:"governed,omitempty"`
	// Violations are the failed requirements that no exemption waives.
	Violations []Violation `json:"violations,omitempty"`
	// Exempted are failed requirements waived by an unexpired exemption.
	Exempted []Violation `json:"exempted,omitempty"`
	// NextExpiry is the earliest time an exemption used in this verdict
	// expires, when the verdict will change; zero when none applies.
	NextExpiry time.Time `json:"-"`
}

// State summarises a verdict for coverage counts.
type State string

const (
	// StateNotExposed: the object exposes nothing, or no baseline governs it.
	StateNotExposed State = "NotExposed"
	// StateProtected: exposed and meets every requirement.
	StateProtected State = "Protected"
	// StateExempt: exposed and falls short only where exemptions waive.
	StateExempt State = "Exempt"
	// StateViolating: exposed and breaks a requirement.
	StateViolating State = "Violating"
)

// State returns the verdict's summary.
func (v Verdict) State() State {
	switch {
	case !v.Exposed || len(v.Governed) == 0:
		return StateNotExposed
	case len(v.Violations) > 0:
		return StateViolating
	case len(v.Exempted) > 0:
		return StateExempt
	default:
		return StateProtected
	}
}

// ByAction returns the violations whose baseline has the given action.
func (v Verdict) ByAction(action apiwardenv1alpha1.EnforcementAction) []Violation {
	var out []Violation
	for _, x := range v.Violations {
		if x.Action == action {
			out = append(out, x)
		}
	}
	return out
}

// TargetKey identifies an object an APIPolicy can target.
type TargetKey struct {
	Group     string
	Kind      string
	Namespace string
	Name      string
}

// String renders the key as "group/kind/namespace/name", the form used by indexes.
func (k TargetKey) String() string {
	return k.Group + "/" + k.Kind + "/" + k.Namespace + "/" + k.Name
}

// Snapshot is what the engine knows about the cluster.
type Snapshot interface {
	// Baselines returns every APIBaseline.
	Baselines() []*apiwardenv1alpha1.APIBaseline
	// PoliciesFor returns the APIPolicies that name the target in their
	// targetRefs (any sectionName), whatever their mode.
	PoliciesFor(target TargetKey) []*apiwardenv1alpha1.APIPolicy
	// NamespaceLabels returns the labels of a namespace and whether the
	// namespace is known.
	NamespaceLabels(name string) (map[string]string, bool)
}

// Options tune the engine.
type Options struct {
	// OwnNamespace is apiwarden's own namespace, never governed.
	OwnNamespace string
	// UnknownNamespacesGoverned decides, for a namespace the snapshot does
	// not know, whether a baseline with a namespaceSelector governs it. The
	// CLI sets it, so that manifests are checked strictly offline.
	UnknownNamespacesGoverned bool
	// Webhook says the caller is the admission webhook, which leaves
	// baselines in CEL admission mode to the ValidatingAdmissionPolicies
	// compiled from them.
	Webhook bool
}

// systemNamespaces are never governed, whatever a baseline's selector says.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}
