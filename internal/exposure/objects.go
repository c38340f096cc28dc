package exposure

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// API groups of the kinds apiwarden governs.
const (
	GroupGateway    = "gateway.networking.k8s.io"
	GroupNetworking = "networking.k8s.io"
	GroupCore       = ""
)

// finding is a failed requirement of the object itself, before baselines
// and exemptions are applied.
type finding struct {
	code    Code
	control apiwardenv1alpha1.Control
	field   string
	message string
	hint    string
}

// analysis is what an object exposes and through which scopes it must be
// protected.
type analysis struct {
	kind, namespace, name string
	labels                map[string]string
	exposed               bool
	// findings are failures that do not depend on a baseline's settings
	// (plain HTTP, keys in URLs); they count when the baseline requires
	// their control.
	findings []finding
	// apiScopes must each have authentication, rate limits, and the other
	// API protections the baseline requires.
	apiScopes []scope
	// tlsScopes are checked against the baseline's minimum TLS version.
	tlsScopes []scope
}

func (a *analysis) ref() string { return a.kind + " " + a.namespace + "/" + a.name }

// credentialParams are query parameter names that carry credentials.
var credentialParams = map[string]bool{
	"api_key": true, "apikey": true, "api-key": true, "x-api-key": true, "key": true,
	"token": true, "access_token": true, "auth": true, "authorization": true, "secret": true,
}

func analyzeIngress(in *networkingv1.Ingress) *analysis {
	a := &analysis{kind: "Ingress", namespace: in.Namespace, name: in.Name, labels: in.Labels, exposed: true}
	self := TargetKey{Group: GroupNetworking, Kind: "Ingress", Namespace: in.Namespace, Name: in.Name}

	// TLS: every rule host must be covered by a spec.tls entry. A rule (or
	// default backend) without a host answers on every host; only a TLS entry
	// without hosts (the controller's default certificate) covers it.
	defaultCert := false
	for _, t := range in.Spec.TLS {
		if len(t.Hosts) == 0 {
			defaultCert = true
		}
	}
	covered := newTLSHostSet(in.Spec.TLS)
	defer covered.release()
	var seen map[string]bool
	if len(in.Spec.Rules) > manyRules {
		seen = make(map[string]bool)
	}
	for i, r := range in.Spec.Rules {
		if r.Host == "" {
			if !defaultCert && !hostSeen(in.Spec.Rules[:i], "", seen) {
				a.findings = append(a.findings, finding{
					code: CodeTLSMissing, control: apiwardenv1alpha1.ControlTLS, field: fmt.Sprintf("spec.rules[%d]", i),
					message: fmt.Sprintf("%s exposes a rule without a host, which answers on every host, without TLS: spec.tls has no entry without hosts for it.", a.ref()),
					hint:    "Set a host on the rule and add it to spec.tls, or add a spec.tls entry without hosts (the controller's default certificate),",
				})
			}
			continue
		}
		// Duplicates are looked for only among uncovered hosts, so the
		// common, compliant case costs no extra work.
		if !covered.covers(r.Host) && !hostSeen(in.Spec.Rules[:i], r.Host, seen) {
			a.findings = append(a.findings, finding{
				code: CodeTLSMissing, control: apiwardenv1alpha1.ControlTLS, field: fmt.Sprintf("spec.rules[%d].host", i),
				message: fmt.Sprintf("%s exposes host %s without TLS: spec.tls has no entry for it.", a.ref(), r.Host),
				hint:    "Add a TLS entry,",
			})
		}
	}
	// A default backend answers every request no rule matches, for any
	// host, rules or not.
	if in.Spec.DefaultBackend != nil && !defaultCert {
		a.findings = append(a.findings, finding{
			code: CodeTLSMissing, control: apiwardenv1alpha1.ControlTLS, field: "spec.defaultBackend",
			message: fmt.Sprintf("%s exposes its default backend on every host without TLS: spec.tls has no entry without hosts.", a.ref()),
			hint:    "Add rules with hosts and matching spec.tls entries, or a spec.tls entry without hosts,",
		})
	}

	// Protection: the Ingress's own policy, else the backend Service's.
	backends := ingressBackends(in)
	if len(backends) == 0 {
		sc := scope{levels: []level{{key: self}}, field: "spec"}
		a.apiScopes, a.tlsScopes = []scope{sc}, []scope{sc}
		return a
	}
	for _, b := range backends {
		field := "spec.defaultBackend.service.name"
		if b.rule >= 0 {
			field = "spec.rules[" + strconv.Itoa(b.rule) + "].http.paths[" + strconv.Itoa(b.path) + "].backend.service.name"
		}
		sc := scope{
			levels: []level{{key: self}, {key: TargetKey{Group: GroupCore, Kind: "Service", Namespace: in.Namespace, Name: b.name}}},
			field:  field,
		}
		if len(backends) > 1 {
			sc.via = "for backend Service " + b.name
		}
		a.apiScopes = append(a.apiScopes, sc)
		a.tlsScopes = append(a.tlsScopes, sc)
	}
	return a
}

