package exposure

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

var decoder runtime.Decoder

func init() {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(networkingv1.AddToScheme(s))
	utilruntime.Must(gatewayv1.Install(s))
	utilruntime.Must(apiwardenv1alpha1.AddToScheme(s))
	decoder = serializer.NewCodecFactory(s).UniversalDeserializer()
}

func decode(t testing.TB, docs string) []runtime.Object {
	t.Helper()
	var out []runtime.Object
	for _, d := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(d) == "" {
			continue
		}
		obj, _, err := decoder.Decode([]byte(d), nil, nil)
		if err != nil {
			t.Fatalf("bad test document: %v\n%s", err, d)
		}
		out = append(out, obj)
	}
	return out
}

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const denyBaseline = `
apiVersion: apiwarden.io/v1alpha1
kind: APIBaseline
metadata: {name: default}
spec:
  enforcementAction: Deny
`

// policy renders an APIPolicy in namespace shop named name targeting refs,
// with the given spec fields.
func policy(name, refs, spec string) string {
	return fmt.Sprintf(`
apiVersion: apiwarden.io/v1alpha1
kind: APIPolicy
metadata: {name: %s, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  targetRefs: %s
%s`, name, refs, indent(spec))
}

func indent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

const fullProtection = `
authentication: {apiKey: {keySetRefs: [{name: keys}]}}
rateLimit: {limits: [{by: ClientIP, requests: 10, unit: Second}]}
`

const route = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: orders, port: 80}]
`

const routeRef = `[{group: gateway.networking.k8s.io, kind: HTTPRoute, name: orders}]`
const gatewayRef = `[{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]`

func ingress(spec string) string {
	return `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: storefront, namespace: shop, labels: {tier: web}}
spec:
` + indent(spec)
}

const ingressRef = `[{group: networking.k8s.io, kind: Ingress, name: storefront}]`

func service(spec string) string {
	return `
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop, annotations: {}}
spec:
` + indent(spec)
}

func serviceWithAnnotations(ann, spec string) string {
	return strings.Replace(service(spec), "annotations: {}", "annotations: "+ann, 1)
}

const serviceRef = `[{group: "", kind: Service, name: api}]`

func gateway(listeners string) string {
	return `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: eg
  listeners:
` + indent(indent(listeners))
}

func exemption(name, target, controls, expires string) string {
	return fmt.Sprintf(`
apiVersion: apiwarden.io/v1alpha1
kind: APIBaseline
metadata: {name: default}
spec:
  enforcementAction: Deny
  exemptions:
  - name: %s
    target: %s
    controls: %s
    reason: "OPS-1: migration in progress"
    expires: "%s"
