// Package render turns an APIPolicy into the configuration of a gateway. It
// is pure: a Renderer is a function from (effective policy, target) to
// objects, with no client I/O, so the controller and `apiwarden render` print
// and apply exactly the same thing. Each gateway has its own package
// (envoygateway, gatewayapi) behind the small Renderer interface.
package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// Labels put on every rendered object. Pruning never relies on them (the
// policy's status lists what was rendered), but they let operators find
// apiwarden's objects with a selector.
const (
	// LabelManagedBy is set to ManagedBy on every rendered object.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "apiwarden"
	// LabelPolicy holds the name of the APIPolicy an object was rendered
	// for, or a hash of it when the name is longer than a label value may be.
	LabelPolicy = "apiwarden.io/policy"
	// FieldManager is the server-side apply field manager of rendered objects.
	FieldManager = "apiwarden"
)

// AuthzService locates apiwarden's authz service, which verifies API keys
// for the gateway (ext_authz over gRPC, forward-auth over HTTP).
type AuthzService struct {
	// Namespace and Name of the Service in front of the authz servers.
	Namespace, Name string
	// GRPCPort serves Envoy's ext_authz; HTTPPort serves forward-auth.
	GRPCPort, HTTPPort int32
	// HTTPURL, when set, is the base URL (scheme, host and port) at which
	// gateways reach the forward-auth server, instead of the Service's DNS
	// name: for a gateway outside the cluster or behind a mesh.
	HTTPURL string
}

// ForwardAuthURL is the URL a gateway's forward-auth calls for policy
// ("namespace/name") in mode: the authz service's forward-auth endpoint,
// with "?mode=DryRun" for a DryRun policy, so that the service lets
// requests through even before it knows the policy.
func (a AuthzService) ForwardAuthURL(policy string, mode apiwardenv1alpha1.PolicyMode) string {
	base := a.HTTPURL
	if base == "" {
		base = "http://" + a.Name + "." + a.Namespace + ".svc:" + strconv.Itoa(int(a.HTTPPort))
	}
	u := strings.TrimRight(base, "/") + "/v1/forward-auth/" + policy
	if mode == apiwardenv1alpha1.PolicyModeDryRun {
		u += "?mode=" + string(apiwardenv1alpha1.PolicyModeDryRun)
	}
	return u
}

// DefaultAuthzService is the Service installed by config/default.
var DefaultAuthzService = AuthzService{Namespace: "apiwarden-system", Name: "apiwarden-authz", GRPCPort: 9001, HTTPPort: 9002}

// Input is what a Renderer needs for one target of one policy.
type Input struct {
	// Policy is the APIPolicy being rendered; rendered objects are named
	// after it and owned by it.
	Policy *apiwardenv1alpha1.APIPolicy
	// Spec is the effective protection for the target: the policy's own
	// fields, completed field by field by the Gateway-level policy of the
	// target's parent Gateway (see Merge). For a Gateway target it is the
	// policy's own spec.
	Spec apiwardenv1alpha1.APIPolicySpec
	// AuthPolicy names, as "namespace/name", the policy whose
	// authentication (and authorization) Spec carries: the Gateway-level
	// policy (possibly in the Gateway's namespace) when the route's policy
	// inherits them, else Policy itself. The authz service is told to check
	// requests against that policy. Empty means Policy.
	AuthPolicy string
	// GatewayValidatesClients says, for a route target, whether the policy
	// of its parent Gateway has the Gateway validate client certificates
	// (authentication.mtls), which a route's mTLS needs: client
	// certificates are asked for on the listener, not per route.
	GatewayValidatesClients bool
	// Target is the targetRef being rendered.
	Target apiwardenv1alpha1.PolicyTargetReference
	// Object is the target object (an HTTPRoute, GRPCRoute, Gateway, Ingress
	// or Service), read from the cluster or from the manifests given to the CLI.
	Object client.Object
	// Authz is where the authz service listens.
	Authz AuthzService
}

// Note says what a rendered configuration does differently from the policy:
// a field the gateway cannot enforce, or enforces another way.
type Note struct {
	// Field is the path of the APIPolicy field, such as "spec.request.allowedMethods".
	Field string
	// Message says what happens instead, in one sentence.
	Message string
}

