// Package envoygateway renders an APIPolicy into Envoy Gateway's policy kinds:
//
//   - SecurityPolicy: API keys through extAuth (gRPC ext_authz to apiwarden's
//     authz service, which verifies the key against its hash, applies the
//     authorization rules of API-key consumers and sets the consumer header),
//     JWT providers, CORS, JWT authorization rules and allowed methods;
//   - BackendTrafficPolicy: rate limits and the request body limit;
//   - ClientTrafficPolicy (Gateway targets): the TLS minimum version and the
//     HSTS, Deprecation, Sunset and Link response headers;
//   - plus the Gateway API redirect routes of package gatewayapi.
//
// What Envoy Gateway cannot express exactly is rendered the safe way and
// reported as a render.Note, never dropped silently.
package envoygateway

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/identity"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/certmanager"
	"github.com/apiwarden/apiwarden/internal/render/gatewayapi"
)

// Name is the renderer's name for --gateway.
const Name = "envoy-gateway"

// ConsumerHeader is the request header carrying the authenticated consumer:
// set by apiwarden's authz service for API keys (overwriting anything the
// client sent) and from the consumer claim for JWTs. Per-consumer rate limits
// count by it.
const ConsumerHeader = "x-apiwarden-consumer"

// PolicyContextKey is the ext_authz context extension that tells the authz
// service which APIPolicy ("namespace/name") a request falls under.
const PolicyContextKey = "apiwarden.io/policy"

// ModeContextKey is the ext_authz context extension marking a DryRun policy.
const ModeContextKey = "apiwarden.io/mode"

// Renderer renders Envoy Gateway policies.
type Renderer struct{}

var _ render.Renderer = Renderer{}

// Name implements render.Renderer.
func (Renderer) Name() string { return Name }

// Kinds implements render.Renderer.
func (Renderer) Kinds() []schema.GroupVersionKind {
	return append(gatewayapi.Renderer{}.Kinds(),
		egv1a1.GroupVersion.WithKind(egv1a1.KindSecurityPolicy),
		egv1a1.GroupVersion.WithKind(egv1a1.KindBackendTrafficPolicy),
		egv1a1.GroupVersion.WithKind(egv1a1.KindClientTrafficPolicy),
	)
}

// Supports implements render.Renderer: Envoy Gateway serves Gateway API
// Gateways and routes, not Ingresses or bare Services.
func (Renderer) Supports(group, kind string) bool {
	return gatewayapi.Renderer{}.Supports(group, kind)
}

// Render implements render.Renderer.
func (r Renderer) Render(in render.Input) (render.Result, error) {
	if !r.Supports(in.Target.Group, in.Target.Kind) {
		return render.Result{}, fmt.Errorf("Envoy Gateway cannot program a %s; target an HTTPRoute, GRPCRoute or Gateway", in.Target.Kind)
	}
	res, err := gatewayapi.Redirects(in)
	if err != nil {
		return res, err
	}
	b := builder{in: in, dryRun: in.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun, res: &res}
	if sp := b.securityPolicy(); sp != nil {
		res.Objects = append(res.Objects, sp)
	}
	if btp := b.backendTrafficPolicy(); btp != nil {
		res.Objects = append(res.Objects, btp)
	}
	if ctp := b.clientTrafficPolicy(); ctp != nil {
		res.Objects = append(res.Objects, ctp)
	}
	render.SortObjects(res.Objects)
	return res, nil
}

type builder struct {
	in     render.Input
	dryRun bool
	res    *render.Result
}

func (b *builder) meta(kind string) (metav1.TypeMeta, metav1.ObjectMeta) {
	return metav1.TypeMeta{APIVersion: egv1a1.GroupVersion.String(), Kind: kind},
		metav1.ObjectMeta{
			Name:      render.ObjectName(b.in.Policy.Name, b.in.Target, "", 253),
			Namespace: b.in.Policy.Namespace,
			Labels:    render.Labels(b.in.Policy.Name),
		}
}