`, name, target, controls, expires)
}

type engineCase struct {
	name       string
	object     string
	policies   string
	baselines  string // denyBaseline when empty; "none" for no baseline
	namespaces map[string]map[string]string
	opts       Options
	exposed    bool
	// violations and exempted are "Code@field" entries, in any order.
	violations []string
	exempted   []string
	// messages are substrings that must appear in the violation texts.
	messages []string
}

var engineCases = []engineCase{
	// Ingress: TLS coverage.
	{name: "ingress with a host and matching TLS is protected when a policy covers it",
		object:   ingress("tls: [{hosts: [shop.example.com], secretName: c}]\nrules: [{host: shop.example.com}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true},
	{name: "ingress host without TLS",
		object:   ingress("rules: [{host: shop.example.com}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true,
		violations: []string{"TLSMissing@spec.rules[0].host"},
		messages:   []string{`Ingress shop/storefront exposes host shop.example.com without TLS: spec.tls has no entry for it. Add a TLS entry, or ask a platform owner for an exemption in APIBaseline "default".`}},
	{name: "ingress host covered by a wildcard TLS entry",
		object:   ingress("tls: [{hosts: ['*.example.com']}]\nrules: [{host: shop.example.com}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true},
	{name: "wildcard TLS does not cover two more labels",
		object:   ingress("tls: [{hosts: ['*.example.com']}]\nrules: [{host: a.shop.example.com}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true,
		violations: []string{"TLSMissing@spec.rules[0].host"}},
	{name: "wildcard TLS does not cover the apex",
		object:   ingress("tls: [{hosts: ['*.example.com']}]\nrules: [{host: example.com}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true,
		violations: []string{"TLSMissing@spec.rules[0].host"}},
	{name: "wildcard rule host covered by the same wildcard",
		object:   ingress("tls: [{hosts: ['*.example.com']}]\nrules: [{host: '*.example.com'}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true},
	{name: "TLS host match is case-insensitive",
		object:   ingress("tls: [{hosts: [Shop.Example.com]}]\nrules: [{host: shop.example.com}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true},
	{name: "two TLS entries cover two hosts",
		object:   ingress("tls: [{hosts: [a.example.com]}, {hosts: [b.example.com]}]\nrules: [{host: a.example.com}, {host: b.example.com}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true},
	{name: "one of three hosts lacks TLS",
		object:   ingress("tls: [{hosts: [a.example.com, c.example.com]}]\nrules: [{host: a.example.com}, {host: b.example.com}, {host: c.example.com}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true,
		violations: []string{"TLSMissing@spec.rules[1].host"}},
	{name: "the same host twice is reported once",
		object:   ingress("rules: [{host: a.example.com}, {host: a.example.com}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true,
		violations: []string{"TLSMissing@spec.rules[0].host"}},
	{name: "hostless rule without a default certificate",
		object:   ingress("tls: [{hosts: [a.example.com]}]\nrules: [{http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true,
		violations: []string{"TLSMissing@spec.rules[0]"},
		messages:   []string{"a rule without a host, which answers on every host"}},
	{name: "hostless rule with a default certificate",
		object:   ingress("tls: [{secretName: default-cert}]\nrules: [{http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]"),
		policies: policy("p", ingressRef, fullProtection), exposed: true},
	{name: "default backend only, without TLS",
		object:   ingress("defaultBackend: {service: {name: web, port: {number: 80}}}"),
		policies: policy("p", ingressRef, fullProtection), exposed: true,
		violations: []string{"TLSMissing@spec.defaultBackend"}},
	{name: "default backend beside TLS-covered rules serves other hosts in the clear",
		object:   ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com}]\ndefaultBackend: {service: {name: web, port: {number: 80}}}"),
		policies: policy("p", ingressRef, fullProtection), exposed: true,
		violations: []string{"TLSMissing@spec.defaultBackend"}},
	{name: "many rules, two uncovered duplicates reported once",
		object:   ingress("rules:\n" + strings.Repeat("- {host: x.example.com}\n", 100)),
		policies: policy("p", ingressRef, fullProtection), exposed: true,
		violations: []string{"TLSMissing@spec.rules[0].host"}},

	// Ingress: API protection.
	{name: "ingress without any policy",
		object:  ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com}]"),
		exposed: true, violations: []string{"AuthMissing@spec", "RateLimitMissing@spec"},
		messages: []string{"Ingress shop/storefront is exposed without authentication: no APIPolicy in Enforce mode targeting Ingress storefront sets spec.authentication."}},
	{name: "ingress protected through its backend Service's policy",
		object:   ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}]}}]"),
		policies: policy("p", serviceRef, fullProtection), exposed: true},
	{name: "ingress with two backends, one unprotected",
		object: ingress(`tls: [{hosts: [a.example.com]}]
