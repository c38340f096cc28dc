package authz

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/keys"
)

// Code is the outcome of a check. Its String is the metric label.
type Code uint8

// The outcomes of a check.
const (
	// Allowed: the key is valid and the rules allow the request.
	Allowed Code = iota
	// NotReady: the service has not loaded its caches yet (503).
	NotReady
	// PolicyUnknown: the request names no APIPolicy the service knows, or
	// one that does not configure API keys (403: fail closed).
	PolicyUnknown
	// KeyMissing: no key in the policy's header (401).
	KeyMissing
	// KeyMalformed: the header holds something that is not an apiwarden key,
	// or several keys (401).
	KeyMalformed
	// KeyUnknown: a well-formed key that no referenced key set holds (401).
	KeyUnknown
	// KeyExpired: a key whose grace period has ended (401).
	KeyExpired
	// KeyInQuery: an API key in the query string (400).
	KeyInQuery
	// PathRejected: a path that is not in normal form, on a policy whose
	// rules match paths (400).
	PathRejected
	// Forbidden: a valid key whose consumer the rules do not allow (403).
	Forbidden
	// CertMissing: a policy that authenticates by client certificate, and
	// no verified apiwarden client certificate of the policy's namespace in
	// the gateway's x-forwarded-client-cert header (401).
	CertMissing

	numCodes
)

var codeNames = [numCodes]string{"allowed", "not_ready", "policy_unknown", "key_missing", "key_malformed", "key_unknown", "key_expired", "key_in_query", "path_rejected", "forbidden", "cert_missing"}

func (c Code) String() string {
	if c < numCodes {
		return codeNames[c]
	}
	return "unknown"
}

// Status is the HTTP status the gateway answers with.
func (c Code) Status() int {
	switch c {
	case Allowed:
		return http.StatusOK
	case NotReady:
		return http.StatusServiceUnavailable
	case KeyMissing, KeyMalformed, KeyUnknown, KeyExpired, CertMissing:
		return http.StatusUnauthorized
	case KeyInQuery, PathRejected:
		return http.StatusBadRequest
	default:
		return http.StatusForbidden
	}
}

// ConsumerHeader carries the authenticated consumer to the backend and to
// per-consumer rate limits; KeyIDHeader carries the key's fingerprint. Any
// value the client sent in them is overwritten.
const (
	ConsumerHeader = "X-Apiwarden-Consumer"
	KeyIDHeader    = "X-Apiwarden-Key-Id"
	// DryRunHeader is set on requests a DryRun policy would have refused; its
	// value is the outcome (e.g. key_missing).
	DryRunHeader = "X-Apiwarden-Dry-Run"
)

// Headers reads request headers. lower and canonical are the same name in
// lower case (HTTP/2, Envoy) and in canonical MIME form (net/http).
type Headers interface {
	// Get returns the first value and the number of values.
	Get(lower, canonical string) (first string, n int)
}

// Input is one request as a front end read it.
type Input struct {
	// Policy is "namespace/name" of the APIPolicy protecting the route.
	Policy string
	// Method is the request method; Path the request target, query included.
	Method, Path string
	// Headers are the request headers.
	Headers Headers
	// Client is the client address, for counting failed attempts.
	Client string
}

// Result is the outcome of a check.
type Result struct {
	Code Code
	// DryRun is the outcome a DryRun policy would have enforced (Code is then
	// Allowed).
	DryRun Code
	// Consumer and KeyID identify the key, when it was valid.
	Consumer, KeyID string
	// Rule is the authorization rule that decided, if any.
	Rule string

	policy *policy
	entry  *keyEntry
}

// allowUndecided applies the DryRun rule of both front ends: a rendered
// DryRun policy never blocks traffic, so when the service could not decide
// (undecided), the request is allowed and Result.DryRun keeps what it would
// have been answered.
func (r *Result) allowUndecided(dryRun, undecided bool) {
	if dryRun && undecided {
		r.DryRun, r.Code = r.Code, Allowed
	}
}

// KeyHeader is the header that carried the key, in canonical and lower-case
// form: the gateway removes it before the request goes upstream. Empty when
// the policy is unknown.
func (r *Result) KeyHeader() (canonical, lower string) {
	if r.policy == nil {
		return "", ""
	}
	return r.policy.headerCanonical, r.policy.headerLower
}

// Body is the JSON error body of a refusal: what the client must change, and
// nothing that would help an attacker (unknown and expired keys read alike).
func (r *Result) Body() string {
	if r.policy != nil {
		return r.policy.bodies[r.Code]
	}
	return defaultBodies[r.Code]
}

// WWWAuthenticate is the challenge sent with a 401.
func (r *Result) WWWAuthenticate() string {
	if r.policy != nil {
		return r.policy.challenge
	}
	return `APIKey realm="api"`
}