// backend is one distinct backend Service of an Ingress and where it is
// first named (rule and path -1 for the default backend).
type backend struct {
	name       string
	rule, path int
}

// ingressBackends lists an Ingress's distinct backend Services in order.
func ingressBackends(in *networkingv1.Ingress) []backend {
	var backends []backend
	var seen map[string]bool
	if len(in.Spec.Rules) > manyRules {
		seen = make(map[string]bool)
	}
	add := func(b *networkingv1.IngressBackend, rule, path int) {
		if b == nil || b.Service == nil || b.Service.Name == "" {
			return
		}
		if seen != nil {
			if seen[b.Service.Name] {
				return
			}
			seen[b.Service.Name] = true
		} else {
			for _, x := range backends {
				if x.name == b.Service.Name {
					return
				}
			}
		}
		backends = append(backends, backend{name: b.Service.Name, rule: rule, path: path})
	}
	add(in.Spec.DefaultBackend, -1, -1)
	for i, r := range in.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for j := range r.HTTP.Paths {
			add(&r.HTTP.Paths[j].Backend, i, j)
		}
	}
	return backends
}

// IngressBackendServices returns the names of an Ingress's backend Services:
// the Services whose APIPolicies protect it. Indexes must use this, so that
// they find exactly what the engine looks at.
func IngressBackendServices(in *networkingv1.Ingress) []string {
	bs := ingressBackends(in)
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.name
	}
	return out
}

// RouteParentGateways returns the Gateways a route attaches to: the targets
// whose APIPolicies protect it besides the route's own. Indexes must use
// this, so that they find exactly what the engine looks at.
func RouteParentGateways(namespace string, refs []gatewayv1.ParentReference) []TargetKey {
	ps := routeParents(namespace, refs)
	out := make([]TargetKey, len(ps))
	for i, p := range ps {
		out[i] = p.key
	}
	return out
}

// hostSeen reports whether an earlier rule has the same host. It is called
// only for hosts that fail, so the scan stays off the compliant path; seen
// bounds the cost on hostile inputs with thousands of failing rules.
func hostSeen(earlier []networkingv1.IngressRule, host string, seen map[string]bool) bool {
	if seen != nil {
		if seen[host] {
			return true
		}
		seen[host] = true
		return false
	}
	for _, r := range earlier {
		if r.Host == host {
			return true
		}
	}
	return false
}

// manyRules is the rule count above which de-duplication uses maps.
const manyRules = 64

// tlsHostSet holds an Ingress's TLS hosts, lower-cased once and sorted, for
// binary search: exact names, and wildcard entries ("*.example.com"), whose
// suffix is looked up as "*." + the host minus its first label.
type tlsHostSet struct {
	hosts []string
	buf   *[]string
}

// release returns the set's storage to the pool; the set is unusable after.
func (s tlsHostSet) release() {
	if s.buf == nil || cap(s.hosts) > 1024 {
		return
	}
	clear(s.hosts) // drop references to the Ingress's strings
	*s.buf = s.hosts[:0]
	hostSlices.Put(s.buf)
}

// hostSlices recycles the host slices of tlsHostSets: admission builds one
// per Ingress decision, and reusing them keeps the collector away.
var hostSlices = sync.Pool{New: func() any { return new([]string) }}

func newTLSHostSet(entries []networkingv1.IngressTLS) tlsHostSet {
	buf := hostSlices.Get().(*[]string)
	s := tlsHostSet{hosts: (*buf)[:0], buf: buf}
	for _, t := range entries {
		for _, h := range t.Hosts {
			s.hosts = append(s.hosts, strings.ToLower(h))
		}
	}
	slices.Sort(s.hosts)
	return s
}

