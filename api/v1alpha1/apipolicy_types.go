package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyMode says whether a policy blocks traffic.
// +kubebuilder:validation:Enum=Enforce;DryRun
type PolicyMode string

const (
	// PolicyModeEnforce renders every protection into the gateway.
	PolicyModeEnforce PolicyMode = "Enforce"
	// PolicyModeDryRun renders nothing that blocks traffic and reports what
	// would be blocked. A DryRun policy never satisfies an APIBaseline.
	PolicyModeDryRun PolicyMode = "DryRun"
)

// Feature is an on/off switch, spelled as an enum so it can grow new values.
// +kubebuilder:validation:Enum=Enabled;Disabled
type Feature string

const (
	// FeatureEnabled turns a feature on.
	FeatureEnabled Feature = "Enabled"
	// FeatureDisabled turns a feature off.
	FeatureDisabled Feature = "Disabled"
)

// PolicyTargetReference names an object an APIPolicy attaches to, in the
// policy's own namespace (Gateway API policy attachment, GEP-713).
// +kubebuilder:validation:XValidation:rule="(self.group == 'gateway.networking.k8s.io' && self.kind in ['HTTPRoute', 'GRPCRoute', 'Gateway']) || (self.group == 'networking.k8s.io' && self.kind == 'Ingress') || (size(self.group) == 0 && self.kind == 'Service')",message="kind must be HTTPRoute, GRPCRoute or Gateway in group gateway.networking.k8s.io, Ingress in group networking.k8s.io, or Service in the core group \"\""
// +kubebuilder:validation:XValidation:rule="!has(self.sectionName) || self.kind in ['Gateway', 'Service']",message="sectionName applies only to a Gateway (a listener name) or a Service (a port name)"
type PolicyTargetReference struct {
	// group is the API group of the target: "gateway.networking.k8s.io" for
	// HTTPRoute, GRPCRoute and Gateway, "networking.k8s.io" for Ingress, and
	// "" (the core group) for Service.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Enum="";gateway.networking.k8s.io;networking.k8s.io
	Group string `json:"group"`

	// kind is the kind of the target: HTTPRoute, GRPCRoute, Gateway, Ingress or Service.
	// +required
	// +kubebuilder:validation:Enum=HTTPRoute;GRPCRoute;Gateway;Ingress;Service
	Kind string `json:"kind"`

	// name is the name of the target, in the namespace of the policy.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// sectionName narrows the target to one listener of a Gateway or one named
	// port of a Service. When omitted the policy applies to the whole target.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SectionName *string `json:"sectionName,omitempty"`
}

// TLSPolicy says how clients must connect.
type TLSPolicy struct {
	// minVersion is the lowest TLS version the gateway accepts from clients.
	// +optional
	// +kubebuilder:default="1.2"
	MinVersion TLSVersion `json:"minVersion,omitempty"`

	// httpRedirect, when Enabled, answers plain-HTTP requests with a 301
	// redirect to HTTPS instead of serving them. An HTTP listener is allowed
	// by an APIBaseline only when the policy covering it enables this.
	// +optional
	// +kubebuilder:default=Enabled
	HTTPRedirect Feature `json:"httpRedirect,omitempty"`

	// hsts adds a Strict-Transport-Security header to every response.
	// Omit it to send no such header.
	// +optional
	HSTS *HSTS `json:"hsts,omitempty"`
}

// HSTS configures the Strict-Transport-Security response header (RFC 6797).
// +kubebuilder:validation:XValidation:rule="self.preload != 'Enabled' || (self.maxAgeSeconds >= 31536000 && self.includeSubDomains == 'Enabled')",message="preload requires maxAgeSeconds of at least 31536000 (one year) and includeSubDomains Enabled, as browsers' preload lists demand"
type HSTS struct {
	// maxAgeSeconds is how long browsers remember to use HTTPS only.
	// +optional
	// +kubebuilder:default=31536000
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=63072000
	MaxAgeSeconds int64 `json:"maxAgeSeconds,omitempty"`

	// includeSubDomains extends the rule to every subdomain of the host.
	// +optional
	// +kubebuilder:default=Disabled
	IncludeSubDomains Feature `json:"includeSubDomains,omitempty"`

	// preload adds the "preload" directive, for hosts submitted to browsers'
	// HSTS preload lists.
	// +optional
	// +kubebuilder:default=Disabled
	Preload Feature `json:"preload,omitempty"`
}