// targetRefs attaches an Envoy Gateway policy to the target, keeping a
// Gateway's sectionName.
func (b *builder) targetRefs() egv1a1.PolicyTargetReferences {
	ref := gatewayv1.LocalPolicyTargetReferenceWithSectionName{
		LocalPolicyTargetReference: gatewayv1.LocalPolicyTargetReference{
			Group: gatewayv1.Group(b.in.Target.Group), Kind: gatewayv1.Kind(b.in.Target.Kind), Name: gatewayv1.ObjectName(b.in.Target.Name),
		},
	}
	if b.in.Target.SectionName != nil {
		ref.SectionName = ptr.To(gatewayv1.SectionName(*b.in.Target.SectionName))
	}
	return egv1a1.PolicyTargetReferences{TargetRefs: []gatewayv1.LocalPolicyTargetReferenceWithSectionName{ref}}
}

func (b *builder) isGateway() bool { return b.in.Target.Kind == "Gateway" }

// securityPolicy renders authentication, CORS, authorization and allowed
// methods.
func (b *builder) securityPolicy() *egv1a1.SecurityPolicy {
	s := b.in.Spec
	var spec egv1a1.SecurityPolicySpec
	used := false
	if a := s.Authentication; a != nil {
		if a.APIKey != nil {
			spec.ExtAuth = b.extAuth()
			used = true
		}
		if a.JWT != nil {
			if b.dryRun {
				b.res.WouldBlockf("requests without a valid JWT from %s would be answered 401", providerNames(a.JWT))
			} else {
				spec.JWT = b.jwt(a.JWT)
				used = true
			}
		}
		if a.MTLS != nil && a.APIKey == nil && a.JWT == nil && s.Authorization != nil {
			// Authorization of mTLS consumers: the authz service reads the
			// verified identity from x-forwarded-client-cert.
			spec.ExtAuth = b.extAuth()
			used = true
		}
		if a.APIKey != nil && a.JWT != nil && !b.dryRun {
			b.res.Notef("spec.authentication", "Envoy Gateway runs extAuth and JWT as separate filters, so a request needs both a valid API key and a valid JWT, which is stricter than either one")
		}
		if a.MTLS != nil && !b.isGateway() && !b.in.GatewayValidatesClients {
			b.res.NotEnforced = "spec.authentication.mtls: client certificates are asked for by the Gateway's listener, and no policy on the parent Gateway sets authentication.mtls; add one there"
		}
	}
	if c := s.CORS; c != nil {
		spec.CORS = cors(c)
		used = true
	}
	if az := b.authorization(); az != nil {
		spec.Authorization = az
		used = true
	}
	if !used {
		return nil
	}
	tm, om := b.meta(egv1a1.KindSecurityPolicy)
	spec.PolicyTargetReferences = b.targetRefs()
	return &egv1a1.SecurityPolicy{TypeMeta: tm, ObjectMeta: om, Spec: spec}
}

// extAuth points Envoy's ext_authz filter at apiwarden's authz service over
// gRPC, naming the policy whose keys are accepted. In DryRun the filter fails
// open and the authz service, which knows the policy's mode, allows every
// request while counting the ones it would have refused.
func (b *builder) extAuth() *egv1a1.ExtAuth {
	policy := b.in.AuthPolicy
	if policy == "" {
		policy = b.in.Policy.Namespace + "/" + b.in.Policy.Name
	}
	if b.dryRun {
		b.res.WouldBlockf("requests without a valid API key in header %s would be answered 401 (the authz service lets them through and counts them in apiwarden_authz_dry_run_refusals_total)", apiKeyHeader(b.in.Spec.Authentication.APIKey))
	}
	ns := gatewayv1.Namespace(b.in.Authz.Namespace)
	exts := []*egv1a1.ContextExtension{{Name: PolicyContextKey, Type: egv1a1.ContextExtensionValueTypeValue, Value: ptr.To(policy)}}
	if b.dryRun {
		// The authz service then allows even requests it cannot decide.
		exts = append(exts, &egv1a1.ContextExtension{Name: ModeContextKey, Type: egv1a1.ContextExtensionValueTypeValue, Value: ptr.To(string(apiwardenv1alpha1.PolicyModeDryRun))})
	}
	return &egv1a1.ExtAuth{
		GRPC: &egv1a1.GRPCExtAuthService{BackendCluster: egv1a1.BackendCluster{
			BackendRefs: []egv1a1.BackendRef{{BackendObjectReference: gatewayv1.BackendObjectReference{
				Name: gatewayv1.ObjectName(b.in.Authz.Name), Namespace: &ns, Port: ptr.To(gatewayv1.PortNumber(b.in.Authz.GRPCPort)),
			}}},
		}},
		FailOpen:          ptr.To(b.dryRun),
		ContextExtensions: exts,
	}
}