// Result is the output of a Renderer for one target.
type Result struct {
	// Objects are the objects to apply, with apiVersion, kind, namespace,
	// name and labels set.
	Objects []client.Object
	// Unsupported lists fields the gateway cannot enforce as asked; the
	// policy reports Enforced with reason PartiallyEnforced when it is not
	// empty.
	Unsupported []Note
	// WouldBlock describes, for a DryRun policy, what Enforce mode would
	// block and the rendered objects let through.
	WouldBlock []string
	// NotEnforced, when set, says why the target is not protected as asked
	// even though its objects were rendered (a route asking for mTLS under a
	// Gateway that does not validate client certificates): the policy
	// reports Enforced=False with this message.
	NotEnforced string
	// TargetAnnotations are annotations to set on the target itself, for a
	// gateway that reads its configuration there (Traefik's Ingress
	// provider). They are server-side applied with field manager apiwarden,
	// so only these keys are touched, and removed when no longer rendered.
	TargetAnnotations map[string]string
}

// Notef records that field cannot be enforced as asked, saying why.
func (r *Result) Notef(field, format string, args ...any) {
	r.Unsupported = append(r.Unsupported, Note{Field: field, Message: fmt.Sprintf(format, args...)})
}

// WouldBlockf records what Enforce mode would block, for a DryRun policy.
func (r *Result) WouldBlockf(format string, args ...any) {
	r.WouldBlock = append(r.WouldBlock, fmt.Sprintf(format, args...))
}

// Renderer renders policies for one gateway.
type Renderer interface {
	// Name is the gateway's name as --gateway spells it, such as "envoy-gateway".
	Name() string
	// Kinds lists every kind the renderer can produce; their CRDs must be
	// installed for the renderer to work.
	Kinds() []schema.GroupVersionKind
	// Supports reports whether the renderer can program a target of this
	// group and kind.
	Supports(group, kind string) bool
	// Render renders one target. An error means the spec cannot be rendered
	// as written (the policy reports Invalid); it never depends on I/O.
	Render(in Input) (Result, error)
}

// ObjectName names a rendered object after its policy, target and purpose,
// as "<policy>-<target kind>-<target name>[-<section>]-<suffix>" in lower
// case. A name longer than maxLen keeps a readable prefix and ends with a hash
// of the full name, so names stay unique and stable.
func ObjectName(policy string, ref apiwardenv1alpha1.PolicyTargetReference, suffix string, maxLen int) string {
	parts := []string{policy, strings.ToLower(ref.Kind), ref.Name}
	if ref.SectionName != nil {
		parts = append(parts, *ref.SectionName)
	}
	if suffix != "" {
		parts = append(parts, suffix)
	}
	return Truncate(strings.Join(parts, "-"), maxLen)
}

// Truncate shortens name to maxLen characters, replacing the tail by the
// first 10 hex digits of its SHA-256 so distinct names stay distinct.
func Truncate(name string, maxLen int) string {
	if len(name) <= maxLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:])[:10]
	head := strings.TrimRight(name[:maxLen-len(h)-1], "-.")
	return head + "-" + h
}

// Labels returns the labels of an object rendered for policy.
func Labels(policy string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelPolicy: Truncate(policy, 63)}
}

// Merge returns the effective spec of a route-level policy: each protection
// field comes from the route's policy when it sets it, and otherwise from the
// Gateway-level policy (nil when the parent Gateway has none). This is the
// same precedence the admission engine applies (internal/exposure), so what
// is rendered is what was admitted. targetRefs and mode stay the route's.
func Merge(route apiwardenv1alpha1.APIPolicySpec, gateway *apiwardenv1alpha1.APIPolicySpec) apiwardenv1alpha1.APIPolicySpec {
	out := *route.DeepCopy()
	if gateway == nil {
		return out
	}
	g := gateway.DeepCopy()
	if out.TLS == nil {
		out.TLS = g.TLS
	}
	if out.Authentication == nil {
		out.Authentication = g.Authentication
		// Authorization rules name the consumers of an authentication, so
		// they travel with it.
		if out.Authorization == nil {
			out.Authorization = g.Authorization
		}
	}
	if out.RateLimit == nil {
		out.RateLimit = g.RateLimit
	}
	if out.Request == nil {
		out.Request = g.Request
	}
	if out.CORS == nil {
		out.CORS = g.CORS
	}
	if out.Versioning == nil {
		out.Versioning = g.Versioning
	}
	return out
}