// Authentication lists the ways a client may prove who it is. A request is
// authenticated when it satisfies any one of the configured methods.
// +kubebuilder:validation:XValidation:rule="has(self.apiKey) || has(self.jwt) || has(self.mtls)",message="authentication must configure at least one of apiKey, jwt or mtls"
type Authentication struct {
	// apiKey accepts keys issued by APIKeySets, sent in a request header.
	// +optional
	APIKey *APIKeyAuthentication `json:"apiKey,omitempty"`

	// jwt accepts bearer JSON Web Tokens from the listed providers.
	// +optional
	JWT *JWTAuthentication `json:"jwt,omitempty"`

	// mtls accepts clients that present a certificate issued through cert-manager.
	// +optional
	MTLS *MTLSAuthentication `json:"mtls,omitempty"`
}

// APIKeyAuthentication accepts API keys from APIKeySets. Keys are read from a
// request header only: a key in the query string is rejected, because URLs end
// up in logs, browser history and Referer headers.
type APIKeyAuthentication struct {
	// keySetRefs names the APIKeySets, in the policy's namespace, whose keys
	// are accepted.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	KeySetRefs []LocalObjectReference `json:"keySetRefs"`

	// header is the request header that carries the key. apiwarden's authz
	// service removes it before the request reaches the backend.
	// +optional
	// +kubebuilder:default="X-API-Key"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'cookie'])",message="header must not be a hop-by-hop or framing header such as Host, Content-Length, Transfer-Encoding, Connection or Cookie"
	Header string `json:"header,omitempty"`
}

// JWTAuthentication accepts bearer tokens from OIDC/OAuth2 providers.
type JWTAuthentication struct {
	// providers lists the token issuers that are trusted.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Providers []JWTProvider `json:"providers"`
}