func (s tlsHostSet) has(h string) bool {
	_, ok := slices.BinarySearch(s.hosts, h)
	return ok
}

// covers reports whether host is covered: an exact match, or a wildcard
// "*.example.com" covering exactly one more label.
func (s tlsHostSet) covers(host string) bool {
	host = strings.ToLower(host)
	if s.has(host) {
		return true
	}
	if strings.HasPrefix(host, "*.") {
		return false
	}
	first, rest, found := strings.Cut(host, ".")
	if !found || first == "" {
		return false
	}
	// "*." + rest without allocating: the host's own bytes from the dot on.
	i := len(host) - len(rest) - 1
	return s.hasWildcard(host[i:])
}

// hasWildcard reports whether "*" + dotSuffix is in the set.
func (s tlsHostSet) hasWildcard(dotSuffix string) bool {
	// Compare e with "*"+target without building that string: the first
	// byte decides unless e also starts with '*'.
	i, _ := slices.BinarySearchFunc(s.hosts, dotSuffix, func(e, target string) int {
		switch {
		case e == "" || e[0] < '*':
			return -1
		case e[0] > '*':
			return 1
		}
		return strings.Compare(e[1:], target)
	})
	return i < len(s.hosts) && len(s.hosts[i]) > 0 && s.hosts[i][0] == '*' && s.hosts[i][1:] == dotSuffix
}

// Service annotations by which cloud load balancers terminate TLS.
const (
	annAWSSSLCert   = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"
	annAWSSSLPorts  = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports"
	annDOTLSPorts   = "service.beta.kubernetes.io/do-loadbalancer-tls-ports"
	annDOCertID     = "service.beta.kubernetes.io/do-loadbalancer-certificate-id"
	annOCISSLPorts  = "service.beta.kubernetes.io/oci-load-balancer-ssl-ports"
	annOCITLSSecret = "service.beta.kubernetes.io/oci-load-balancer-tls-secret"
)

// httpAppProtocols are appProtocol values that speak HTTP or gRPC.
var httpAppProtocols = map[string]bool{
	"http": true, "https": true, "h2c": true, "grpc": true, "grpcs": true,
	"kubernetes.io/h2c": true, "kubernetes.io/ws": true, "kubernetes.io/wss": true,
}

func analyzeService(s *corev1.Service) *analysis {
	a := &analysis{kind: "Service", namespace: s.Namespace, name: s.Name, labels: s.Labels}
	external := s.Spec.Type == corev1.ServiceTypeLoadBalancer || s.Spec.Type == corev1.ServiceTypeNodePort || len(s.Spec.ExternalIPs) > 0
	if !external {
		return a
	}
	how := "on its load balancer"
	switch {
	case s.Spec.Type == corev1.ServiceTypeNodePort:
		how = "on every node's NodePort"
	case s.Spec.Type != corev1.ServiceTypeLoadBalancer:
		how = "on its externalIPs"
	}
	self := TargetKey{Group: GroupCore, Kind: "Service", Namespace: s.Namespace, Name: s.Name}
	for i, p := range s.Spec.Ports {
		if !speaksHTTP(p) {
			continue
		}
		a.exposed = true
		if portTLS(s, p) {
			continue
		}
		a.findings = append(a.findings, finding{
			code: CodeInsecurePort, control: apiwardenv1alpha1.ControlTLS, field: fmt.Sprintf("spec.ports[%d]", i),
			message: fmt.Sprintf("%s exposes plain-HTTP port %s %s without TLS.", a.ref(), portName(p), how),
			hint:    "Terminate TLS on the port (appProtocol https, or the load balancer's TLS annotation), or put the API behind a Gateway or Ingress with TLS,",
		})
	}
	if a.exposed {
		sc := scope{levels: []level{{key: self}}, field: "spec.ports"}
		a.apiScopes, a.tlsScopes = []scope{sc}, []scope{sc}
	}
	return a
}

func portName(p corev1.ServicePort) string {
	if p.Name != "" {
		return fmt.Sprintf("%q (%d)", p.Name, p.Port)
	}
	return strconv.Itoa(int(p.Port))
}