func apiKeyHeader(a *apiwardenv1alpha1.APIKeyAuthentication) string {
	if a.Header == "" {
		return "X-API-Key"
	}
	return a.Header
}

func providerNames(j *apiwardenv1alpha1.JWTAuthentication) string {
	names := make([]string, len(j.Providers))
	for i, p := range j.Providers {
		names[i] = strconv.Quote(p.Name)
	}
	return strings.Join(names, ", ")
}

func (b *builder) jwt(j *apiwardenv1alpha1.JWTAuthentication) *egv1a1.JWT {
	out := &egv1a1.JWT{}
	for _, p := range j.Providers {
		claim := p.ConsumerClaim
		if claim == "" {
			claim = "sub"
		}
		out.Providers = append(out.Providers, egv1a1.JWTProvider{
			Name:           p.Name,
			Issuer:         p.Issuer,
			Audiences:      slices.Clone(p.Audiences),
			RemoteJWKS:     &egv1a1.RemoteJWKS{URI: p.JWKSURI},
			ClaimToHeaders: []egv1a1.ClaimToHeader{{Header: ConsumerHeader, Claim: claim}},
		})
		if len(p.Audiences) > 8 {
			b.res.Notef("spec.authentication.jwt.providers["+p.Name+"].audiences", "Envoy Gateway accepts at most 8 audiences per provider; the first 8 are rendered")
			out.Providers[len(out.Providers)-1].Audiences = out.Providers[len(out.Providers)-1].Audiences[:8]
		}
	}
	return out
}

func cors(c *apiwardenv1alpha1.CORS) *egv1a1.CORS {
	out := &egv1a1.CORS{AllowCredentials: c.AllowCredentials}
	for _, o := range c.AllowOrigins {
		out.AllowOrigins = append(out.AllowOrigins, egv1a1.Origin(o))
	}
	for _, m := range c.AllowMethods {
		out.AllowMethods = append(out.AllowMethods, string(m))
	}
	out.AllowHeaders = slices.Clone(c.AllowHeaders)
	out.ExposeHeaders = slices.Clone(c.ExposeHeaders)
	if c.MaxAgeSeconds != nil {
		out.MaxAge = ptr.To(gatewayv1.Duration(strconv.Itoa(int(*c.MaxAgeSeconds)) + "s"))
	}
	return out
}

// anyClient is a principal that matches every client, for rules that match
// on the request only (Envoy Gateway requires a principal or CEL).
var anyClient = &egv1a1.Principal{ClientCIDRs: []egv1a1.CIDR{"0.0.0.0/0", "::/0"}}

// authorization renders allowed methods, and the authorization rules of a
// policy authenticated by JWT alone. With API keys, the authz service applies
// the rules itself: it knows each consumer's roles from its APIKeySet.
func (b *builder) authorization() *egv1a1.Authorization {
	s := b.in.Spec
	var rules []egv1a1.AuthorizationRule
	if s.Request != nil && len(s.Request.AllowedMethods) > 0 {
		if b.dryRun {
			b.res.WouldBlockf("requests with a method other than %s would be answered 403", methodList(s.Request.AllowedMethods))
		} else {
			rules = append(rules, egv1a1.AuthorizationRule{
				Name:      ptr.To("apiwarden-allowed-methods"),
				Action:    egv1a1.AuthorizationActionDeny,
				Principal: anyClient,
				CEL:       ptr.To(egv1a1.CELExpression(methodsCEL(s.Request.AllowedMethods))),
			})
			b.res.Notef("spec.request.allowedMethods", "other methods are answered 403 rather than 405: Envoy Gateway's authorization filter answers 403")
		}
	}
	defaultAllow := true
	jwtOnly := s.Authentication != nil && s.Authentication.JWT != nil && s.Authentication.APIKey == nil
	if jwtOnly && !b.dryRun {
		az := s.Authorization
		if az == nil {
			az = &apiwardenv1alpha1.Authorization{DefaultAction: apiwardenv1alpha1.AuthorizationActionAllow}
		}
		defaultAllow = az.DefaultAction == apiwardenv1alpha1.AuthorizationActionAllow
		rules = append(rules, b.jwtRules(az.Rules)...)
		if defaultAllow && hasRequiredClaims(s.Authentication.JWT) {
			// The default can no longer allow: a token must carry its
			// provider's required claims, so the default becomes one Allow
			// rule per provider that requires them, and Deny.
			for _, prov := range s.Authentication.JWT.Providers {
				for i, claims := range b.claimVariants("spec.authentication.jwt.providers["+prov.Name+"].requiredClaims", providerClaims(prov)) {
					rules = append(rules, egv1a1.AuthorizationRule{
						Name:      ptr.To(render.Truncate(fmt.Sprintf("apiwarden-default-%s-%d", prov.Name, i), 253)),
						Action:    egv1a1.AuthorizationActionAllow,
						Principal: &egv1a1.Principal{JWT: &egv1a1.JWTPrincipal{Provider: prov.Name, Claims: claims}},
					})
				}
			}
			defaultAllow = false
		}
	} else if s.Authorization != nil && jwtOnly {
		b.res.WouldBlockf("requests that authorization rules refuse would be answered 403")
	}
	if len(rules) == 0 {
		return nil
	}
	action := egv1a1.AuthorizationActionDeny
	if defaultAllow {
		action = egv1a1.AuthorizationActionAllow
	}
	return &egv1a1.Authorization{Rules: rules, DefaultAction: &action}
}