rules:
- host: a.example.com
  http:
    paths:
    - {path: /a, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
    - {path: /b, pathType: Prefix, backend: {service: {name: legacy, port: {number: 80}}}}`),
		policies: policy("p", serviceRef, fullProtection), exposed: true,
		violations: []string{"AuthMissing@spec.rules[0].http.paths[1].backend.service.name", "RateLimitMissing@spec.rules[0].http.paths[1].backend.service.name"},
		messages:   []string{"for backend Service legacy"}},
	{name: "ingress-level auth and service-level rate limit combine",
		object:   ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}]}}]"),
		policies: policy("auth", ingressRef, "authentication: {jwt: {providers: [{name: idp, issuer: i, jwksURI: 'https://i/jwks'}]}}") + "\n---\n" + policy("rl", serviceRef, "rateLimit: {limits: [{by: Global, requests: 100, unit: Second}]}"),
		exposed:  true},
	{name: "DryRun policy does not count and says so",
		object:   ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com}]"),
		policies: policy("trial", ingressRef, "mode: DryRun\n"+fullProtection), exposed: true,
		violations: []string{"AuthMissing@spec", "RateLimitMissing@spec"},
		messages:   []string{`(APIPolicy "trial" is in DryRun mode and does not count)`}},
	{name: "policy in another namespace does not count",
		object:   ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com}]"),
		policies: strings.Replace(policy("p", ingressRef, fullProtection), "namespace: shop", "namespace: other", 1), exposed: true,
		violations: []string{"AuthMissing@spec", "RateLimitMissing@spec"}},
	{name: "policy targeting another Ingress does not count",
		object:   ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com}]"),
		policies: policy("p", `[{group: networking.k8s.io, kind: Ingress, name: other}]`, fullProtection), exposed: true,
		violations: []string{"AuthMissing@spec", "RateLimitMissing@spec"}},
	{name: "auth only, rate limit missing",
		object:   ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com}]"),
		policies: policy("p", ingressRef, "authentication: {apiKey: {keySetRefs: [{name: k}]}}"), exposed: true,
		violations: []string{"RateLimitMissing@spec"}},

	// Service.
	{name: "ClusterIP service is not exposed", object: service("ports: [{name: http, port: 80}]"), exposed: false},
	{name: "headless service is not exposed", object: service("clusterIP: None\nports: [{name: http, port: 80}]"), exposed: false},
	{name: "LoadBalancer with a plain HTTP port",
		object: service("type: LoadBalancer\nports: [{name: http, port: 80}]"), policies: policy("p", serviceRef, fullProtection),
		exposed: true, violations: []string{"InsecurePort@spec.ports[0]"},
		messages: []string{`Service shop/api exposes plain-HTTP port "http" (80) on its load balancer without TLS.`}},
	{name: "LoadBalancer with appProtocol https",
		object: service("type: LoadBalancer\nports: [{name: web, port: 443, appProtocol: https}]"), policies: policy("p", serviceRef, fullProtection), exposed: true},
	{name: "LoadBalancer with a port named https-api",
		object: service("type: LoadBalancer\nports: [{name: https-api, port: 8443}]"), policies: policy("p", serviceRef, fullProtection), exposed: true},
	{name: "LoadBalancer with the AWS TLS annotation on all ports",
		object:   serviceWithAnnotations(`{service.beta.kubernetes.io/aws-load-balancer-ssl-cert: "arn:aws:acm:eu-west-1:1:certificate/x"}`, "type: LoadBalancer\nports: [{name: http, port: 80}]"),
		policies: policy("p", serviceRef, fullProtection), exposed: true},
	{name: "AWS TLS annotation limited to another port",
		object:   serviceWithAnnotations(`{service.beta.kubernetes.io/aws-load-balancer-ssl-cert: "arn:x", service.beta.kubernetes.io/aws-load-balancer-ssl-ports: "443"}`, "type: LoadBalancer\nports: [{name: http, port: 80}, {name: web, port: 443}]"),
		policies: policy("p", serviceRef, fullProtection), exposed: true, violations: []string{"InsecurePort@spec.ports[0]"}},
	{name: "DigitalOcean TLS ports annotation",
		object:   serviceWithAnnotations(`{service.beta.kubernetes.io/do-loadbalancer-certificate-id: "abc", service.beta.kubernetes.io/do-loadbalancer-tls-ports: "443"}`, "type: LoadBalancer\nports: [{name: web, port: 443}]"),
		policies: policy("p", serviceRef, fullProtection), exposed: true},
	{name: "NodePort with appProtocol https",
		object: service("type: NodePort\nports: [{name: api, port: 8443, appProtocol: https}]"), policies: policy("p", serviceRef, fullProtection), exposed: true},
	{name: "NodePort with plain HTTP",
		object: service("type: NodePort\nports: [{name: api, port: 8080}]"), policies: policy("p", serviceRef, fullProtection),
		exposed: true, violations: []string{"InsecurePort@spec.ports[0]"}, messages: []string{"on every node's NodePort"}},
	{name: "externalIPs on a ClusterIP service",
		object: service("externalIPs: [203.0.113.10]\nports: [{port: 80}]"), policies: policy("p", serviceRef, fullProtection),
		exposed: true, violations: []string{"InsecurePort@spec.ports[0]"}, messages: []string{"on its externalIPs"}},
	{name: "unrecognised appProtocol on port 80 falls back to the port",
		object: service("type: LoadBalancer\nports: [{name: web, port: 80, appProtocol: HTTP/1.1}]"), policies: policy("p", serviceRef, fullProtection),
		exposed: true, violations: []string{"InsecurePort@spec.ports[0]"}},
	{name: "appProtocol postgres is not an API",
		object: service("type: LoadBalancer\nports: [{name: web, port: 80, appProtocol: postgresql}]"), exposed: false},
	{name: "LoadBalancer for a database is not an API",
		object: service("type: LoadBalancer\nports: [{name: postgres, port: 5432}]"), exposed: false},
	{name: "LoadBalancer UDP port 443 is not an API",
		object: service("type: LoadBalancer\nports: [{name: quic, port: 443, protocol: UDP}]"), exposed: false},
	{name: "appProtocol grpc on a LoadBalancer is plaintext",
		object: service("type: LoadBalancer\nports: [{name: api, port: 9000, appProtocol: grpc}]"), policies: policy("p", serviceRef, fullProtection),
		exposed: true, violations: []string{"InsecurePort@spec.ports[0]"}},
	{name: "appProtocol kubernetes.io/h2c is HTTP",
		object: service("type: LoadBalancer\nports: [{name: api, port: 9000, appProtocol: kubernetes.io/h2c}]"), policies: policy("p", serviceRef, fullProtection),
		exposed: true, violations: []string{"InsecurePort@spec.ports[0]"}},
	{name: "unnamed port 8443 with a TLS annotation-free LB is plain",
		object: service("type: LoadBalancer\nports: [{port: 8443}]"), policies: policy("p", serviceRef, fullProtection),
		exposed: true, violations: []string{"InsecurePort@spec.ports[0]"}, messages: []string{"plain-HTTP port 8443"}},
	{name: "LoadBalancer TLS port without a policy",
		object: service("type: LoadBalancer\nports: [{name: https, port: 443}]"), exposed: true,
		violations: []string{"AuthMissing@spec.ports", "RateLimitMissing@spec.ports"}},

	// Gateway.
	{name: "gateway with an HTTPS listener only",
		object: gateway("- {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: c}]}}"), exposed: true},
	{name: "gateway with a plain HTTP listener",
		object: gateway("- {name: http, port: 80, protocol: HTTP}"), exposed: true,
		violations: []string{"InsecureListener@spec.listeners[0]"},
		messages:   []string{`Gateway shop/edge has plain-HTTP listener "http" on port 80 and no APIPolicy redirects it to HTTPS.`}},
	{name: "HTTP listener redirected by a Gateway policy",
		object:   gateway("- {name: http, port: 80, protocol: HTTP}\n- {name: https, port: 443, protocol: HTTPS}"),
		policies: policy("redirect", gatewayRef, "tls: {httpRedirect: Enabled}"), exposed: true},
	{name: "HTTP listener redirected by a policy on that listener",
		object:   gateway("- {name: http, port: 80, protocol: HTTP}"),
		policies: policy("redirect", `[{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: http}]`, "tls: {minVersion: '1.2'}"), exposed: true},
	{name: "policy on another listener does not redirect this one",
		object:   gateway("- {name: http, port: 80, protocol: HTTP}"),
		policies: policy("redirect", `[{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: https}]`, "tls: {httpRedirect: Enabled}"), exposed: true,
		violations: []string{"InsecureListener@spec.listeners[0]"}},
	{name: "redirect disabled does not count",
		object:   gateway("- {name: http, port: 80, protocol: HTTP}"),
		policies: policy("redirect", gatewayRef, "tls: {httpRedirect: Disabled}"), exposed: true,
		violations: []string{"InsecureListener@spec.listeners[0]"}},
	{name: "redirect from a DryRun policy does not count",
		object:   gateway("- {name: http, port: 80, protocol: HTTP}"),
		policies: policy("redirect", gatewayRef, "mode: DryRun\ntls: {httpRedirect: Enabled}"), exposed: true,
		violations: []string{"InsecureListener@spec.listeners[0]"}, messages: []string{"DryRun mode"}},
	{name: "mixed listeners, one plain",
		object: gateway("- {name: https, port: 443, protocol: HTTPS}\n- {name: http, port: 80, protocol: HTTP}\n- {name: tls, port: 8443, protocol: TLS}"), exposed: true,
		violations: []string{"InsecureListener@spec.listeners[1]"}},
	{name: "TCP listener is not an HTTP API",
		object: gateway("- {name: db, port: 5432, protocol: TCP}"), exposed: false},
	{name: "baseline requiring TLS 1.3 against a gateway without a policy",
		object:    gateway("- {name: https, port: 443, protocol: HTTPS}"),
		baselines: denyBaseline + "  require: {tls: {minVersion: '1.3'}}\n", exposed: true,
		violations: []string{"TLSVersionTooLow@spec.listeners"}, messages: []string{"accepts TLS 1.2, below the required minimum TLS 1.3"}},
	{name: "baseline requiring TLS 1.3 met by the gateway policy",
		object:    gateway("- {name: https, port: 443, protocol: HTTPS}"),
		policies:  policy("tls13", gatewayRef, "tls: {minVersion: '1.3'}"),
		baselines: denyBaseline + "  require: {tls: {minVersion: '1.3'}}\n", exposed: true},

	// Routes.
	{name: "route with a policy on the route", object: route, policies: policy("p", routeRef, fullProtection), exposed: true},
	{name: "route without any policy", object: route, exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"},
		messages:   []string{"HTTPRoute shop/orders is exposed without authentication: no APIPolicy in Enforce mode targeting HTTPRoute orders or Gateway edge sets spec.authentication. Attach an APIPolicy targeting HTTPRoute orders or Gateway edge with spec.authentication (APIKey, JWT or MTLS), or ask a platform owner for an exemption in APIBaseline \"default\"."}},
	{name: "route covered by its parent Gateway's policy", object: route, policies: policy("p", gatewayRef, fullProtection), exposed: true},
	{name: "route-level auth with gateway-level rate limit", object: route,
		policies: policy("gw", gatewayRef, "rateLimit: {limits: [{by: ClientIP, requests: 5, unit: Second}]}") + "\n---\n" + policy("rt", routeRef, "authentication: {apiKey: {keySetRefs: [{name: k}]}}"),
		exposed:  true},
	{name: "route without parents is not exposed",
		object:  strings.Replace(route, "parentRefs: [{name: edge}]", "parentRefs: []", 1),
		exposed: false},
	{name: "route attached to a mesh Service is not exposed",
		object:  strings.Replace(route, "parentRefs: [{name: edge}]", "parentRefs: [{group: '', kind: Service, name: orders}]", 1),
		exposed: false},
	{name: "route with two parents, one covered",
		object:   strings.Replace(route, "parentRefs: [{name: edge}]", "parentRefs: [{name: edge}, {name: internal-gw, namespace: infra}]", 1),
		policies: policy("p", gatewayRef, fullProtection), exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[1]", "RateLimitMissing@spec.parentRefs[1]"},
		messages:   []string{"through Gateway infra/internal-gw", "Gateway internal-gw (in namespace infra)"}},
	{name: "route with two parents, covered by a route policy", object: strings.Replace(route, "parentRefs: [{name: edge}]", "parentRefs: [{name: edge}, {name: internal-gw, namespace: infra}]", 1),
		policies: policy("p", routeRef, fullProtection), exposed: true},
	{name: "route on a listener covered by that listener's policy",
		object:   strings.Replace(route, "parentRefs: [{name: edge}]", "parentRefs: [{name: edge, sectionName: https}]", 1),
		policies: policy("p", `[{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: https}]`, fullProtection), exposed: true},
	{name: "route on the whole gateway is not covered by one listener's policy",
		object:   route,
		policies: policy("p", `[{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: https}]`, fullProtection), exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
	{name: "two route policies conflict: the older wins",
		object: route,
		policies: policy("old", routeRef, "authentication: {apiKey: {keySetRefs: [{name: k}]}}") + "\n---\n" +
			strings.Replace(policy("new", routeRef, fullProtection), "2026-01-01", "2026-02-01", 1),
		exposed: true, violations: []string{"RateLimitMissing@spec.parentRefs[0]"}},
	{name: "API key in a query parameter",
		object:   route + "  - matches: [{queryParams: [{name: api_key, value: x}]}]\n    backendRefs: [{name: orders, port: 80}]\n",
		policies: policy("p", routeRef, fullProtection), exposed: true,
		violations: []string{"KeyInQuery@spec.rules[1].matches[0].queryParams[0]"},
		messages:   []string{`matches requests on query parameter "api_key"`}},
	{name: "other query parameters are fine",
		object:   route + "  - matches: [{queryParams: [{name: page, value: '1'}]}]\n    backendRefs: [{name: orders, port: 80}]\n",
		policies: policy("p", routeRef, fullProtection), exposed: true},
	{name: "GRPCRoute without a policy",
		object: `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: inventory, namespace: shop}