// speaksHTTP reports whether a Service port carries HTTP or gRPC: by
// appProtocol, else by name, else by a well-known port number.
func speaksHTTP(p corev1.ServicePort) bool {
	if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
		return false
	}
	if p.AppProtocol != nil && *p.AppProtocol != "" {
		if httpAppProtocols[strings.ToLower(*p.AppProtocol)] {
			return true
		}
		// A protocol that is clearly something else is not an API; an
		// unrecognised value (say "HTTP/1.1") falls back to the name and
		// port, rather than letting an API through unchecked.
		if knownNonHTTPAppProtocol(*p.AppProtocol) {
			return false
		}
	}
	name := strings.ToLower(p.Name)
	for _, prefix := range []string{"http", "https", "grpc", "h2c"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	if name == "" || !namedForOtherProtocol(name) {
		return slices.Contains([]int32{80, 443, 8080, 8443}, p.Port)
	}
	return false
}

// nonHTTPAppProtocolPrefixes start appProtocol values of protocols that are
// not HTTP or gRPC.
var nonHTTPAppProtocolPrefixes = []string{"tcp", "udp", "sctp", "mysql", "postgres", "redis", "mongo", "amqp", "mqtt", "kafka", "dns", "ssh", "smtp", "kubernetes.io/tcp"}

// otherProtocolNamePrefixes start port names that say the port is not HTTP.
var otherProtocolNamePrefixes = []string{"tcp", "udp", "sql", "mysql", "postgres", "redis", "amqp", "mqtt", "dns", "ssh", "smtp", "metrics"}

// knownNonHTTPAppProtocol reports whether an appProtocol names a protocol
// that is not HTTP or gRPC.
func knownNonHTTPAppProtocol(ap string) bool {
	ap = strings.ToLower(ap)
	for _, prefix := range nonHTTPAppProtocolPrefixes {
		if strings.HasPrefix(ap, prefix) {
			return true
		}
	}
	return false
}

