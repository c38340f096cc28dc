// Package crd proves, against a real kube-apiserver, that the generated CRDs
// reject every invalid spec with a message naming the field, apply the
// documented defaults, and accept every sample in config/samples.
package crd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	env, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	k8s, err = client.New(env.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, ns := range []string{"shop", "crd-test"} {
		if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// object builds an apiwarden object of kind from a spec written in YAML.
func object(t *testing.T, kind, name, spec string) *unstructured.Unstructured {
	t.Helper()
	var s map[string]any
	if err := yaml.Unmarshal([]byte(spec), &s); err != nil {
		t.Fatalf("bad test spec: %v", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": s}}
	u.SetAPIVersion(apiwardenv1alpha1.GroupVersion.String())
	u.SetKind(kind)
	u.SetName(name)
	if kind != "APIBaseline" {
		u.SetNamespace("crd-test")
	}
	return u
}

const validTarget = `
targetRefs:
- {group: gateway.networking.k8s.io, kind: HTTPRoute, name: shop}
`

type invalidCase struct {
	name string
	kind string
	spec string
	// want lists substrings that must all appear in the apiserver's error:
	// the field path, and the reason or the CEL message.
	want []string
}

var invalidCases = []invalidCase{
	// APIPolicy: targets.
	{"policy without targetRefs", "APIPolicy", `mode: Enforce`, []string{"spec.targetRefs", "Required value"}},
	{"policy with empty targetRefs", "APIPolicy", `targetRefs: []`, []string{"spec.targetRefs", "at least 1 items"}},
	{"targetRef of unsupported kind", "APIPolicy", `targetRefs: [{group: apps, kind: Deployment, name: shop}]`,
		[]string{"spec.targetRefs[0].kind", "Unsupported value", `"Deployment"`}},
	{"targetRef kind in the wrong group", "APIPolicy", `targetRefs: [{group: networking.k8s.io, kind: HTTPRoute, name: shop}]`,
		[]string{"spec.targetRefs[0]", "kind must be HTTPRoute, GRPCRoute or Gateway in group gateway.networking.k8s.io"}},
	{"Service targetRef in a non-core group", "APIPolicy", `targetRefs: [{group: gateway.networking.k8s.io, kind: Service, name: shop}]`,
		[]string{"spec.targetRefs[0]", "Service in the core group"}},
	{"targetRef without group", "APIPolicy", `targetRefs: [{kind: HTTPRoute, name: shop}]`,
		[]string{"spec.targetRefs[0].group", "Required value"}},
	{"targetRef with an invalid name", "APIPolicy", `targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: Shop_API}]`,
		[]string{"spec.targetRefs[0].name", "should match"}},
	{"sectionName on an HTTPRoute", "APIPolicy", `targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: shop, sectionName: https}]`,
		[]string{"spec.targetRefs[0]", "sectionName applies only to a Gateway"}},
	{"same target twice", "APIPolicy", `targetRefs: [{group: "", kind: Service, name: shop}, {group: "", kind: Service, name: shop}]`,
		[]string{"spec.targetRefs", "must not name the same target twice"}},
	{"too many targetRefs", "APIPolicy", "targetRefs:\n" + strings.Repeat("- {group: '', kind: Service, name: s}\n", 17),
		[]string{"spec.targetRefs", "must have at most 16 items"}},
	{"unknown mode", "APIPolicy", validTarget + `mode: Audit`, []string{"spec.mode", "Unsupported value", `"Audit"`}},
	// APIPolicy: TLS.
	{"TLS 1.1", "APIPolicy", validTarget + `tls: {minVersion: "1.1"}`, []string{"spec.tls.minVersion", "Unsupported value"}},
	{"httpRedirect as a bool", "APIPolicy", validTarget + `tls: {httpRedirect: true}`, []string{"spec.tls.httpRedirect", "must be of type string"}},
	{"negative HSTS max age", "APIPolicy", validTarget + `tls: {hsts: {maxAgeSeconds: -1}}`,
		[]string{"spec.tls.hsts.maxAgeSeconds", "greater than or equal to 0"}},
	{"HSTS preload with a short max age", "APIPolicy", validTarget + `tls: {hsts: {maxAgeSeconds: 600, includeSubDomains: Enabled, preload: Enabled}}`,
		[]string{"spec.tls.hsts", "preload requires maxAgeSeconds of at least 31536000"}},
	// APIPolicy: authentication.
	{"empty authentication", "APIPolicy", validTarget + `authentication: {}`,
		[]string{"spec.authentication", "at least one of apiKey, jwt or mtls"}},
	{"apiKey without keySetRefs", "APIPolicy", validTarget + `authentication: {apiKey: {header: X-Key}}`,
		[]string{"spec.authentication.apiKey.keySetRefs", "Required value"}},
	{"apiKey header with a space", "APIPolicy", validTarget + `authentication: {apiKey: {keySetRefs: [{name: k}], header: "X API Key"}}`,
		[]string{"spec.authentication.apiKey.header", "should match"}},
	{"apiKey header Host", "APIPolicy", validTarget + `authentication: {apiKey: {keySetRefs: [{name: k}], header: Host}}`,
		[]string{"spec.authentication.apiKey.header", "must not be a hop-by-hop or framing header"}},
	{"apiKey in a query parameter", "APIPolicy", validTarget + `authentication: {apiKey: {keySetRefs: [{name: k}], query: api_key}}`,
		[]string{"spec.authentication.apiKey", "unknown field", "query"}},
	{"duplicate keySetRefs", "APIPolicy", validTarget + `authentication: {apiKey: {keySetRefs: [{name: k}, {name: k}]}}`,
		[]string{"spec.authentication.apiKey.keySetRefs[1]", "Duplicate value"}},
	{"JWKS over plain HTTP", "APIPolicy", validTarget + `authentication: {jwt: {providers: [{name: idp, issuer: "https://idp", jwksURI: "http://idp/jwks"}]}}`,
		[]string{"spec.authentication.jwt.providers[0].jwksURI", "must be an https:// URL"}},
	{"JWKS that is not a URL", "APIPolicy", validTarget + `authentication: {jwt: {providers: [{name: idp, issuer: "https://idp", jwksURI: "not a url"}]}}`,
		[]string{"spec.authentication.jwt.providers[0].jwksURI", "must be an https:// URL"}},
	{"JWT without providers", "APIPolicy", validTarget + `authentication: {jwt: {providers: []}}`,
		[]string{"spec.authentication.jwt.providers", "at least 1 items"}},
	{"JWT claim without values", "APIPolicy", validTarget + `authentication: {jwt: {providers: [{name: idp, issuer: i, jwksURI: "https://idp/jwks", requiredClaims: [{name: scope, values: []}]}]}}`,
		[]string{"spec.authentication.jwt.providers[0].requiredClaims[0].values", "at least 1 items"}},
	{"mTLS issuer of unknown kind", "APIPolicy", validTarget + `authentication: {mtls: {issuerRef: {name: ca, kind: Vault}}}`,
		[]string{"spec.authentication.mtls.issuerRef.kind", "Unsupported value"}},
	// APIPolicy: authorization.
	{"authorization without authentication", "APIPolicy", validTarget + `authorization: {rules: [{name: r, action: Allow}]}`,
		[]string{"spec", "authorization requires authentication"}},
	{"authorization rule with unknown action", "APIPolicy", validTarget + `authentication: {apiKey: {keySetRefs: [{name: k}]}}
authorization: {rules: [{name: r, action: Maybe}]}`,
		[]string{"spec.authorization.rules[0].action", "Unsupported value"}},
	{"authorization path without a leading slash", "APIPolicy", validTarget + `authentication: {apiKey: {keySetRefs: [{name: k}]}}
authorization: {rules: [{name: r, action: Allow, paths: [{value: orders}]}]}`,
		[]string{"spec.authorization.rules[0].paths[0].value", "should match"}},
	{"authorization with an unknown method", "APIPolicy", validTarget + `authentication: {apiKey: {keySetRefs: [{name: k}]}}
authorization: {rules: [{name: r, action: Allow, methods: [FETCH]}]}`,
		[]string{"spec.authorization.rules[0].methods[0]", "Unsupported value"}},
	// APIPolicy: rate limits.
	{"zero rate limit", "APIPolicy", validTarget + `rateLimit: {limits: [{by: Global, requests: 0, unit: Second}]}`,
		[]string{"spec.rateLimit.limits[0].requests", "greater than or equal to 1"}},
	{"negative rate limit", "APIPolicy", validTarget + `rateLimit: {limits: [{by: ClientIP, requests: -5, unit: Second}]}`,
		[]string{"spec.rateLimit.limits[0].requests", "greater than or equal to 1"}},
	{"rate limit per week", "APIPolicy", validTarget + `rateLimit: {limits: [{by: Global, requests: 5, unit: Week}]}`,
		[]string{"spec.rateLimit.limits[0].unit", "Unsupported value"}},
	{"rate limit without limits", "APIPolicy", validTarget + `rateLimit: {limits: []}`,
		[]string{"spec.rateLimit.limits", "at least 1 items"}},
	{"two rate limits by the same key", "APIPolicy", validTarget + `rateLimit: {limits: [{by: Global, requests: 5, unit: Second}, {by: Global, requests: 9, unit: Minute}]}`,
		[]string{"spec.rateLimit.limits[1]", "Duplicate value"}},
	{"per-consumer limit without authentication", "APIPolicy", validTarget + `rateLimit: {limits: [{by: Consumer, requests: 5, unit: Second}]}`,
		[]string{"spec", "a rate limit by Consumer requires authentication"}},
	{"burst far above the rate", "APIPolicy", validTarget + `rateLimit: {limits: [{by: Global, requests: 5, unit: Second, burst: 51}]}`,
		[]string{"spec.rateLimit.limits[0]", "burst must not exceed ten times requests"}},
	// APIPolicy: request, CORS, versioning.
	{"zero body limit", "APIPolicy", validTarget + `request: {maxBodyBytes: 0}`,
		[]string{"spec.request.maxBodyBytes", "greater than or equal to 1"}},
	{"unknown allowed method", "APIPolicy", validTarget + `request: {allowedMethods: [GET, FETCH]}`,
		[]string{"spec.request.allowedMethods[1]", "Unsupported value"}},
	{"CORS wildcard with credentials", "APIPolicy", validTarget + `cors: {allowOrigins: ["*"], allowCredentials: true}`,
		[]string{"spec.cors", "allowCredentials must not be combined with a wildcard origin"}},
	{"CORS subdomain wildcard with credentials", "APIPolicy", validTarget + `cors: {allowOrigins: ["https://*.example.com"], allowCredentials: true}`,
		[]string{"spec.cors", "allowCredentials must not be combined with a wildcard origin"}},
	{"CORS origin with a path", "APIPolicy", validTarget + `cors: {allowOrigins: ["https://app.example.com/x"]}`,
		[]string{"spec.cors.allowOrigins[0]", "should match"}},
	{"sunset before deprecation", "APIPolicy", validTarget + `versioning: {deprecation: "2027-01-01T00:00:00Z", sunset: "2026-01-01T00:00:00Z"}`,
		[]string{"spec.versioning", "sunset must be later than deprecation"}},
	{"deprecation link over HTTP", "APIPolicy", validTarget + `versioning: {link: "http://docs.example.com"}`,
		[]string{"spec.versioning.link", "must be an https:// URL"}},
	{"sunset that is not a date", "APIPolicy", validTarget + `versioning: {sunset: "next year"}`,
		[]string{"spec.versioning.sunset", "date-time"}},

	// APIBaseline.
	{"unknown enforcement action", "APIBaseline", `enforcementAction: Block`,
		[]string{"spec.enforcementAction", "Unsupported value"}},
	{"exemption without reason", "APIBaseline", `exemptions: [{name: e, target: {namespace: shop}, expires: "2027-01-01T00:00:00Z"}]`,
		[]string{"spec.exemptions[0].reason", "Required value"}},
	{"exemption without expiry", "APIBaseline", `exemptions: [{name: e, target: {namespace: shop}, reason: "OPS-1: temporary exception"}]`,
		[]string{"spec.exemptions[0].expires", "Required value"}},
	{"exemption with a one-word reason", "APIBaseline", `exemptions: [{name: e, target: {namespace: shop}, reason: "because", expires: "2027-01-01T00:00:00Z"}]`,
		[]string{"spec.exemptions[0].reason", "at least 10 chars long"}},
	{"exemption expiry that is not a date", "APIBaseline", `exemptions: [{name: e, target: {namespace: shop}, reason: "OPS-1: temporary exception", expires: tomorrow}]`,
		[]string{"spec.exemptions[0].expires", "date-time"}},
	{"exemption without a namespace", "APIBaseline", `exemptions: [{name: e, target: {kind: Ingress}, reason: "OPS-1: temporary exception", expires: "2027-01-01T00:00:00Z"}]`,
		[]string{"spec.exemptions[0].target.namespace", "Required value"}},
	{"exemption naming an object without its kind", "APIBaseline", `exemptions: [{name: e, target: {namespace: shop, name: web}, reason: "OPS-1: temporary exception", expires: "2027-01-01T00:00:00Z"}]`,
		[]string{"spec.exemptions[0].target", "name requires kind"}},
	{"exemption with name and selector", "APIBaseline", `exemptions: [{name: e, target: {namespace: shop, kind: Ingress, name: web, selector: {matchLabels: {a: b}}}, reason: "OPS-1: temporary exception", expires: "2027-01-01T00:00:00Z"}]`,
		[]string{"spec.exemptions[0].target", "name and selector are mutually exclusive"}},
	{"exemption of an unknown control", "APIBaseline", `exemptions: [{name: e, target: {namespace: shop}, controls: [Logging], reason: "OPS-1: temporary exception", expires: "2027-01-01T00:00:00Z"}]`,
		[]string{"spec.exemptions[0].controls[0]", "Unsupported value"}},
	{"duplicate exemption names", "APIBaseline", `exemptions:
- {name: e, target: {namespace: a}, reason: "OPS-1: temporary exception", expires: "2027-01-01T00:00:00Z"}
- {name: e, target: {namespace: b}, reason: "OPS-2: temporary exception", expires: "2027-01-01T00:00:00Z"}`,
		[]string{"spec.exemptions[1]", "Duplicate value"}},
	{"no allowed authentication method", "APIBaseline", `require: {authentication: {methods: []}}`,
		[]string{"spec.require.authentication.methods", "at least 1 items"}},
	{"unknown authentication method", "APIBaseline", `require: {authentication: {methods: [Basic]}}`,
		[]string{"spec.require.authentication.methods[0]", "Unsupported value"}},
	{"zero rate-limit ceiling", "APIBaseline", `require: {rateLimit: {ceiling: {requests: 0, unit: Second}}}`,
		[]string{"spec.require.rateLimit.ceiling.requests", "greater than or equal to 1"}},
	{"zero body limit requirement", "APIBaseline", `require: {requestBody: {maxBytes: 0}}`,
		[]string{"spec.require.requestBody.maxBytes", "greater than or equal to 1"}},
	{"baseline TLS 1.0", "APIBaseline", `require: {tls: {minVersion: "1.0"}}`,
		[]string{"spec.require.tls.minVersion", "Unsupported value"}},

	// APIKeySet.
	{"grace period as long as the rotation", "APIKeySet", `rotation: {every: 24h, gracePeriod: 24h}`,
		[]string{"spec.rotation", "gracePeriod must be shorter than every"}},
	{"rotation every 30 seconds", "APIKeySet", `rotation: {every: 30s, gracePeriod: 10s}`,
		[]string{"spec.rotation.every", "every must be at least 1m"}},
	{"rotation that is not a duration", "APIKeySet", `rotation: {every: monthly, gracePeriod: 1h}`,
		[]string{"spec.rotation.every", "should match"}},
	{"negative grace period", "APIKeySet", `rotation: {every: 24h, gracePeriod: -1h}`,
		[]string{"spec.rotation.gracePeriod", "should match"}},
	{"key prefix with capitals", "APIKeySet", `keyPrefix: Shop`, []string{"spec.keyPrefix", "should match"}},
	{"one-letter key prefix", "APIKeySet", `keyPrefix: s`, []string{"spec.keyPrefix", "at least 2 chars long"}},
	{"consumer name with a space", "APIKeySet", `consumers: [{name: "mobile app"}]`,
		[]string{"spec.consumers[0].name", "should match"}},
	{"duplicate consumers", "APIKeySet", `consumers: [{name: a}, {name: a}]`,
		[]string{"spec.consumers[1]", "Duplicate value"}},
	{"consumer rate limit of zero", "APIKeySet", `consumers: [{name: a, rateLimit: {requests: 0, unit: Second}}]`,
		[]string{"spec.consumers[0].rateLimit.requests", "greater than or equal to 1"}},
	{"delivery to an invalid namespace", "APIKeySet", `consumers: [{name: a, secretRef: {namespace: Bad_NS}}]`,
		[]string{"spec.consumers[0].secretRef.namespace", "should match"}},
	{"consumer role with a space", "APIKeySet", `consumers: [{name: a, roles: ["read only"]}]`,
		[]string{"spec.consumers[0].roles[0]", "should match"}},
}

func TestInvalidSpecsAreRejected(t *testing.T) {
	ctx := context.Background()
	for i, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			obj := object(t, tc.kind, fmt.Sprintf("invalid-%d", i), tc.spec)
			// Strict field validation, as kubectl uses by default, so unknown
			// fields are errors rather than silently dropped.
			err := k8s.Create(ctx, obj, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatalf("the apiserver accepted an invalid %s:\n%s", tc.kind, tc.spec)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Fatalf("want an Invalid or BadRequest error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestLongAPIKeySetNameRejected: a key set's name labels its Secrets, so one
// longer than a label value is refused at create, with the reason, rather
// than failing every reconcile.
func TestLongAPIKeySetNameRejected(t *testing.T) {
	ctx := context.Background()
	spec := "consumers: [{name: app}]"
	long := object(t, "APIKeySet", strings.Repeat("k", 64), spec)
	if err := k8s.Create(ctx, long); err == nil || !strings.Contains(err.Error(), "at most 63 characters") {
		t.Fatalf("a 64-character APIKeySet name: %v, want the 63-character refusal", err)
	}
	fits := object(t, "APIKeySet", strings.Repeat("k", 63), spec)
	if err := k8s.Create(ctx, fits, client.DryRunAll); err != nil {
		t.Fatalf("a 63-character APIKeySet name was refused: %v", err)
	}
}

func TestValidEdgeCasesAreAccepted(t *testing.T) {
	cases := []struct {
		name, kind, spec string
	}{
		{"Service port as a section", "APIPolicy", `targetRefs: [{group: "", kind: Service, name: shop, sectionName: https}]`},
		{"Gateway listener as a section", "APIPolicy", `targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: https}]`},
		{"same target on two listeners", "APIPolicy", `targetRefs:
- {group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: a}
- {group: gateway.networking.k8s.io, kind: Gateway, name: edge, sectionName: b}`},
		{"Ingress and GRPCRoute targets", "APIPolicy", `targetRefs:
- {group: networking.k8s.io, kind: Ingress, name: web}
- {group: gateway.networking.k8s.io, kind: GRPCRoute, name: grpc}`},
		{"CORS wildcard without credentials", "APIPolicy", validTarget + `cors: {allowOrigins: ["*"]}`},
		{"burst of exactly ten times", "APIPolicy", validTarget + `rateLimit: {limits: [{by: Global, requests: 5, unit: Second, burst: 50}]}`},
		{"mTLS with a ClusterIssuer", "APIPolicy", validTarget + `authentication: {mtls: {issuerRef: {name: ca, kind: ClusterIssuer}}}`},
		{"no grace period", "APIKeySet", `rotation: {every: 1m, gracePeriod: 0s}`},
		{"exemption by selector", "APIBaseline", `exemptions: [{name: e, target: {namespace: shop, selector: {matchLabels: {tier: legacy}}}, reason: "OPS-1: temporary exception", expires: "2027-01-01T00:00:00Z"}]`},
		{"audit-only baseline requiring nothing but TLS", "APIBaseline", `enforcementAction: Audit
require: {tls: {minVersion: "1.3"}}`},
	}
	ctx := context.Background()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := object(t, tc.kind, fmt.Sprintf("valid-%d", i), tc.spec)
			if err := k8s.Create(ctx, obj, client.FieldValidation("Strict")); err != nil {
				t.Fatalf("the apiserver rejected a valid %s: %v", tc.kind, err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	ctx := context.Background()

	policy := &apiwardenv1alpha1.APIPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: "crd-test"},
		Spec: apiwardenv1alpha1.APIPolicySpec{
			TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "r"}},
			TLS:        &apiwardenv1alpha1.TLSPolicy{HSTS: &apiwardenv1alpha1.HSTS{}},
			Authentication: &apiwardenv1alpha1.Authentication{
				APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "k"}}},
				MTLS:   &apiwardenv1alpha1.MTLSAuthentication{IssuerRef: apiwardenv1alpha1.IssuerReference{Name: "ca"}},
			},
			Authorization: &apiwardenv1alpha1.Authorization{},
		},
	}
	if err := k8s.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	got := policy.Spec
	checks := []struct {
		field string
		got   any
		want  any
	}{
		{"spec.mode", got.Mode, apiwardenv1alpha1.PolicyModeEnforce},
		{"spec.tls.minVersion", got.TLS.MinVersion, apiwardenv1alpha1.TLSVersion12},
		{"spec.tls.httpRedirect", got.TLS.HTTPRedirect, apiwardenv1alpha1.FeatureEnabled},
		{"spec.tls.hsts.maxAgeSeconds", got.TLS.HSTS.MaxAgeSeconds, int64(31536000)},
		{"spec.authentication.apiKey.header", got.Authentication.APIKey.Header, "X-API-Key"},
		{"spec.authentication.mtls.issuerRef.kind", got.Authentication.MTLS.IssuerRef.Kind, "Issuer"},
		{"spec.authentication.mtls.issuerRef.group", got.Authentication.MTLS.IssuerRef.Group, "cert-manager.io"},
		{"spec.authorization.defaultAction", got.Authorization.DefaultAction, apiwardenv1alpha1.AuthorizationActionDeny},
	}

	keys := &apiwardenv1alpha1.APIKeySet{ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: "crd-test"}}
	if err := k8s.Create(ctx, keys); err != nil {
		t.Fatal(err)
	}
	baseline := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "defaults"}}
	if err := k8s.Create(ctx, baseline); err != nil {
		t.Fatal(err)
	}
	if keys.Spec.Rotation == nil || keys.Spec.Rotation.Every == nil || keys.Spec.Rotation.GracePeriod == nil {
		t.Fatalf("apikeyset spec.rotation was not defaulted: %+v", keys.Spec.Rotation)
	}
	if baseline.Spec.Require == nil || baseline.Spec.Require.Authentication == nil {
		t.Fatalf("apibaseline spec.require was not defaulted: %+v", baseline.Spec.Require)
	}
	req := baseline.Spec.Require
	checks = append(checks, []struct {
		field string
		got   any
		want  any
	}{
		{"apikeyset spec.keyPrefix", keys.Spec.KeyPrefix, "apiw"},
		{"apikeyset spec.rotation.every", keys.Spec.Rotation.Every.Duration, 2160 * time.Hour},
		{"apikeyset spec.rotation.gracePeriod", keys.Spec.Rotation.GracePeriod.Duration, 168 * time.Hour},
		{"apibaseline spec.enforcementAction", baseline.Spec.EnforcementAction, apiwardenv1alpha1.EnforcementActionDeny},
		{"apibaseline spec.require.tls set", req.TLS != nil, true},
		{"apibaseline spec.require.authentication.methods", fmt.Sprint(req.Authentication.Methods), "[APIKey JWT MTLS]"},
		{"apibaseline spec.require.rateLimit set", req.RateLimit != nil, true},
		{"apibaseline spec.require.requestBody unset", req.RequestBody == nil, true},
	}...)
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s defaulted to %v, want %v", c.field, c.got, c.want)
		}
	}
}