// policy is an APIPolicy compiled for checks.
type policy struct {
	key                          string
	dryRun                       bool
	apiKeys                      bool
	headerLower, headerCanonical string
	sets                         []string // "namespace/name" of referenced key sets
	// mtls: the policy authenticates by client certificate alone, read from
	// the gateway's XFCC header; namespace is the consumers' namespace.
	mtls         bool
	namespace    string
	rules        []rule
	defaultAllow bool
	hasRules     bool // authorization configured
	checkPath    bool
	challenge    string
	bodies       [numCodes]string
}

type rule struct {
	name      string
	allow     bool
	consumers []string
	roles     []string
	claims    bool // claims can only hold on a JWT; never on an API key
	methods   []string
	paths     []pathMatch
}

type pathMatch struct {
	exact bool
	value string
}

func compilePolicy(p *apiwardenv1alpha1.APIPolicy) *policy {
	c := &policy{key: p.Namespace + "/" + p.Name, namespace: p.Namespace, dryRun: p.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun}
	if a := p.Spec.Authentication; a != nil && a.MTLS != nil && a.APIKey == nil && a.JWT == nil {
		c.mtls = true
	}
	header := "X-API-Key"
	if a := p.Spec.Authentication; a != nil && a.APIKey != nil {
		c.apiKeys = true
		if a.APIKey.Header != "" {
			header = a.APIKey.Header
		}
		for _, r := range a.APIKey.KeySetRefs {
			c.sets = append(c.sets, p.Namespace+"/"+r.Name)
		}
	}
	c.headerLower, c.headerCanonical = strings.ToLower(header), textproto.CanonicalMIMEHeaderKey(header)
	if az := p.Spec.Authorization; az != nil {
		c.hasRules = true
		c.defaultAllow = az.DefaultAction == apiwardenv1alpha1.AuthorizationActionAllow
		for _, r := range az.Rules {
			cr := rule{name: r.Name, allow: r.Action == apiwardenv1alpha1.AuthorizationActionAllow, consumers: r.Consumers, roles: r.Roles, claims: len(r.Claims) > 0}
			for _, m := range r.Methods {
				cr.methods = append(cr.methods, string(m))
			}
			for _, pm := range r.Paths {
				v := pm.Value
				if pm.Type != apiwardenv1alpha1.PathMatchExact && len(v) > 1 {
					v = strings.TrimRight(v, "/")
					if v == "" {
						v = "/"
					}
				}
				cr.paths = append(cr.paths, pathMatch{exact: pm.Type == apiwardenv1alpha1.PathMatchExact, value: v})
				c.checkPath = true
			}
			c.rules = append(c.rules, cr)
		}
	}
	c.challenge = `APIKey realm="api", header="` + header + `"`
	c.bodies = renderBodies(header)
	return c
}

var defaultBodies = renderBodies("X-API-Key")

func renderBodies(header string) [numCodes]string {
	msg := [numCodes]string{
		NotReady:      "the authorization service is starting; retry shortly",
		PolicyUnknown: "access to this API is not configured",
		KeyMissing:    "an API key is required in the " + header + " header",
		KeyMalformed:  "the API key in the " + header + " header is malformed",
		KeyUnknown:    "the API key is not valid",
		KeyExpired:    "the API key is not valid",
		KeyInQuery:    "API keys must not be sent in the URL, where they are logged; send the key in the " + header + " header and replace it, as it may have leaked",
		PathRejected:  "the request path is not in normal form",
		Forbidden:     "this API key is not allowed to make this request",
		CertMissing:   "a client certificate issued to a consumer of this API is required",
	}
	errs := [numCodes]string{NotReady: "unavailable", PolicyUnknown: "forbidden", KeyMissing: "unauthorized", KeyMalformed: "unauthorized", KeyUnknown: "unauthorized", KeyExpired: "unauthorized", KeyInQuery: "bad_request", PathRejected: "bad_request", Forbidden: "forbidden", CertMissing: "unauthorized"}
	var out [numCodes]string
	for c := Code(1); c < numCodes; c++ {
		b, _ := json.Marshal(struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}{errs[c], msg[c]})
		out[c] = string(b) + "\n"
	}
	return out
}

// Check decides one request against the current snapshot.
func (s *Store) Check(in *Input, now time.Time) Result {
	r := s.check(in, now)
	if r.Code != Allowed && r.policy != nil && r.policy.dryRun {
		r.DryRun, r.Code = r.Code, Allowed
	}
	return r
}