// namedForOtherProtocol reports whether a port name clearly says it is not HTTP.
func namedForOtherProtocol(name string) bool {
	for _, prefix := range otherProtocolNamePrefixes {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// portTLS reports whether a Service port is TLS: its appProtocol or name says
// so, or a cloud load balancer terminates TLS on it.
func portTLS(s *corev1.Service, p corev1.ServicePort) bool {
	if p.AppProtocol != nil {
		switch strings.ToLower(*p.AppProtocol) {
		case "https", "grpcs", "kubernetes.io/wss":
			return true
		}
	}
	name := strings.ToLower(p.Name)
	if strings.HasPrefix(name, "https") || strings.HasPrefix(name, "grpcs") {
		return true
	}
	if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	ann := s.Annotations
	if ann[annAWSSSLCert] != "" && portListed(ann[annAWSSSLPorts], p, true) {
		return true
	}
	if ann[annDOCertID] != "" && portListed(ann[annDOTLSPorts], p, false) {
		return true
	}
	if ann[annOCITLSSecret] != "" && portListed(ann[annOCISSLPorts], p, false) {
		return true
	}
	return false
}

// portListed reports whether a comma-separated port list names p by number or
// name; "*" lists every port, and an empty list does when emptyMeansAll.
func portListed(list string, p corev1.ServicePort, emptyMeansAll bool) bool {
	list = strings.TrimSpace(list)
	if list == "" {
		return emptyMeansAll
	}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "*" || item == strconv.Itoa(int(p.Port)) || (p.Name != "" && item == p.Name) {
			return true
		}
	}
	return false
}

func analyzeGateway(snap Snapshot, g *gatewayv1.Gateway) *analysis {
	a := &analysis{kind: "Gateway", namespace: g.Namespace, name: g.Name, labels: g.Labels}
	self := TargetKey{Group: GroupGateway, Kind: "Gateway", Namespace: g.Namespace, Name: g.Name}
	for i, l := range g.Spec.Listeners {
		switch l.Protocol {
		case gatewayv1.HTTPSProtocolType, gatewayv1.TLSProtocolType:
			a.exposed = true
			continue
		case gatewayv1.HTTPProtocolType:
			a.exposed = true
		default:
			// TCP and UDP listeners carry no HTTP API; other protocols are
			// implementation-specific and judged by their routes.
			continue
		}
		eff := resolve(snap, scope{levels: []level{{key: self, section: string(l.Name)}}})
		if eff.tls != nil && eff.tls.HTTPRedirect != apiwardenv1alpha1.FeatureDisabled {
			continue
		}
		msg := withDryRun(fmt.Sprintf("%s has plain-HTTP listener %q on port %d and no APIPolicy redirects it to HTTPS.", a.ref(), l.Name, l.Port), eff)
		a.findings = append(a.findings, finding{
			code: CodeInsecureListener, control: apiwardenv1alpha1.ControlTLS, field: fmt.Sprintf("spec.listeners[%d]", i),
			message: msg,
			hint:    fmt.Sprintf("Change the listener to HTTPS, or attach an APIPolicy targeting Gateway %s (section %s) with spec.tls.httpRedirect: Enabled,", g.Name, l.Name),
		})
	}
	a.tlsScopes = []scope{{levels: []level{{key: self}}, field: "spec.listeners"}}
	return a
}

// routeParent is the Gateway a route attaches to.
type routeParent struct {
	key     TargetKey
	section string
	field   string
}

func routeParents(namespace string, refs []gatewayv1.ParentReference) []routeParent {
	var out []routeParent
	for i, p := range refs {
		group := GroupGateway
		if p.Group != nil {
			group = string(*p.Group)
		}
		kind := "Gateway"
		if p.Kind != nil {
			kind = string(*p.Kind)
		}
		if group != GroupGateway || kind != "Gateway" {
			// Parents that are not Gateways (a mesh Service, say) do not
			// expose the route outside the cluster.
			continue
		}
		ns := namespace
		if p.Namespace != nil && *p.Namespace != "" {
			ns = string(*p.Namespace)
		}
		rp := routeParent{key: TargetKey{Group: GroupGateway, Kind: "Gateway", Namespace: ns, Name: string(p.Name)}, field: fmt.Sprintf("spec.parentRefs[%d]", i)}
		if p.SectionName != nil {
			rp.section = string(*p.SectionName)
		}
		out = append(out, rp)
	}
	return out
}

func analyzeRoute(kind, namespace, name string, labels map[string]string, parents []gatewayv1.ParentReference) *analysis {
	a := &analysis{kind: kind, namespace: namespace, name: name, labels: labels}
	self := TargetKey{Group: GroupGateway, Kind: kind, Namespace: namespace, Name: name}
	ps := routeParents(namespace, parents)
	a.exposed = len(ps) > 0
	for _, p := range ps {
		// Within the route's own namespace the parent level's policies
		// must live beside the Gateway, as policy attachment requires.
		sc := scope{
			levels: []level{{key: self}, {key: p.key, section: p.section}},
			field:  p.field,
		}
		if len(ps) > 1 {
			sc.via = "through Gateway " + p.key.Namespace + "/" + p.key.Name
			if p.section != "" {
				sc.via += " listener " + p.section
			}
		}
		a.apiScopes = append(a.apiScopes, sc)
	}
	return a
}

func analyzeHTTPRoute(r *gatewayv1.HTTPRoute) *analysis {
	a := analyzeRoute("HTTPRoute", r.Namespace, r.Name, r.Labels, r.Spec.ParentRefs)
	for i, rule := range r.Spec.Rules {
		for j, m := range rule.Matches {
			for k, q := range m.QueryParams {
				if !credentialParams[strings.ToLower(string(q.Name))] {
					continue
				}
				a.findings = append(a.findings, finding{
					code: CodeKeyInQuery, control: apiwardenv1alpha1.ControlAuthentication,
					field:   fmt.Sprintf("spec.rules[%d].matches[%d].queryParams[%d]", i, j, k),
					message: fmt.Sprintf("%s matches requests on query parameter %q, which puts credentials in URLs, where logs, browser history and Referer headers keep them.", a.ref(), q.Name),
					hint:    "Send the key in a header (APIPolicy spec.authentication.apiKey.header) and remove the query match,",
				})
			}
		}
	}
	return a
}

func analyzeGRPCRoute(r *gatewayv1.GRPCRoute) *analysis {
	return analyzeRoute("GRPCRoute", r.Namespace, r.Name, r.Labels, r.Spec.ParentRefs)
}

func dryRunNote(names []string) string {
	if len(names) == 1 {
		return fmt.Sprintf(" (APIPolicy %q is in DryRun mode and does not count).", names[0])
	}
	return fmt.Sprintf(" (APIPolicies %s are in DryRun mode and do not count).", quoteJoin(names))
}

func quoteJoin(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