// methodsCEL is a CEL expression true for a method outside the list. The
// methods come from an enum, so they need no escaping.
func methodsCEL(ms []apiwardenv1alpha1.HTTPMethod) string {
	q := make([]string, len(ms))
	for i, m := range ms {
		q[i] = "'" + string(m) + "'"
	}
	return "!(request.method in [" + strings.Join(q, ", ") + "])"
}

func methodList(ms []apiwardenv1alpha1.HTTPMethod) string {
	q := make([]string, len(ms))
	for i, m := range ms {
		q[i] = string(m)
	}
	return strings.Join(q, ", ")
}

func hasRequiredClaims(j *apiwardenv1alpha1.JWTAuthentication) bool {
	for _, p := range j.Providers {
		if len(p.RequiredClaims) > 0 {
			return true
		}
	}
	return false
}

// claim is one claim requirement before it is typed for Envoy Gateway.
type claim struct {
	name   string
	values []string
	// scalar: the claim is a string by nature (a consumer id, the issuer).
	scalar bool
}

// providerClaims are the claims every token of prov must carry: its required
// claims, or, when it has none, its issuer (Envoy Gateway names a token's
// provider only through a claim).
func providerClaims(prov apiwardenv1alpha1.JWTProvider) []claim {
	if len(prov.RequiredClaims) == 0 {
		return []claim{{name: "iss", values: []string{prov.Issuer}, scalar: true}}
	}
	out := make([]claim, len(prov.RequiredClaims))
	for i, c := range prov.RequiredClaims {
		out[i] = claim{name: c.Name, values: slices.Clone(c.Values)}
	}
	return out
}

// maxClaimVariants bounds how many claims are expanded into string and
// list variants (2^n rules).
const maxClaimVariants = 3

// claimVariants types claims for Envoy Gateway, which must be told whether a
// claim is a string or a list of strings, while apiwarden's claims match
// either (equal to a value, or containing one). Each non-scalar claim yields
// both variants, so n claims give up to 2^n principals, one rule each; over
// maxClaimVariants claims, they are matched as lists only, with a note.
func (b *builder) claimVariants(field string, cs []claim) [][]egv1a1.JWTClaim {
	out := [][]egv1a1.JWTClaim{nil}
	expand := 0
	for _, c := range cs {
		if !c.scalar {
			expand++
		}
	}
	if expand > maxClaimVariants {
		b.res.Notef(field, "more than %d list-or-string claims: they are matched as lists of strings only", maxClaimVariants)
	}
	for _, c := range cs {
		str := egv1a1.JWTClaim{Name: c.name, ValueType: ptr.To(egv1a1.JWTClaimValueTypeString), Values: slices.Clone(c.values)}
		list := egv1a1.JWTClaim{Name: c.name, ValueType: ptr.To(egv1a1.JWTClaimValueTypeStringArray), Values: slices.Clone(c.values)}
		switch {
		case c.scalar:
			for i := range out {
				out[i] = append(out[i], str)
			}
		case expand > maxClaimVariants:
			for i := range out {
				out[i] = append(out[i], list)
			}
		default:
			next := make([][]egv1a1.JWTClaim, 0, 2*len(out))
			for _, v := range out {
				next = append(next, append(slices.Clone(v), str), append(slices.Clone(v), list))
			}
			out = next
		}
	}
	return out
}