// JWTProvider is one trusted token issuer.
type JWTProvider struct {
	// name identifies the provider within the policy.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// issuer is the expected "iss" claim, normally the provider's HTTPS URL.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Issuer string `json:"issuer"`

	// jwksURI is the HTTPS URL of the provider's JSON Web Key Set.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https'",message="jwksURI must be an https:// URL"
	JWKSURI string `json:"jwksURI"`

	// audiences lists the accepted "aud" values. When empty the audience is
	// not checked, which is safe only when the issuer serves this API alone.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Audiences []string `json:"audiences,omitempty"`

	// requiredClaims must all hold for a token to be accepted.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	RequiredClaims []ClaimRequirement `json:"requiredClaims,omitempty"`

	// consumerClaim is the claim whose value identifies the consumer, for
	// authorization rules and per-consumer rate limits.
	// +optional
	// +kubebuilder:default=sub
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_:/.-]+$`
	ConsumerClaim string `json:"consumerClaim,omitempty"`
}

// MTLSAuthentication accepts clients whose certificate was issued by a
// cert-manager issuer. apiwarden asks cert-manager for the client
// certificates of the listed consumers (usage "client auth", private key
// rotated at every renewal) and has the gateway validate client certificates
// against the issuer's CA. A client's identity is its consumer name, carried
// in a URI SAN "spiffe://apiwarden.io/ns/<namespace>/consumer/<name>", so
// authorization rules name mTLS consumers as they name API-key consumers.
type MTLSAuthentication struct {
	// issuerRef is the cert-manager Issuer or ClusterIssuer that signs client
	// certificates; its CA is the trust anchor the gateway validates against.
	// +required
	IssuerRef IssuerReference `json:"issuerRef"`

	// trustBundleRef names a ConfigMap or Secret, in the policy's namespace,
	// whose key "ca.crt" holds the CA certificates the gateway trusts for
	// client certificates. When omitted, the gateway trusts the "ca.crt" that
	// cert-manager writes into the Secret of the first client certificate,
	// which is the issuer's CA for CA and Vault issuers.
	// +optional
	TrustBundleRef *TrustBundleReference `json:"trustBundleRef,omitempty"`

	// clients says which consumers get a client certificate.
	// +optional
	Clients *MTLSClients `json:"clients,omitempty"`

	// server, when set on a policy that targets a Gateway, has cert-manager
	// issue the server certificate of each of its HTTPS listeners into the
	// Secret the listener's first certificateRef names, for the listener's
	// hostname. The Gateway itself is not changed.
	// +optional
	Server *MTLSServer `json:"server,omitempty"`
}

// MTLSServer asks for the server certificates of a Gateway's listeners.
// +kubebuilder:validation:XValidation:rule="!has(self.duration) || !has(self.renewBefore) || duration(self.renewBefore) < duration(self.duration)",message="renewBefore must be shorter than duration"
type MTLSServer struct {
	// issuerRef signs the server certificates; it defaults to the mtls
	// issuerRef, so that clients and the server share one CA.
	// +optional
	IssuerRef *IssuerReference `json:"issuerRef,omitempty"`

	// duration is the lifetime of a server certificate.
	// +optional
	// +kubebuilder:default="2160h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="duration must be at least 1h"
	Duration *metav1.Duration `json:"duration,omitempty"`

	// renewBefore is how long before expiry cert-manager renews it.
	// +optional
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5m')",message="renewBefore must be at least 5m"
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// TrustBundleReference names a ConfigMap or Secret holding CA certificates
// under the key "ca.crt" (what trust-manager and cert-manager write).
type TrustBundleReference struct {
	// kind is ConfigMap or Secret.
	// +optional
	// +kubebuilder:default=ConfigMap
	// +kubebuilder:validation:Enum=ConfigMap;Secret
	Kind string `json:"kind,omitempty"`

	// name of the ConfigMap or Secret, in the policy's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// MTLSClients lists the consumers that get a client certificate, and how
// long their certificates last.
// +kubebuilder:validation:XValidation:rule="!has(self.duration) || !has(self.renewBefore) || duration(self.renewBefore) < duration(self.duration)",message="renewBefore must be shorter than duration"
// +kubebuilder:validation:XValidation:rule="(has(self.consumers) && size(self.consumers) > 0) || (has(self.fromKeySets) && self.fromKeySets == 'Enabled')",message="list consumers, or enable fromKeySets"
type MTLSClients struct {
	// consumers are the consumer names that get a client certificate. Each
	// certificate is a cert-manager Certificate "<policy>-<consumer>-client"
	// in the policy's namespace, whose Secret (of the same name) the
	// consumer's workload mounts.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Consumers []string `json:"consumers,omitempty"`

	// fromKeySets, when Enabled, also gives a client certificate to every
	// consumer of the APIKeySets named in authentication.apiKey.keySetRefs,
	// and follows their consumer lists.
	// +optional
	// +kubebuilder:default=Disabled
	FromKeySets Feature `json:"fromKeySets,omitempty"`

	// duration is the lifetime of a client certificate.
	// +optional
	// +kubebuilder:default="2160h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="duration must be at least 1h"
	Duration *metav1.Duration `json:"duration,omitempty"`

	// renewBefore is how long before expiry cert-manager renews a client
	// certificate (with a new private key). It must be shorter than duration.
	// +optional
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5m')",message="renewBefore must be at least 5m"
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// IssuerReference names a cert-manager issuer.
type IssuerReference struct {
	// name is the issuer's name. An Issuer is looked up in the policy's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// kind is Issuer (namespaced) or ClusterIssuer.
	// +optional
	// +kubebuilder:default=Issuer
	// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
	Kind string `json:"kind,omitempty"`

	// group is the issuer's API group; cert-manager.io unless an external
	// issuer is used.
	// +optional
	// +kubebuilder:default=cert-manager.io
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`
}

// AuthorizationAction is what happens to a request that a rule matches.
// +kubebuilder:validation:Enum=Allow;Deny
type AuthorizationAction string

const (
	// AuthorizationActionAllow lets the request through.
	AuthorizationActionAllow AuthorizationAction = "Allow"
	// AuthorizationActionDeny answers 403.
	AuthorizationActionDeny AuthorizationAction = "Deny"
)