// IsRoute reports whether group/kind is a Gateway API route apiwarden renders for.
func IsRoute(group, kind string) bool {
	return group == GatewayGroup && (kind == "HTTPRoute" || kind == "GRPCRoute")
}

// GatewayGroup is Gateway API's group.
const GatewayGroup = "gateway.networking.k8s.io"

// SortObjects orders rendered objects by kind then name, so output and
// status are deterministic.
func SortObjects(objs []client.Object) {
	slices.SortStableFunc(objs, func(a, b client.Object) int {
		ka, kb := a.GetObjectKind().GroupVersionKind().Kind, b.GetObjectKind().GroupVersionKind().Kind
		if ka != kb {
			if ka < kb {
				return -1
			}
			return 1
		}
		switch {
		case a.GetName() < b.GetName():
			return -1
		case a.GetName() > b.GetName():
			return 1
		}
		return 0
	})
}

// AuthzReferenceGrant lets the SecurityPolicies of namespace send ext_authz
// requests to the authz Service, which lives in apiwarden's namespace:
// Envoy Gateway honours a cross-namespace backendRef only when the target
// namespace grants it.
func AuthzReferenceGrant(namespace string, authz AuthzService) *gatewayv1.ReferenceGrant {
	return &gatewayv1.ReferenceGrant{
		TypeMeta: metav1.TypeMeta{APIVersion: gatewayv1.SchemeGroupVersion.String(), Kind: "ReferenceGrant"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      Truncate("apiwarden-authz-from-"+namespace, 253),
			Namespace: authz.Namespace,
			Labels:    map[string]string{LabelManagedBy: ManagedBy},
		},
		Spec: gatewayv1.ReferenceGrantSpec{
			From: []gatewayv1.ReferenceGrantFrom{{Group: "gateway.envoyproxy.io", Kind: "SecurityPolicy", Namespace: gatewayv1.Namespace(namespace)}},
			To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Service", Name: ptr.To(gatewayv1.ObjectName(authz.Name))}},
		},
	}
}

// ResponseHeaders are the HSTS (RFC 6797), Deprecation (RFC 9745), Sunset
// (RFC 8594) and Link headers of a spec.
func ResponseHeaders(s apiwardenv1alpha1.APIPolicySpec) []gatewayv1.HTTPHeader {
	var out []gatewayv1.HTTPHeader
	if s.TLS != nil && s.TLS.HSTS != nil {
		h := s.TLS.HSTS
		v := "max-age=" + strconv.FormatInt(h.MaxAgeSeconds, 10)
		if h.IncludeSubDomains == apiwardenv1alpha1.FeatureEnabled {
			v += "; includeSubDomains"
		}
		if h.Preload == apiwardenv1alpha1.FeatureEnabled {
			v += "; preload"
		}
		out = append(out, gatewayv1.HTTPHeader{Name: "Strict-Transport-Security", Value: v})
	}
	if v := s.Versioning; v != nil {
		if v.Deprecation != nil {
			// RFC 9745: a Structured Field Date, "@" and Unix seconds.
			out = append(out, gatewayv1.HTTPHeader{Name: "Deprecation", Value: "@" + strconv.FormatInt(v.Deprecation.Unix(), 10)})
		}
		if v.Sunset != nil {
			out = append(out, gatewayv1.HTTPHeader{Name: "Sunset", Value: v.Sunset.UTC().Format(http.TimeFormat)})
		}
		if v.Link != "" {
			out = append(out, gatewayv1.HTTPHeader{Name: "Link", Value: "<" + v.Link + `>; rel="deprecation"; type="text/html"`})
		}
	}
	return out
}