// jwtRules translates authorization rules for JWT consumers: consumers match
// the provider's consumer claim, claims match claims, and an Allow rule also
// requires the provider's required claims. Envoy Gateway's rules name one
// provider, one path and one typed claim set, so a rule becomes one rule per
// provider, path and claim typing.
func (b *builder) jwtRules(rules []apiwardenv1alpha1.AuthorizationRule) []egv1a1.AuthorizationRule {
	var out []egv1a1.AuthorizationRule
	providers := b.in.Spec.Authentication.JWT.Providers
	for _, r := range rules {
		field := "spec.authorization.rules[" + r.Name + "]"
		if len(r.Roles) > 0 {
			b.res.Notef(field+".roles", "roles belong to API-key consumers; with JWT alone the rule matches only through its consumers and claims")
			if len(r.Consumers) == 0 && len(r.Claims) == 0 {
				continue
			}
		}
		allow := r.Action == apiwardenv1alpha1.AuthorizationActionAllow
		action := egv1a1.AuthorizationActionDeny
		if allow {
			action = egv1a1.AuthorizationActionAllow
		}
		var ops []*egv1a1.Operation
		if len(r.Paths) == 0 {
			if len(r.Methods) > 0 {
				ops = append(ops, &egv1a1.Operation{Methods: gwMethods(r.Methods)})
			} else {
				ops = append(ops, nil)
			}
		}
		for _, p := range r.Paths {
			pt := gatewayv1.PathMatchPathPrefix
			if p.Type == apiwardenv1alpha1.PathMatchExact {
				pt = gatewayv1.PathMatchExact
			}
			op := &egv1a1.Operation{Path: &egv1a1.PathMatch{Type: ptr.To(pt), Value: p.Value}}
			if len(r.Methods) > 0 {
				op.Methods = gwMethods(r.Methods)
			}
			ops = append(ops, op)
		}
		for _, prov := range providers {
			var cs []claim
			if len(r.Consumers) > 0 {
				name := prov.ConsumerClaim
				if name == "" {
					name = "sub"
				}
				cs = append(cs, claim{name: name, values: slices.Clone(r.Consumers), scalar: true})
			}
			for _, c := range r.Claims {
				cs = append(cs, claim{name: c.Name, values: slices.Clone(c.Values)})
			}
			if allow && len(prov.RequiredClaims) > 0 {
				cs = append(cs, providerClaims(prov)...)
			}
			var principals []*egv1a1.Principal
			if len(cs) == 0 {
				if !allow {
					principals = []*egv1a1.Principal{anyClient}
				} else {
					// An Allow rule still applies only to this provider's tokens.
					cs = providerClaims(prov)
				}
			}
			if len(cs) > 0 {
				for _, v := range b.claimVariants(field+".claims", cs) {
					principals = append(principals, &egv1a1.Principal{JWT: &egv1a1.JWTPrincipal{Provider: prov.Name, Claims: v}})
				}
			}
			n := 0
			for _, pr := range principals {
				for _, op := range ops {
					out = append(out, egv1a1.AuthorizationRule{Name: ptr.To(render.Truncate(fmt.Sprintf("%s-%s-%d", r.Name, prov.Name, n), 253)), Action: action, Operation: op, Principal: pr})
					n++
				}
			}
			if len(principals) == 1 && principals[0] == anyClient {
				break // the rule does not depend on the provider
			}
		}
	}
	return out
}

func gwMethods(ms []apiwardenv1alpha1.HTTPMethod) []gatewayv1.HTTPMethod {
	out := make([]gatewayv1.HTTPMethod, len(ms))
	for i, m := range ms {
		out[i] = gatewayv1.HTTPMethod(m)
	}
	return out
}