// Authorization decides, after authentication, which consumer may do what.
type Authorization struct {
	// defaultAction applies to authenticated requests that no rule matches.
	// +optional
	// +kubebuilder:default=Deny
	DefaultAction AuthorizationAction `json:"defaultAction,omitempty"`

	// rules are evaluated in order; the first rule that matches decides.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Rules []AuthorizationRule `json:"rules,omitempty"`
}

// AuthorizationRule matches requests by who sends them and what they ask for.
// Every non-empty field must match; an empty field matches everything.
type AuthorizationRule struct {
	// name identifies the rule in status and logs.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// action is applied when the rule matches.
	// +required
	Action AuthorizationAction `json:"action"`

	// consumers lists consumer names (from APIKeySets, JWT consumer claims or
	// client certificates); the rule matches any of them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Consumers []string `json:"consumers,omitempty"`

	// roles lists consumer roles; the rule matches a consumer holding any of them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	Roles []string `json:"roles,omitempty"`

	// claims must all hold on the request's JWT.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Claims []ClaimRequirement `json:"claims,omitempty"`

	// methods lists the HTTP methods the rule matches.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=9
	Methods []HTTPMethod `json:"methods,omitempty"`

	// paths lists the request paths the rule matches.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Paths []PathMatch `json:"paths,omitempty"`
}

// PathMatchType says how a path is compared.
// +kubebuilder:validation:Enum=Exact;PathPrefix
type PathMatchType string

const (
	// PathMatchExact matches the path exactly.
	PathMatchExact PathMatchType = "Exact"
	// PathMatchPathPrefix matches the path and everything below it, by
	// '/'-separated segments, as Gateway API's PathPrefix does.
	PathMatchPathPrefix PathMatchType = "PathPrefix"
)

// PathMatch matches a request path.
type PathMatch struct {
	// type is Exact or PathPrefix.
	// +optional
	// +kubebuilder:default=PathPrefix
	Type PathMatchType `json:"type,omitempty"`

	// value is the path, starting with '/'.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[^?#\s]*$`
	Value string `json:"value"`
}

// RateLimitKey says what a rate limit counts requests by.
// +kubebuilder:validation:Enum=Global;ClientIP;Consumer
type RateLimitKey string

const (
	// RateLimitKeyGlobal shares one budget between all clients.
	RateLimitKeyGlobal RateLimitKey = "Global"
	// RateLimitKeyClientIP gives each client IP address its own budget.
	RateLimitKeyClientIP RateLimitKey = "ClientIP"
	// RateLimitKeyConsumer gives each authenticated consumer its own budget.
	RateLimitKeyConsumer RateLimitKey = "Consumer"
)

// RateLimit limits how many requests reach the API. Requests over a limit are
// answered with HTTP 429 and a Retry-After header.
type RateLimit struct {
	// limits all apply; a request must fit within every one of them.
	// +required
	// +listType=map
	// +listMapKey=by
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	Limits []RateLimitRule `json:"limits"`
}

// RateLimitRule is one request budget.
// +kubebuilder:validation:XValidation:rule="!has(self.burst) || self.burst <= self.requests * 10",message="burst must not exceed ten times requests"
type RateLimitRule struct {
	// by says what requests are counted by: Global, ClientIP or Consumer.
	// Consumer requires authentication, which supplies the consumer identity.
	// +required
	By RateLimitKey `json:"by"`

	// requests is the number of requests allowed per unit. It must be at least 1.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Requests int32 `json:"requests"`

	// unit is the period the request count applies to.
	// +required
	Unit RateLimitUnit `json:"unit"`

	// burst is the number of requests allowed above the rate in a short spike,
	// where the gateway supports token buckets.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Burst *int32 `json:"burst,omitempty"`
}

// Rate returns the rule's request rate.
func (r RateLimitRule) Rate() RequestRate {
	return RequestRate{Requests: r.Requests, Unit: r.Unit}
}

// RequestLimits bounds what a request may carry.
type RequestLimits struct {
	// maxBodyBytes is the largest request body accepted; larger bodies are
	// answered with HTTP 413.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1073741824
	MaxBodyBytes *int64 `json:"maxBodyBytes,omitempty"`

	// allowedMethods lists the HTTP methods accepted; others are answered with
	// HTTP 405. When empty every method is accepted.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=9
	AllowedMethods []HTTPMethod `json:"allowedMethods,omitempty"`
}

