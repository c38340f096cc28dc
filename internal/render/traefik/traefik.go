// Package traefik renders APIPolicies for Traefik Proxy v3 (open source),
// through its Kubernetes Ingress provider and its CRDs (traefik.io/v1alpha1):
//
//   - authentication by API key: a ForwardAuth Middleware calling apiwarden's
//     authz service (HTTP forward-auth), which copies the consumer and key id
//     headers into the request; a Headers Middleware then removes the key,
//     so it never reaches the backend;
//   - rate limits: one RateLimit Middleware per limit (429 when exceeded),
//     counted per consumer header, per client address or per host;
//   - request body limits: a Buffering Middleware (413);
//   - HSTS, Deprecation, Sunset, Link and CORS: the Headers Middleware;
//   - TLS minimum version and client certificate validation (mTLS): a
//     TLSOption;
//   - HTTP to HTTPS: an IngressRoute on the plain-HTTP entry point whose
//     RedirectScheme Middleware answers 301 (GET) or 308 (other methods),
//     while the Ingress itself is served on the TLS entry point only.
//
// Traefik reads which Middlewares and TLSOption an Ingress uses from the
// Ingress's own annotations: the renderer returns them as
// Result.TargetAnnotations, which the controller server-side applies (only
// those keys, as field manager apiwarden) and removes when the policy goes.
//
// Only Ingress targets are supported. Traefik's Gateway API provider takes
// Middlewares as ExtensionRef filters inside an HTTPRoute's rules, a list
// the route's owner owns and apiwarden does not rewrite; for HTTPRoutes use
// the envoy-gateway or gateway-api renderers.
package traefik

import (
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/certmanager"
)

// Name is the renderer's --gateway name.
const Name = "traefik"

// Traefik's CRD group and version, and the kinds rendered.
const (
	Group            = "traefik.io"
	Version          = "v1alpha1"
	KindMiddleware   = "Middleware"
	KindTLSOption    = "TLSOption"
	KindIngressRoute = "IngressRoute"
)

// Entry points of a Traefik installation, as its Helm chart names them: the
// plain-HTTP one and the TLS one.
const (
	EntryPointHTTP  = "web"
	EntryPointHTTPS = "websecure"
)

// Annotations of Traefik's Ingress provider.
const (
	AnnotationMiddlewares = "traefik.ingress.kubernetes.io/router.middlewares"
	AnnotationTLSOptions  = "traefik.ingress.kubernetes.io/router.tls.options"
	AnnotationEntryPoints = "traefik.ingress.kubernetes.io/router.entrypoints"
	AnnotationTLS         = "traefik.ingress.kubernetes.io/router.tls"
)

// Headers the authz service sets on an allowed request.
const (
	ConsumerHeader = "X-Apiwarden-Consumer"
	KeyIDHeader    = "X-Apiwarden-Key-Id"
)

// Renderer renders APIPolicies for Traefik.
type Renderer struct{}

// Name is "traefik".
func (Renderer) Name() string { return Name }

// Kinds are the Traefik CRDs the renderer writes.
func (Renderer) Kinds() []schema.GroupVersionKind {
	gv := schema.GroupVersion{Group: Group, Version: Version}
	return []schema.GroupVersionKind{gv.WithKind(KindMiddleware), gv.WithKind(KindTLSOption), gv.WithKind(KindIngressRoute)}
}

// Supports is true for Ingresses only.
func (Renderer) Supports(group, kind string) bool {
	return group == networkingv1.GroupName && kind == "Ingress"
}