// backendTrafficPolicy renders rate limits and the body limit.
func (b *builder) backendTrafficPolicy() *egv1a1.BackendTrafficPolicy {
	s := b.in.Spec
	var spec egv1a1.BackendTrafficPolicySpec
	used := false
	if rl := s.RateLimit; rl != nil && len(rl.Limits) > 0 {
		if b.dryRun {
			// Not even in shadow mode: Envoy Gateway ignores shadowMode on
			// local limits, and a global limit without its rate limit
			// service turns the route into 500s.
			for _, l := range rl.Limits {
				b.res.WouldBlockf("requests over %d per %s by %s would be answered 429", l.Requests, strings.ToLower(string(l.Unit)), l.By)
			}
		} else {
			spec.RateLimit = b.rateLimit(rl)
			used = true
		}
	}
	if s.Request != nil && s.Request.MaxBodyBytes != nil {
		if b.dryRun {
			b.res.WouldBlockf("request bodies over %d bytes would be answered 413", *s.Request.MaxBodyBytes)
		} else {
			spec.RequestBuffer = &egv1a1.RequestBuffer{Limit: *resource.NewQuantity(*s.Request.MaxBodyBytes, resource.BinarySI)}
			used = true
		}
	}
	if !used {
		return nil
	}
	tm, om := b.meta(egv1a1.KindBackendTrafficPolicy)
	spec.PolicyTargetReferences = b.targetRefs()
	return &egv1a1.BackendTrafficPolicy{TypeMeta: tm, ObjectMeta: om, Spec: spec}
}

// rateLimit renders each limit: Global as a local (per-Envoy-replica) token
// bucket with no selector, which needs no rate limit service; ClientIP and
// Consumer as global limits counted per distinct client address or per
// distinct consumer header, which need Envoy Gateway's rate limit service
// (docs/gateways.md says so). DryRun renders no rate limit at all.
func (b *builder) rateLimit(rl *apiwardenv1alpha1.RateLimit) *egv1a1.RateLimitSpec {
	out := &egv1a1.RateLimitSpec{}
	for _, l := range rl.Limits {
		rule := egv1a1.RateLimitRule{Limit: egv1a1.RateLimitValue{Requests: uint32(l.Requests), Unit: egv1a1.RateLimitUnit(l.Unit)}}
		if l.Burst != nil && *l.Burst > 0 {
			b.res.Notef("spec.rateLimit.limits["+string(l.By)+"].burst", "Envoy Gateway's rate limits have no burst allowance; requests are limited at the steady rate")
		}
		switch l.By {
		case apiwardenv1alpha1.RateLimitKeyGlobal:
			if out.Local == nil {
				out.Local = &egv1a1.LocalRateLimit{}
			}
			out.Local.Rules = append(out.Local.Rules, rule)
			b.res.Notef("spec.rateLimit.limits[Global]", "counted per Envoy replica (a local rate limit), so the total allowed is the limit times the number of replicas")
		case apiwardenv1alpha1.RateLimitKeyClientIP:
			rule.ClientSelectors = []egv1a1.RateLimitSelectCondition{{SourceCIDR: &egv1a1.SourceMatch{Type: ptr.To(egv1a1.SourceMatchDistinct), Value: "0.0.0.0/0"}}}
			v6 := *rule.DeepCopy()
			v6.ClientSelectors[0].SourceCIDR.Value = "::/0"
			if out.Global == nil {
				out.Global = &egv1a1.GlobalRateLimit{}
			}
			out.Global.Rules = append(out.Global.Rules, rule, v6)
		case apiwardenv1alpha1.RateLimitKeyConsumer:
			rule.ClientSelectors = []egv1a1.RateLimitSelectCondition{{Headers: []egv1a1.HeaderMatch{{Name: ConsumerHeader, Type: ptr.To(egv1a1.HeaderMatchDistinct)}}}}
			if out.Global == nil {
				out.Global = &egv1a1.GlobalRateLimit{}
			}
			out.Global.Rules = append(out.Global.Rules, rule)
		}
	}
	return out
}