// CORS configures cross-origin resource sharing for browsers.
// +kubebuilder:validation:XValidation:rule="!(has(self.allowCredentials) && self.allowCredentials) || !self.allowOrigins.exists(o, o.contains('*'))",message="allowCredentials must not be combined with a wildcard origin: name each trusted origin"
type CORS struct {
	// allowOrigins lists the origins allowed to call the API, such as
	// "https://app.example.com". "*" allows any origin, and "https://*.example.com"
	// any subdomain.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*|https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?)$`
	AllowOrigins []string `json:"allowOrigins"`

	// allowMethods lists the methods allowed in cross-origin requests.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=9
	AllowMethods []HTTPMethod `json:"allowMethods,omitempty"`

	// allowHeaders lists the request headers allowed in cross-origin requests.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	AllowHeaders []string `json:"allowHeaders,omitempty"`

	// exposeHeaders lists the response headers browsers may read.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	ExposeHeaders []string `json:"exposeHeaders,omitempty"`

	// maxAgeSeconds is how long browsers may cache a preflight answer.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	MaxAgeSeconds *int32 `json:"maxAgeSeconds,omitempty"`

	// allowCredentials lets browsers send cookies and HTTP authentication in
	// cross-origin requests. It is a boolean because it maps one-to-one onto
	// the Access-Control-Allow-Credentials header, as in Gateway API. It cannot
	// be combined with a wildcard origin.
	// +optional
	AllowCredentials *bool `json:"allowCredentials,omitempty"`
}

// Versioning announces the lifecycle of an API version to clients.
// +kubebuilder:validation:XValidation:rule="!has(self.deprecation) || !has(self.sunset) || self.sunset > self.deprecation",message="sunset must be later than deprecation"
type Versioning struct {
	// deprecation is when the API version was or will be deprecated; it is
	// sent as the Deprecation response header (RFC 9745).
	// +optional
	Deprecation *metav1.Time `json:"deprecation,omitempty"`

	// sunset is when the API version stops answering; it is sent as the
	// Sunset response header (RFC 8594).
	// +optional
	Sunset *metav1.Time `json:"sunset,omitempty"`

	// link is an https:// URL documenting the migration, sent in a Link
	// header with rel="deprecation".
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https'",message="link must be an https:// URL"
	Link string `json:"link,omitempty"`
}

// APIPolicySpec says how the targeted APIs are protected.
// +kubebuilder:validation:XValidation:rule="!has(self.rateLimit) || !self.rateLimit.limits.exists(l, l.by == 'Consumer') || has(self.authentication)",message="a rate limit by Consumer requires authentication, which identifies the consumer"
// +kubebuilder:validation:XValidation:rule="!has(self.authorization) || has(self.authentication)",message="authorization requires authentication, which identifies the consumer"
type APIPolicySpec struct {
	// targetRefs lists the objects this policy protects, in the policy's
	// namespace: HTTPRoutes, GRPCRoutes, Gateways, Ingresses or Services.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.exists_one(b, a.group == b.group && a.kind == b.kind && a.name == b.name && (has(a.sectionName) ? (has(b.sectionName) && a.sectionName == b.sectionName) : !has(b.sectionName))))",message="targetRefs must not name the same target twice"
	TargetRefs []PolicyTargetReference `json:"targetRefs"`

	// mode is Enforce (render every protection) or DryRun (render nothing that
	// blocks traffic and report what would be blocked). A DryRun policy does
	// not satisfy an APIBaseline.
	// +optional
	// +kubebuilder:default=Enforce
	Mode PolicyMode `json:"mode,omitempty"`

	// tls says how clients must connect.
	// +optional
	TLS *TLSPolicy `json:"tls,omitempty"`

	// authentication says how clients prove who they are.
	// +optional
	Authentication *Authentication `json:"authentication,omitempty"`

	// authorization says which authenticated consumers may do what.
	// +optional
	Authorization *Authorization `json:"authorization,omitempty"`

	// rateLimit limits how many requests reach the API.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// request bounds request bodies and methods.
	// +optional
	Request *RequestLimits `json:"request,omitempty"`

	// cors configures cross-origin access from browsers.
	// +optional
	CORS *CORS `json:"cors,omitempty"`

	// versioning announces deprecation and sunset of this API version.
	// +optional
	Versioning *Versioning `json:"versioning,omitempty"`
}