func TestSamplesAreAccepted(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want a sample per kind in config/samples, found %d files", len(files))
	}
	kinds := map[string]bool{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for i, doc := range strings.Split(string(data), "\n---") {
				u := &unstructured.Unstructured{}
				if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
					t.Fatalf("document %d: %v", i, err)
				}
				if len(u.Object) == 0 {
					continue
				}
				kinds[u.GetKind()] = true
				// Server-side dry run runs every admission and validation
				// step and then stores nothing, so samples can be re-used.
				if err := k8s.Create(context.Background(), u, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
					t.Fatalf("document %d (%s %s): %v", i, u.GetKind(), u.GetName(), err)
				}
			}
		})
	}
	for _, k := range []string{"APIBaseline", "APIPolicy", "APIKeySet"} {
		if !kinds[k] {
			t.Errorf("config/samples has no %s", k)
		}
	}
}

// TestStatusIsASubresource proves that writes to the main resource cannot set
// status, so only apiwarden's controllers (with the status RBAC) can.
func TestStatusIsASubresource(t *testing.T) {
	ctx := context.Background()
	policy := &apiwardenv1alpha1.APIPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "status-subresource", Namespace: "crd-test"},
		Spec: apiwardenv1alpha1.APIPolicySpec{
			TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{{Group: "", Kind: "Service", Name: "s"}},
		},
		Status: apiwardenv1alpha1.APIPolicyStatus{ObservedGeneration: 7},
	}
	if err := k8s.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	if policy.Status.ObservedGeneration != 0 {
		t.Fatalf("status was stored through the main resource: %+v", policy.Status)
	}
	meta := metav1.Condition{Type: apiwardenv1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: apiwardenv1alpha1.ReasonAccepted,
		Message: "ok", LastTransitionTime: metav1.Now(), ObservedGeneration: policy.Generation}
	policy.Status.Conditions = []metav1.Condition{meta}
	if err := k8s.Status().Update(ctx, policy); err != nil {
		t.Fatalf("status update: %v", err)
	}
	// A condition without a reason is invalid (metav1.Condition's schema).
	policy.Status.Conditions[0].Reason = ""
	err := k8s.Status().Update(ctx, policy)
	if err == nil || !apierrors.IsInvalid(err) {
		t.Fatalf("want a condition without reason to be rejected, got %v", err)
	}
	var statusErr *apierrors.StatusError
	if !errors.As(err, &statusErr) || !strings.Contains(err.Error(), "status.conditions[0].reason") {
		t.Fatalf("error does not name status.conditions[0].reason: %v", err)
	}
}