// Render renders one Ingress target.
func (r Renderer) Render(in render.Input) (render.Result, error) {
	if !r.Supports(in.Target.Group, in.Target.Kind) {
		return render.Result{}, fmt.Errorf("Traefik is programmed through Ingress annotations; target an Ingress (for HTTPRoutes use --gateway=envoy-gateway or gateway-api)")
	}
	ing, ok := in.Object.(*networkingv1.Ingress)
	if !ok {
		return render.Result{}, fmt.Errorf("the target %s is not an Ingress", in.Target.Name)
	}
	b := &builder{in: in, ing: ing, dryRun: in.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun, res: &render.Result{}}
	var chain []string
	// Order matters: the body limit first (cheapest refusal), then
	// authentication, then the limits counted per consumer it identifies,
	// then the headers that strip the key and add response headers.
	for _, mw := range []*unstructured.Unstructured{b.buffering(), b.forwardAuth()} {
		if mw != nil {
			chain = append(chain, b.ref(mw))
		}
	}
	for _, mw := range b.rateLimits() {
		chain = append(chain, b.ref(mw))
	}
	if mw := b.headers(); mw != nil {
		chain = append(chain, b.ref(mw))
	}
	b.notes()
	ann := map[string]string{}
	if len(chain) > 0 {
		ann[AnnotationMiddlewares] = strings.Join(chain, ",")
	}
	if opt := b.tlsOption(); opt != nil {
		ann[AnnotationTLSOptions] = b.in.Policy.Namespace + "-" + opt.GetName() + "@kubernetescrd"
	}
	if b.redirect() {
		ann[AnnotationEntryPoints] = EntryPointHTTPS
		ann[AnnotationTLS] = "true"
	}
	if len(ann) > 0 {
		b.res.TargetAnnotations = ann
	}
	render.SortObjects(b.res.Objects)
	return *b.res, nil
}

type builder struct {
	in     render.Input
	ing    *networkingv1.Ingress
	dryRun bool
	res    *render.Result
}

// object starts a rendered object of kind named after the policy, the
// target and suffix.
func (b *builder) object(kind, suffix string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(Group + "/" + Version)
	u.SetKind(kind)
	// Traefik references a Middleware as <namespace>-<name>@kubernetescrd
	// in an annotation value; 63 keeps that readable.
	u.SetName(render.ObjectName(b.in.Policy.Name, b.in.Target, suffix, 63))
	u.SetNamespace(b.in.Policy.Namespace)
	u.SetLabels(render.Labels(b.in.Policy.Name))
	b.res.Objects = append(b.res.Objects, u)
	return u
}

// ref is how an Ingress annotation names a Middleware.
func (b *builder) ref(mw *unstructured.Unstructured) string {
	return mw.GetNamespace() + "-" + mw.GetName() + "@kubernetescrd"
}

// forwardAuth asks apiwarden's authz service about every request when the
// policy authenticates API keys or authorizes by role. The service knows
// the policy's mode: in DryRun it allows everything and counts what it
// would have refused.
func (b *builder) forwardAuth() *unstructured.Unstructured {
	s := b.in.Spec
	if s.Authentication == nil || s.Authentication.APIKey == nil {
		return nil
	}
	policy := b.in.AuthPolicy
	if policy == "" {
		policy = b.in.Policy.Namespace + "/" + b.in.Policy.Name
	}
	if b.dryRun {
		b.res.WouldBlockf("requests without a valid API key in header %s would be answered 401 (the authz service lets them through and counts them in apiwarden_authz_dry_run_refusals_total)", apiKeyHeader(s.Authentication.APIKey))
	}
	return b.object(KindMiddleware, "auth", map[string]any{"forwardAuth": map[string]any{
		"address": b.in.Authz.ForwardAuthURL(policy, s.Mode),
		// The consumer and key id replace whatever the client sent.
		"authResponseHeaders": []any{ConsumerHeader, KeyIDHeader},
	}})
}

func apiKeyHeader(a *apiwardenv1alpha1.APIKeyAuthentication) string {
	if a.Header != "" {
		return a.Header
	}
	return "X-API-Key"
}