// RenderedObject names an object apiwarden created for a policy. An entry
// naming the target itself (an Ingress, with --gateway=traefik) means
// apiwarden set the gateway's annotations on it; they are removed with the
// policy, and the target is never deleted.
type RenderedObject struct {
	// apiVersion of the rendered object.
	// +required
	// +kubebuilder:validation:MaxLength=316
	APIVersion string `json:"apiVersion"`

	// kind of the rendered object.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`

	// name of the rendered object, in the policy's namespace.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// PolicyTargetStatus is the outcome of a policy for one target.
type PolicyTargetStatus struct {
	// targetRef is the target this entry describes.
	// +required
	TargetRef PolicyTargetReference `json:"targetRef"`

	// conditions describe the policy's state on this target.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// rendered lists the objects apiwarden applied for this target.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Rendered []RenderedObject `json:"rendered,omitempty"`
}

// APIPolicyStatus is the observed state of an APIPolicy.
type APIPolicyStatus struct {
	// observedGeneration is the metadata.generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions are Accepted (the spec is valid, its targets exist and it
	// does not conflict) and Enforced (the gateway is programmed with it).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// targets holds the outcome for each targetRef.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Targets []PolicyTargetStatus `json:"targets,omitempty"`

	// certificates lists the client and server certificates of
	// spec.authentication.mtls, as cert-manager reports them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1016
	Certificates []CertificateStatus `json:"certificates,omitempty"`
}

// CertificateUsage says what a certificate is for.
// +kubebuilder:validation:Enum=Client;Server
type CertificateUsage string

const (
	// CertificateUsageClient identifies a consumer to the gateway.
	CertificateUsageClient CertificateUsage = "Client"
	// CertificateUsageServer identifies a Gateway listener to clients.
	CertificateUsageServer CertificateUsage = "Server"
)

// CertificateStatus is the state of one certificate.
type CertificateStatus struct {
	// name of the cert-manager Certificate in the policy's namespace.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// usage is Client or Server.
	// +required
	Usage CertificateUsage `json:"usage"`

	// consumer a client certificate identifies.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Consumer string `json:"consumer,omitempty"`

	// listener a server certificate serves, as "<gateway>/<listener>".
	// +optional
	// +kubebuilder:validation:MaxLength=317
	Listener string `json:"listener,omitempty"`

	// namespace of the Certificate and its Secret, when not the policy's: a
	// consumer of an APIKeySet whose credentials are delivered to another
	// namespace gets its client certificate there.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// secretName is the Secret holding the key pair.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName,omitempty"`

	// ready is the Certificate's Ready condition: True, False or Unknown.
	// +required
	// +kubebuilder:validation:Enum=True;False;Unknown
	Ready metav1.ConditionStatus `json:"ready"`

	// reason is the reason of the Certificate's Ready condition, when not True.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Reason string `json:"reason,omitempty"`

	// notAfter is when the current certificate expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`

	// renewalTime is when cert-manager will renew it (with a new key).
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`
}

// APIPolicy says how one API is protected: TLS, authentication,
// authorization, rate limits, request limits, CORS and versioning. apiwarden
// renders it into the configuration of the gateway that serves the targets.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=apol,categories=apiwarden
// +kubebuilder:printcolumn:name="Targets",type=string,JSONPath=`.spec.targetRefs[*].name`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Enforced",type=string,JSONPath=`.status.conditions[?(@.type=="Enforced")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type APIPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired protection.
	// +required
	Spec APIPolicySpec `json:"spec"`

	// status is the observed state, written by apiwarden.
	// +optional
	Status APIPolicyStatus `json:"status,omitempty"`
}

// APIPolicyList is a list of APIPolicies.
// +kubebuilder:object:root=true
type APIPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the APIPolicies.
	Items []APIPolicy `json:"items"`
}