func (s *Store) check(in *Input, now time.Time) Result {
	snap := s.cur.Load()
	if !s.synced.Load() || snap.hasher == nil {
		return Result{Code: NotReady}
	}
	p := snap.policies[in.Policy]
	if p == nil || (!p.apiKeys && !p.mtls) {
		return Result{Code: PolicyUnknown}
	}
	r := Result{policy: p}
	if p.mtls {
		return p.checkClientCert(in, r)
	}
	path, query, _ := strings.Cut(in.Path, "?")
	if query != "" && keyInQuery(query, p.headerLower) {
		r.Code = KeyInQuery
		return r
	}
	key, n := in.Headers.Get(p.headerLower, p.headerCanonical)
	switch {
	case n == 0 || key == "":
		r.Code = KeyMissing
		return r
	case n > 1:
		r.Code = KeyMalformed
		return r
	}
	if _, err := keys.Parse(key); err != nil {
		r.Code = KeyMalformed
		return r
	}
	h := snap.hasher.Hash(key)
	var e *keyEntry
	for _, name := range p.sets {
		if ks := snap.sets[name]; ks != nil {
			if found := ks.byHash[h]; found != nil && subtle.ConstantTimeCompare(found.hash[:], h[:]) == 1 {
				e = found
				break
			}
		}
	}
	if e == nil {
		r.Code = KeyUnknown
		return r
	}
	r.Consumer, r.KeyID, r.entry = e.consumer, e.id, e
	if e.notAfter != 0 && now.UnixNano() >= e.notAfter {
		r.Code = KeyExpired
		return r
	}
	if p.checkPath && !normalPath(path) {
		r.Code = PathRejected
		return r
	}
	if p.hasRules {
		allow, rule := p.authorize(e.consumer, e.roles, in.Method, path)
		r.Rule = rule
		if !allow {
			r.Code = Forbidden
			return r
		}
	}
	e.usage.uses.Add(1)
	if sec := now.Unix(); e.usage.lastUsed.Load() != sec {
		e.usage.lastUsed.Store(sec)
	}
	return r
}

// checkClientCert decides a request under a policy that authenticates by
// client certificate: the gateway verified the certificate and forwarded its
// URI SAN in XFCC; the consumer is the name in it, and authorization rules
// apply to it as to an API-key consumer (with no roles).
func (p *policy) checkClientCert(in *Input, r Result) Result {
	v, n := in.Headers.Get(XFCCHeader, "X-Forwarded-Client-Cert")
	consumer, ok := "", false
	if n == 1 {
		consumer, ok = xfccConsumer(v, p.namespace)
	}
	if !ok {
		r.Code = CertMissing
		return r
	}
	r.Consumer = consumer
	path, _, _ := strings.Cut(in.Path, "?")
	if p.checkPath && !normalPath(path) {
		r.Code = PathRejected
		return r
	}
	if p.hasRules {
		allow, rule := p.authorize(consumer, nil, in.Method, path)
		r.Rule = rule
		if !allow {
			r.Code = Forbidden
		}
	}
	return r
}

// authorize applies the rules in order; the first that matches decides.
func (p *policy) authorize(consumer string, roles []string, method, path string) (bool, string) {
	for i := range p.rules {
		r := &p.rules[i]
		if r.matches(consumer, roles, method, path) {
			return r.allow, r.name
		}
	}
	return p.defaultAllow, ""
}

func (r *rule) matches(consumer string, roles []string, method, path string) bool {
	if r.claims {
		return false
	}
	if len(r.consumers) > 0 && !contains(r.consumers, consumer) {
		return false
	}
	if len(r.roles) > 0 {
		found := false
		for _, role := range roles {
			if contains(r.roles, role) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(r.methods) > 0 && !contains(r.methods, method) {
		return false
	}
	if len(r.paths) > 0 {
		for _, m := range r.paths {
			if m.match(path) {
				return true
			}
		}
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// match compares a path, as Gateway API does: Exact is byte for byte;
// PathPrefix matches whole '/'-separated segments.
func (m pathMatch) match(path string) bool {
	if m.exact {
		return path == m.value
	}
	if m.value == "/" {
		return true
	}
	return strings.HasPrefix(path, m.value) && (len(path) == len(m.value) || path[len(m.value)] == '/')
}

// keyParamNames are query parameters that carry API keys by convention.
var keyParamNames = []string{"api_key", "apikey", "api-key"}

// keyInQuery reports whether the query string carries an API key: a
// parameter named like the key header or like an API key by convention, or
// any value that is a well-formed apiwarden key.
func keyInQuery(q, headerLower string) bool {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		name, val, _ := strings.Cut(kv, "=")
		if val == "" {
			continue
		}
		if strings.EqualFold(name, headerLower) {
			return true
		}
		for _, n := range keyParamNames {
			if strings.EqualFold(name, n) {
				return true
			}
		}
		if len(val) <= keys.MaxKeyLen {
			if _, err := keys.Parse(val); err == nil {
				return true
			}
		}
	}
	return false
}

// normalPath reports whether a path is in the normal form that path rules
// can be matched against safely: absolute, no empty, "." or ".." segments,
// no backslash or control characters, and no percent-encoding of a
// character that has a plain form (unreserved characters, '/', '\', NUL),
// which a backend would decode into a path the rules did not see.
func normalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	seg := 0 // start of the current segment
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if i > 0 {
				s := p[seg:i]
				if (s == "" && i < len(p)) || s == "." || s == ".." {
					return false
				}
			}
			seg = i + 1
			continue
		}
		c := p[i]
		switch {
		case c < 0x20 || c == 0x7f || c == '\\' || c == '#':
			return false
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return false
			}
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			if isUnreserved(d) || d == '/' || d == '\\' || d == 0 {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func isUnreserved(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~'
}