// rateLimits renders one RateLimit Middleware per limit. Traefik counts
// per source: Consumer by the consumer header forward-auth set, ClientIP
// by the client's address, Global by the request's host (one Ingress host
// is one bucket). Counts are per Traefik replica.
func (b *builder) rateLimits() []*unstructured.Unstructured {
	rl := b.in.Spec.RateLimit
	if rl == nil {
		return nil
	}
	var out []*unstructured.Unstructured
	for _, l := range rl.Limits {
		if b.dryRun {
			b.res.WouldBlockf("requests over %d per %s by %s would be answered 429", l.Requests, strings.ToLower(string(l.Unit)), l.By)
			continue
		}
		period := map[apiwardenv1alpha1.RateLimitUnit]string{
			apiwardenv1alpha1.RateLimitUnitSecond: "1s", apiwardenv1alpha1.RateLimitUnitMinute: "1m", apiwardenv1alpha1.RateLimitUnitHour: "1h",
		}[l.Unit]
		if period == "" {
			b.res.Notef("spec.rateLimit.limits["+string(l.By)+"].unit", "unit %s has no Traefik period; the limit is not rendered", l.Unit)
			continue
		}
		burst := int64(l.Requests)
		if l.Burst != nil && *l.Burst > 0 {
			burst = int64(*l.Burst)
		}
		spec := map[string]any{"average": int64(l.Requests), "period": period, "burst": burst}
		switch l.By {
		case apiwardenv1alpha1.RateLimitKeyConsumer:
			if b.in.Spec.Authentication == nil || b.in.Spec.Authentication.APIKey == nil {
				b.res.Notef("spec.rateLimit.limits[Consumer]", "without API-key authentication no consumer header is set, so every request counts in one bucket")
			}
			spec["sourceCriterion"] = map[string]any{"requestHeaderName": ConsumerHeader}
		case apiwardenv1alpha1.RateLimitKeyClientIP:
			spec["sourceCriterion"] = map[string]any{"ipStrategy": map[string]any{"depth": int64(0)}}
		case apiwardenv1alpha1.RateLimitKeyGlobal:
			spec["sourceCriterion"] = map[string]any{"requestHost": true}
		}
		out = append(out, b.object(KindMiddleware, "ratelimit-"+strings.ToLower(string(l.By)), map[string]any{"rateLimit": spec}))
	}
	if len(out) > 0 {
		b.res.Notef("spec.rateLimit", "Traefik counts each limit per Traefik replica: the total allowed is the limit times the number of replicas")
	}
	return out
}

// buffering limits request bodies (413 above the limit).
func (b *builder) buffering() *unstructured.Unstructured {
	r := b.in.Spec.Request
	if r == nil || r.MaxBodyBytes == nil {
		return nil
	}
	if b.dryRun {
		b.res.WouldBlockf("request bodies over %d bytes would be answered 413", *r.MaxBodyBytes)
		return nil
	}
	return b.object(KindMiddleware, "body", map[string]any{"buffering": map[string]any{"maxRequestBodyBytes": *r.MaxBodyBytes}})
}

// headers removes the API key before the backend, and sets the HSTS,
// versioning and CORS response headers.
func (b *builder) headers() *unstructured.Unstructured {
	s := b.in.Spec
	spec := map[string]any{}
	if a := s.Authentication; a != nil && a.APIKey != nil {
		// An empty value removes the header from the forwarded request.
		spec["customRequestHeaders"] = map[string]any{apiKeyHeader(a.APIKey): ""}
	}
	if s.TLS != nil && s.TLS.HSTS != nil {
		if b.dryRun {
			b.res.WouldBlockf("browsers would refuse plain HTTP to this host for %d seconds", s.TLS.HSTS.MaxAgeSeconds)
		} else {
			spec["stsSeconds"] = s.TLS.HSTS.MaxAgeSeconds
			spec["stsIncludeSubdomains"] = s.TLS.HSTS.IncludeSubDomains == apiwardenv1alpha1.FeatureEnabled
			spec["stsPreload"] = s.TLS.HSTS.Preload == apiwardenv1alpha1.FeatureEnabled
		}
	}
	resp := map[string]any{}
	for _, h := range render.ResponseHeaders(s) {
		if h.Name != "Strict-Transport-Security" {
			resp[string(h.Name)] = h.Value
		}
	}
	if len(resp) > 0 {
		spec["customResponseHeaders"] = resp
	}
	if c := s.CORS; c != nil {
		spec["accessControlAllowOriginList"] = strs(c.AllowOrigins)
		if len(c.AllowMethods) > 0 {
			methods := make([]string, len(c.AllowMethods))
			for i, m := range c.AllowMethods {
				methods[i] = string(m)
			}
			spec["accessControlAllowMethods"] = strs(methods)
		}
		if len(c.AllowHeaders) > 0 {
			spec["accessControlAllowHeaders"] = strs(c.AllowHeaders)
		}
		if len(c.ExposeHeaders) > 0 {
			spec["accessControlExposeHeaders"] = strs(c.ExposeHeaders)
		}
		if c.MaxAgeSeconds != nil {
			spec["accessControlMaxAge"] = int64(*c.MaxAgeSeconds)
		}
		if c.AllowCredentials != nil {
			spec["accessControlAllowCredentials"] = *c.AllowCredentials
		}
	}
	if len(spec) == 0 {
		return nil
	}
	return b.object(KindMiddleware, "headers", map[string]any{"headers": spec})
}