spec:
  parentRefs: [{name: edge}]`, exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
	{name: "GRPCRoute covered by the gateway policy",
		object: `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: inventory, namespace: shop}
spec:
  parentRefs: [{name: edge}]`, policies: policy("p", gatewayRef, fullProtection), exposed: true},

	// Baseline requirements.
	{name: "auth method not allowed", object: route,
		policies:  policy("p", routeRef, fullProtection),
		baselines: denyBaseline + "  require: {authentication: {methods: [JWT, MTLS]}, rateLimit: {}}\n", exposed: true,
		violations: []string{"AuthMethodNotAllowed@spec.parentRefs[0]"}, messages: []string{"authenticates with APIKey only"}},
	{name: "rate limit above the ceiling", object: route,
		policies:  policy("p", routeRef, "authentication: {apiKey: {keySetRefs: [{name: k}]}}\nrateLimit: {limits: [{by: Global, requests: 6000, unit: Minute}]}"),
		baselines: denyBaseline + "  require: {authentication: {}, rateLimit: {ceiling: {requests: 50, unit: Second}}}\n", exposed: true,
		violations: []string{"RateLimitAboveCeiling@spec.parentRefs[0]"}, messages: []string{"6000 requests per minute by Global, above the ceiling of 50 per second"}},
	{name: "rate limit at the ceiling", object: route,
		policies:  policy("p", routeRef, "authentication: {apiKey: {keySetRefs: [{name: k}]}}\nrateLimit: {limits: [{by: Global, requests: 3000, unit: Minute}]}"),
		baselines: denyBaseline + "  require: {authentication: {}, rateLimit: {ceiling: {requests: 50, unit: Second}}}\n", exposed: true},
	{name: "body limit required and missing", object: route,
		policies:  policy("p", routeRef, fullProtection),
		baselines: denyBaseline + "  require: {authentication: {}, rateLimit: {}, requestBody: {maxBytes: 1048576}}\n", exposed: true,
		violations: []string{"BodyLimitMissing@spec.parentRefs[0]"}},
	{name: "body limit too large", object: route,
		policies:  policy("p", routeRef, fullProtection+"request: {maxBodyBytes: 10485760}"),
		baselines: denyBaseline + "  require: {authentication: {}, rateLimit: {}, requestBody: {maxBytes: 1048576}}\n", exposed: true,
		violations: []string{"BodyLimitTooLarge@spec.parentRefs[0]"}},
	{name: "CORS wildcard forbidden", object: route,
		policies:  policy("p", routeRef, fullProtection+"cors: {allowOrigins: ['*']}"),
		baselines: denyBaseline + "  require: {authentication: {}, rateLimit: {}, cors: {}}\n", exposed: true,
		violations: []string{"CORSWildcardOrigin@spec.parentRefs[0]"}},
	{name: "CORS wildcard with credentials is refused even when wildcards are allowed", object: route,
		policies:  policy("p", routeRef, fullProtection+"cors: {allowOrigins: ['https://*.example.com'], allowCredentials: true}"),
		baselines: denyBaseline + "  require: {authentication: {}, rateLimit: {}, cors: {wildcardOrigins: Enabled}}\n", exposed: true,
		violations: []string{"CORSWildcardOrigin@spec.parentRefs[0]"}, messages: []string{"allows credentials in cross-origin requests from a wildcard origin"}},
	{name: "auth method hint names the policy that set authentication", object: route,
		policies:  policy("gw", gatewayRef, fullProtection) + "\n---\n" + policy("rt", routeRef, "request: {maxBodyBytes: 100}"),
		baselines: denyBaseline + "  require: {authentication: {methods: [JWT]}}\n", exposed: true,
		violations: []string{"AuthMethodNotAllowed@spec.parentRefs[0]"}, messages: []string{`Configure one of JWT in APIPolicy "gw"`}},
	{name: "CORS wildcard allowed by the baseline", object: route,
		policies:  policy("p", routeRef, fullProtection+"cors: {allowOrigins: ['*']}"),
		baselines: denyBaseline + "  require: {authentication: {}, rateLimit: {}, cors: {wildcardOrigins: Enabled}}\n", exposed: true},
	{name: "baseline requiring only TLS ignores missing auth", object: route,
		baselines: denyBaseline + "  require: {tls: {}}\n", exposed: true},
	{name: "two baselines report separately", object: route,
		baselines: denyBaseline + "---\napiVersion: apiwarden.io/v1alpha1\nkind: APIBaseline\nmetadata: {name: audit}\nspec: {enforcementAction: Audit, require: {rateLimit: {}}}\n",
		exposed:   true, violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},

	// Governance.
	{name: "no baseline governs nothing", object: route, baselines: "none", exposed: true},
	{name: "kube-system is never governed", object: strings.Replace(route, "namespace: shop", "namespace: kube-system", 1), exposed: true},
	{name: "apiwarden's own namespace is never governed", object: strings.Replace(route, "namespace: shop", "namespace: apiwarden-system", 1),
		opts: Options{OwnNamespace: "apiwarden-system"}, exposed: true},
	{name: "namespace labelled apiwarden.io/exclude is never governed", object: route,
		namespaces: map[string]map[string]string{"shop": {"apiwarden.io/exclude": "true"}}, exposed: true},
	{name: "namespace selector does not match", object: route,
		baselines:  denyBaseline + "  namespaceSelector: {matchLabels: {apiwarden.io/governed: 'true'}}\n",
		namespaces: map[string]map[string]string{"shop": {"team": "shop"}}, exposed: true},
	{name: "namespace selector matches", object: route,
		baselines:  denyBaseline + "  namespaceSelector: {matchLabels: {apiwarden.io/governed: 'true'}}\n",
		namespaces: map[string]map[string]string{"shop": {"apiwarden.io/governed": "true"}}, exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
	{name: "unknown namespace governed when asked (CLI)", object: route,
		baselines: denyBaseline + "  namespaceSelector: {matchLabels: {apiwarden.io/governed: 'true'}}\n",
		opts:      Options{UnknownNamespacesGoverned: true}, exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
	{name: "unknown namespace not governed by default", object: route,
		baselines: denyBaseline + "  namespaceSelector: {matchLabels: {apiwarden.io/governed: 'true'}}\n", exposed: true},

	// Exemptions.
	{name: "future exemption waives everything", object: route,
		baselines: exemption("legacy", "{namespace: shop, kind: HTTPRoute, name: orders}", "[]", "2027-01-01T00:00:00Z"), exposed: true,
		exempted: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
	{name: "expired exemption does not count", object: route,
		baselines: exemption("legacy", "{namespace: shop, kind: HTTPRoute, name: orders}", "[]", "2026-11-25T11:59:59Z"), exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
	{name: "exemption expiring exactly now does not count", object: route,
		baselines: exemption("legacy", "{namespace: shop}", "[]", "2026-11-25T12:00:00Z"), exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
	{name: "exemption of one control keeps the others", object: route,
		baselines: exemption("rl-only", "{namespace: shop}", "[RateLimit]", "2027-01-01T00:00:00Z"), exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]"}, exempted: []string{"RateLimitMissing@spec.parentRefs[0]"}},
	{name: "exemption for another namespace does not apply", object: route,
		baselines: exemption("other", "{namespace: billing}", "[]", "2027-01-01T00:00:00Z"), exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
	{name: "exemption for another kind does not apply", object: route,
		baselines: exemption("ing", "{namespace: shop, kind: Ingress}", "[]", "2027-01-01T00:00:00Z"), exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
	{name: "exemption by label selector", object: ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com}]"),
		baselines: exemption("web", "{namespace: shop, selector: {matchLabels: {tier: web}}}", "[Authentication, RateLimit]", "2027-01-01T00:00:00Z"), exposed: true,
		exempted: []string{"AuthMissing@spec", "RateLimitMissing@spec"}},
	{name: "exemption by a selector that does not match", object: ingress("tls: [{hosts: [a.example.com]}]\nrules: [{host: a.example.com}]"),
		baselines: exemption("web", "{namespace: shop, selector: {matchLabels: {tier: batch}}}", "[]", "2027-01-01T00:00:00Z"), exposed: true,
		violations: []string{"AuthMissing@spec", "RateLimitMissing@spec"}},

	// Enforcement actions.
	{name: "warn baseline reports with its action", object: route,
		baselines: strings.Replace(denyBaseline, "Deny", "Warn", 1), exposed: true,
		violations: []string{"AuthMissing@spec.parentRefs[0]", "RateLimitMissing@spec.parentRefs[0]"}},
}

func key(v Violation) string { return string(v.Code) + "@" + v.Field }

func TestEvaluate(t *testing.T) {
	if len(engineCases) < 60 {
		t.Fatalf("want at least 60 engine cases, have %d", len(engineCases))
	}
	for _, tc := range engineCases {
		t.Run(tc.name, func(t *testing.T) {
			v := evaluateCase(t, tc)
			if v.Exposed != tc.exposed {
				t.Errorf("exposed = %v, want %v", v.Exposed, tc.exposed)
			}
			var got, gotEx []string
			var texts []string
			for _, x := range v.Violations {
				got = append(got, key(x))
				texts = append(texts, x.Text())
			}
			for _, x := range v.Exempted {
				gotEx = append(gotEx, key(x))
				if x.Exemption == "" || x.ExemptionExpires == nil {
					t.Errorf("exempted violation %s does not name its exemption", key(x))
				}
			}
			sort.Strings(got)
			sort.Strings(gotEx)
			want := append([]string(nil), tc.violations...)
			wantEx := append([]string(nil), tc.exempted...)
			sort.Strings(want)
			sort.Strings(wantEx)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("violations = %v, want %v\n%s", got, want, strings.Join(texts, "\n"))
			}
			if fmt.Sprint(gotEx) != fmt.Sprint(wantEx) {
				t.Errorf("exempted = %v, want %v", gotEx, wantEx)
			}
			all := strings.Join(texts, "\n")
			for _, m := range tc.messages {
				if !strings.Contains(all, m) {
					t.Errorf("no violation says %q; got:\n%s", m, all)
				}
			}
			for _, x := range append(v.Violations, v.Exempted...) {
				if x.Message == "" || x.Hint == "" || x.Field == "" || x.Baseline == "" || x.Action == "" || x.Control == "" {
					t.Errorf("incomplete violation: %+v", x)
				}
			}
		})
	}
}

func evaluateCase(t testing.TB, tc engineCase) Verdict {
	t.Helper()
	objs := decode(t, tc.object)
	if len(objs) != 1 {
		t.Fatalf("want one object, got %d", len(objs))
	}
	var policies []*apiwardenv1alpha1.APIPolicy
	for _, o := range decode(t, tc.policies) {
		policies = append(policies, o.(*apiwardenv1alpha1.APIPolicy))
	}
	var baselines []*apiwardenv1alpha1.APIBaseline
	switch tc.baselines {
	case "none":
	case "":
		baselines = append(baselines, decode(t, denyBaseline)[0].(*apiwardenv1alpha1.APIBaseline))
	default:
		for _, o := range decode(t, tc.baselines) {
			baselines = append(baselines, o.(*apiwardenv1alpha1.APIBaseline))
		}
	}
	snap := NewMemorySnapshot(baselines, policies, tc.namespaces)
	v, err := Evaluate(objs[0], snap, now, tc.opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerdictState(t *testing.T) {
	cases := map[string]State{
		"ClusterIP service is not exposed":                                          StateNotExposed,
		"no baseline governs nothing":                                               StateNotExposed,
		"route with a policy on the route":                                          StateProtected,
		"route without any policy":                                                  StateViolating,
		"future exemption waives everything":                                        StateExempt,
		"exemption of one control keeps the others":                                 StateViolating,
		"ingress with a host and matching TLS is protected when a policy covers it": StateProtected,
	}
	for _, tc := range engineCases {
		want, ok := cases[tc.name]
		if !ok {
			continue
		}
		delete(cases, tc.name)
		if got := evaluateCase(t, tc).State(); got != want {
			t.Errorf("%s: state %s, want %s", tc.name, got, want)
		}
	}
	if len(cases) > 0 {
		t.Fatalf("cases not found: %v", cases)
	}
}

func TestExemptionNextExpiry(t *testing.T) {
	tc := engineCase{object: route, baselines: exemption("legacy", "{namespace: shop}", "[]", "2027-01-01T00:00:00Z")}
	v := evaluateCase(t, tc)
	if want := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC); !v.NextExpiry.Equal(want) {
		t.Fatalf("NextExpiry = %v, want %v", v.NextExpiry, want)
	}
}

func TestUnsupportedObject(t *testing.T) {
	if _, err := Evaluate(&corev1.ConfigMap{}, NewMemorySnapshot(nil, nil, nil), now, Options{}); err == nil {
		t.Fatal("want an error for a ConfigMap")
	}
	if Supported(&corev1.ConfigMap{}) || !Supported(&networkingv1.Ingress{}) {
		t.Fatal("Supported is wrong")
	}
}

func TestIntroduced(t *testing.T) {
	v := func(code Code, field, baseline string) Violation {
		return Violation{Code: code, Field: field, Baseline: baseline}
	}
	before := []Violation{v(CodeTLSMissing, "spec.rules[0].host", "a")}
	after := []Violation{
		v(CodeTLSMissing, "spec.rules[0].host", "a"),       // already there
		v(CodeAuthMissing, "spec", "a"),                    // new
		v(CodeTLSMissing, "spec.rules[0].host", "b"),       // same finding, other baseline: new
		v(CodeRateLimitMissing, "spec.parentRefs[1]", "a"), // new
	}
	got := Introduced(before, after)
	if len(got) != 3 || got[0].Code != CodeAuthMissing || got[1].Baseline != "b" || got[2].Code != CodeRateLimitMissing {
		t.Fatalf("Introduced = %+v", got)
	}
	if len(Introduced(after, before)) != 0 {
		t.Fatal("removing violations introduces none")
	}
	for _, c := range []Code{CodeAuthMissing, CodeRateLimitMissing, CodeInsecureListener, CodeTLSMissing} {
		if c.Protection() == string(c) {
			t.Errorf("%s has no protection name", c)
		}
	}
}

// TestWebhookSkipsCELBaselines: the webhook leaves CEL-mode baselines to
// the compiled policies, and still enforces Both and Webhook ones.
func TestWebhookSkipsCELBaselines(t *testing.T) {
	obj := decode(t, route)[0]
	for mode, want := range map[apiwardenv1alpha1.AdmissionMode]int{
		apiwardenv1alpha1.AdmissionModeCEL: 0, apiwardenv1alpha1.AdmissionModeBoth: 2, apiwardenv1alpha1.AdmissionModeWebhook: 2, "": 2,
	} {
		b := decode(t, denyBaseline)[0].(*apiwardenv1alpha1.APIBaseline)
		b.Spec.Admission = mode
		snap := NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{b}, nil, nil)
		v, err := Evaluate(obj, snap, now, Options{Webhook: true, UnknownNamespacesGoverned: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Violations) != want {
			t.Errorf("admission %q: %d violations through the webhook, want %d", mode, len(v.Violations), want)
		}
		// The scan and the CLI see every baseline.
		if v, _ := Evaluate(obj, snap, now, Options{UnknownNamespacesGoverned: true}); len(v.Violations) != 2 {
			t.Errorf("admission %q: %d violations outside the webhook, want 2", mode, len(v.Violations))
		}
	}
}