// clientTrafficPolicy renders the listener settings of a Gateway target: the
// TLS minimum version and the response headers. On a route target they are
// reported, since they belong to the Gateway's listeners and apiwarden never
// edits the routes users own.
func (b *builder) clientTrafficPolicy() *egv1a1.ClientTrafficPolicy {
	s := b.in.Spec
	headers := render.ResponseHeaders(s)
	if b.dryRun && len(headers) > 0 && headers[0].Name == "Strict-Transport-Security" {
		// Browsers keep HSTS for max-age, even after the policy goes: it
		// blocks plain HTTP, so DryRun only reports it.
		b.res.WouldBlockf("browsers would refuse plain HTTP to this host for %s seconds", strings.TrimPrefix(strings.SplitN(headers[0].Value, ";", 2)[0], "max-age="))
		headers = headers[1:]
	}
	if !b.isGateway() {
		own := b.in.Policy.Spec
		if own.TLS != nil && own.TLS.MinVersion != "" {
			b.res.Notef("spec.tls.minVersion", "the TLS version is a property of the Gateway listener; put it in a policy that targets the Gateway")
		}
		if len(headers) > 0 && (own.Versioning != nil || (own.TLS != nil && own.TLS.HSTS != nil)) {
			b.res.Notef("spec.versioning", "response headers (HSTS, Deprecation, Sunset, Link) are rendered for Gateway targets only; on a route add a ResponseHeaderModifier filter with %s", headerList(headers))
		}
		return nil
	}
	var spec egv1a1.ClientTrafficPolicySpec
	used := false
	if s.TLS != nil && s.TLS.MinVersion != "" {
		if b.dryRun {
			b.res.WouldBlockf("clients offering only TLS below %s would fail the handshake", s.TLS.MinVersion)
		} else {
			spec.TLS = &egv1a1.ClientTLSSettings{TLSSettings: egv1a1.TLSSettings{MinVersion: ptr.To(egv1a1.TLSVersion(s.TLS.MinVersion))}}
			used = true
		}
	}
	if len(headers) > 0 {
		spec.Headers = &egv1a1.HeaderSettings{LateResponseHeaders: &egv1a1.HTTPHeaderFilter{Set: headers}}
		used = true
	}
	if a := s.Authentication; a != nil && a.MTLS != nil {
		if b.dryRun {
			b.res.WouldBlockf("clients without a certificate from issuer %s would fail the handshake", a.MTLS.IssuerRef.Name)
		} else if kind, name, ok := certmanager.TrustBundle(b.in.Policy, s); !ok {
			b.res.Notef("spec.authentication.mtls", "no trustBundleRef and no listed consumer whose certificate Secret carries the CA, so there is no CA to validate client certificates against; clients are not asked for certificates")
		} else {
			if spec.TLS == nil {
				spec.TLS = &egv1a1.ClientTLSSettings{}
			}
			spec.TLS.ClientValidation = &egv1a1.ClientValidationContext{
				CACertificateRefs: []gatewayv1.SecretObjectReference{{Kind: ptr.To(gatewayv1.Kind(kind)), Name: gatewayv1.ObjectName(name)}},
				// Only apiwarden consumers of this namespace: the URI SAN
				// its client certificates carry.
				SubjectAltNames: &egv1a1.SubjectAltNames{URIs: []egv1a1.StringMatch{{
					Type: ptr.To(egv1a1.StringMatchPrefix), Value: strings.TrimSuffix(identity.ConsumerURI(b.in.Policy.Namespace, "x"), "x"),
				}}},
			}
			if spec.Headers == nil {
				spec.Headers = &egv1a1.HeaderSettings{}
			}
			// The verified identity reaches the authz service and the
			// backend in x-forwarded-client-cert, replacing whatever the
			// client sent.
			spec.Headers.XForwardedClientCert = &egv1a1.XForwardedClientCert{
				Mode:             ptr.To(egv1a1.XFCCForwardModeSanitizeSet),
				CertDetailsToAdd: []egv1a1.XFCCCertData{egv1a1.XFCCCertDataURI, egv1a1.XFCCCertDataSubject},
			}
			used = true
		}
	}
	if !used {
		return nil
	}
	tm, om := b.meta(egv1a1.KindClientTrafficPolicy)
	spec.PolicyTargetReferences = b.targetRefs()
	return &egv1a1.ClientTrafficPolicy{TypeMeta: tm, ObjectMeta: om, Spec: spec}
}

func headerList(hs []gatewayv1.HTTPHeader) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = string(h.Name) + ": " + h.Value
	}
	return strings.Join(parts, ", ")
}