func strs(in []string) []any {
	out := make([]any, len(in))
	for i, s := range in {
		out[i] = s
	}
	return out
}

// tlsOption sets the TLS minimum version and, for mTLS, validation of
// client certificates against the policy's CA.
func (b *builder) tlsOption() *unstructured.Unstructured {
	s := b.in.Spec
	spec := map[string]any{}
	if s.TLS != nil && s.TLS.MinVersion != "" {
		if b.dryRun {
			b.res.WouldBlockf("clients offering only TLS below %s would fail the handshake", s.TLS.MinVersion)
		} else {
			spec["minVersion"] = "VersionTLS" + strings.ReplaceAll(string(s.TLS.MinVersion), ".", "")
		}
	}
	if a := s.Authentication; a != nil && a.MTLS != nil {
		kind, name, ok := certmanager.TrustBundle(b.in.Policy, s)
		switch {
		case b.dryRun:
			b.res.WouldBlockf("clients without a certificate from issuer %s would fail the handshake", a.MTLS.IssuerRef.Name)
		case !ok:
			b.res.Notef("spec.authentication.mtls", "no trustBundleRef and no listed consumer whose certificate Secret carries the CA, so there is no CA to validate client certificates against; clients are not asked for certificates")
		case kind != "Secret":
			b.res.Notef("spec.authentication.mtls.trustBundleRef", "Traefik reads client CAs from Secrets only, not a %s; clients are not asked for certificates", kind)
		default:
			spec["clientAuth"] = map[string]any{"secretNames": []any{name}, "clientAuthType": "RequireAndVerifyClientCert"}
		}
	}
	if len(spec) == 0 {
		return nil
	}
	if b.ing != nil && len(b.ing.Spec.TLS) == 0 {
		b.res.Notef("spec.tls", "the Ingress has no spec.tls, so Traefik serves it without TLS and the TLSOption does not apply")
	}
	return b.object(KindTLSOption, "tls", spec)
}

// redirect renders, when tls.httpRedirect is on, an IngressRoute on the
// plain-HTTP entry point for the Ingress's hosts whose only job is to
// redirect to HTTPS; the Ingress is then served on the TLS entry point only.
func (b *builder) redirect() bool {
	s := b.in.Spec
	if s.TLS == nil || s.TLS.HTTPRedirect != apiwardenv1alpha1.FeatureEnabled {
		return false
	}
	var hosts []string
	for _, r := range b.ing.Spec.Rules {
		if r.Host != "" && !slices.Contains(hosts, r.Host) {
			hosts = append(hosts, r.Host)
		}
	}
	if len(hosts) == 0 {
		b.res.Notef("spec.tls.httpRedirect", "the Ingress names no host, so no redirect is rendered (it would catch every host on the entry point)")
		return false
	}
	if b.dryRun {
		b.res.WouldBlockf("plain-HTTP requests to %s would be redirected to HTTPS", strings.Join(hosts, ", "))
		return false
	}
	mw := b.object(KindMiddleware, "https-redirect", map[string]any{"redirectScheme": map[string]any{"scheme": "https", "permanent": true}})
	matches := make([]string, len(hosts))
	for i, h := range hosts {
		matches[i] = "Host(`" + h + "`)"
	}
	b.object(KindIngressRoute, "https-redirect", map[string]any{
		"entryPoints": []any{EntryPointHTTP},
		"routes": []any{map[string]any{
			"kind":        "Rule",
			"match":       strings.Join(matches, " || "),
			"middlewares": []any{map[string]any{"name": mw.GetName()}},
			"services":    []any{map[string]any{"kind": "TraefikService", "name": "noop@internal"}},
		}},
	})
	return true
}

// notes reports the fields Traefik (open source) cannot enforce.
func (b *builder) notes() {
	s := b.in.Spec
	if a := s.Authentication; a != nil && a.JWT != nil {
		b.res.Notef("spec.authentication.jwt", "Traefik Proxy (open source) cannot verify JWTs; requests are not checked for one")
	}
	if s.Authorization != nil && (s.Authentication == nil || s.Authentication.APIKey == nil) {
		b.res.Notef("spec.authorization", "authorization rules are checked by the authz service, which Traefik calls only for API-key authentication")
	}
	if s.Request != nil && len(s.Request.AllowedMethods) > 0 {
		b.res.Notef("spec.request.allowedMethods", "Traefik Proxy has no method filter middleware; other methods are not refused")
	}
}
