package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/keys"
	"github.com/apiwarden/apiwarden/internal/keystore"
)

var testPepper = bytes.Repeat([]byte("p"), keys.MinPepperLen)

type testKey struct {
	consumer string
	roles    []string
	notAfter *time.Time
}

// hashStore builds the hash store Secret the controller would write, and
// returns the plaintext keys by consumer.
func hashStore(t testing.TB, ns, set string, ks ...testKey) (*corev1.Secret, map[string]string) {
	t.Helper()
	plain := map[string]string{}
	var entries []keystore.HashEntry
	for _, k := range ks {
		key, err := keys.Generate("shop")
		if err != nil {
			t.Fatal(err)
		}
		plain[k.consumer] = key
		h := keys.HashKey(testPepper, key)
		entries = append(entries, keystore.HashEntry{ID: h.ID(), Hash: h.String(), Consumer: k.consumer, Roles: k.roles, NotAfter: k.notAfter})
	}
	raw, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testHome, Name: keystore.HashStoreName(ns, set), Labels: keystore.HashStoreLabels(ns, set)},
		Data:       map[string][]byte{keystore.HashesField: raw},
	}, plain
}

// testHome is apiwarden's namespace in these tests: where hash stores live.
const testHome = "apiwarden-system"

func testPolicy(mutate func(*apiwardenv1alpha1.APIPolicySpec)) *apiwardenv1alpha1.APIPolicy {
	p := &apiwardenv1alpha1.APIPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"},
		Spec: apiwardenv1alpha1.APIPolicySpec{
			Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{
				KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "clients"}},
				Header:     "X-API-Key",
			}},
		},
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

func newTestStore(t testing.TB, p *apiwardenv1alpha1.APIPolicy, ks ...testKey) (*Store, map[string]string) {
	t.Helper()
	s := NewStore(testHome, NewMetrics(nil))
	if err := s.SetPepper(testPepper); err != nil {
		t.Fatal(err)
	}
	s.UpsertPolicy(p)
	sec, plain := hashStore(t, "shop", "clients", ks...)
	if err := s.UpsertHashStore(sec); err != nil {
		t.Fatal(err)
	}
	s.MarkSynced()
	return s, plain
}

func req(method, path string, h http.Header) *Input {
	return &Input{Policy: "shop/orders", Method: method, Path: path, Headers: httpHeaders(h), Client: "192.0.2.1"}
}

func withKey(k string) http.Header { return http.Header{"X-Api-Key": {k}} }

func TestCheck(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Hour)
	p := testPolicy(func(s *apiwardenv1alpha1.APIPolicySpec) {
		s.Authorization = &apiwardenv1alpha1.Authorization{
			DefaultAction: apiwardenv1alpha1.AuthorizationActionDeny,
			Rules: []apiwardenv1alpha1.AuthorizationRule{
				{Name: "no-admin-delete", Action: apiwardenv1alpha1.AuthorizationActionDeny, Methods: []apiwardenv1alpha1.HTTPMethod{"DELETE"}, Paths: []apiwardenv1alpha1.PathMatch{{Type: apiwardenv1alpha1.PathMatchPathPrefix, Value: "/admin/"}}},
				{Name: "admins", Action: apiwardenv1alpha1.AuthorizationActionAllow, Roles: []string{"admin"}},
				{Name: "readers", Action: apiwardenv1alpha1.AuthorizationActionAllow, Methods: []apiwardenv1alpha1.HTTPMethod{"GET", "HEAD"}, Paths: []apiwardenv1alpha1.PathMatch{{Type: apiwardenv1alpha1.PathMatchPathPrefix, Value: "/orders"}, {Type: apiwardenv1alpha1.PathMatchExact, Value: "/status"}}},
				{Name: "jwt-only", Action: apiwardenv1alpha1.AuthorizationActionAllow, Claims: []apiwardenv1alpha1.ClaimRequirement{{Name: "scope", Values: []string{"x"}}}},
			},
		}
	})
	s, k := newTestStore(t, p,
		testKey{consumer: "app"},
		testKey{consumer: "ops", roles: []string{"admin"}},
		testKey{consumer: "old", notAfter: &past},
		testKey{consumer: "grace", notAfter: &future},
	)
	other, err := keys.Generate("shop")
	if err != nil {
		t.Fatal(err)
	}
	typo := k["app"][:len(k["app"])-1] + string("0123456789"[(strings.IndexByte("0123456789", k["app"][len(k["app"])-1])+1)%10])
	if strings.IndexByte("0123456789", k["app"][len(k["app"])-1]) < 0 {
		typo = k["app"][:len(k["app"])-1] + "0"
	}
	cases := []struct {
		name     string
		in       *Input
		want     Code
		consumer string
		rule     string
	}{
		{"reader GET", req("GET", "/orders/1", withKey(k["app"])), Allowed, "app", "readers"},
		{"reader GET exact prefix", req("GET", "/orders", withKey(k["app"])), Allowed, "app", "readers"},
		{"reader GET with query", req("GET", "/orders?page=2", withKey(k["app"])), Allowed, "app", "readers"},
		{"reader exact", req("GET", "/status", withKey(k["app"])), Allowed, "app", "readers"},
		{"reader exact is exact", req("GET", "/status/x", withKey(k["app"])), Forbidden, "app", ""},
		{"prefix matches segments only", req("GET", "/ordersx", withKey(k["app"])), Forbidden, "app", ""},
		{"reader POST", req("POST", "/orders", withKey(k["app"])), Forbidden, "app", ""},
		{"admin POST", req("POST", "/orders", withKey(k["ops"])), Allowed, "ops", "admins"},
		{"deny rule first", req("DELETE", "/admin/users", withKey(k["ops"])), Forbidden, "ops", "no-admin-delete"},
		{"grace key", req("GET", "/orders", withKey(k["grace"])), Allowed, "grace", "readers"},
		{"expired key", req("GET", "/orders", withKey(k["old"])), KeyExpired, "old", ""},
		{"unknown key", req("GET", "/orders", withKey(other)), KeyUnknown, "", ""},
		{"typo", req("GET", "/orders", withKey(typo)), KeyMalformed, "", ""},
		{"garbage", req("GET", "/orders", withKey("Bearer abc")), KeyMalformed, "", ""},
		{"two keys", req("GET", "/orders", http.Header{"X-Api-Key": {k["app"], k["ops"]}}), KeyMalformed, "", ""},
		{"missing", req("GET", "/orders", http.Header{}), KeyMissing, "", ""},
		{"empty", req("GET", "/orders", withKey("")), KeyMissing, "", ""},
		{"wrong header", req("GET", "/orders", http.Header{"Authorization": {k["app"]}}), KeyMissing, "", ""},
		{"key in query by shape", req("GET", "/orders?x="+k["app"], withKey(k["app"])), KeyInQuery, "", ""},
		{"key in query by name", req("GET", "/orders?api_key=zzz", http.Header{}), KeyInQuery, "", ""},
		{"key in query by header name", req("GET", "/orders?a=1&X-API-KEY=zzz", http.Header{}), KeyInQuery, "", ""},
		{"empty key param is fine", req("GET", "/orders?api_key=", withKey(k["app"])), Allowed, "app", "readers"},
		{"dot segment", req("GET", "/orders/../admin", withKey(k["ops"])), PathRejected, "ops", ""},
		{"double slash", req("GET", "//admin/users", withKey(k["ops"])), PathRejected, "ops", ""},
		{"encoded letter", req("GET", "/%6frders", withKey(k["app"])), PathRejected, "app", ""},
		{"encoded slash", req("DELETE", "/admin%2Fusers", withKey(k["ops"])), PathRejected, "ops", ""},
		{"backslash", req("DELETE", "/admin\\users", withKey(k["ops"])), PathRejected, "ops", ""},
		{"encoded space is fine", req("GET", "/orders/a%20b", withKey(k["app"])), Allowed, "app", "readers"},
		{"unknown policy", &Input{Policy: "shop/nope", Method: "GET", Path: "/", Headers: httpHeaders(withKey(k["app"]))}, PolicyUnknown, "", ""},
		{"no policy", &Input{Method: "GET", Path: "/", Headers: httpHeaders(withKey(k["app"]))}, PolicyUnknown, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.Check(c.in, now)
			if r.Code != c.want || r.Consumer != c.consumer || r.Rule != c.rule {
				t.Fatalf("got %s consumer=%q rule=%q, want %s consumer=%q rule=%q", r.Code, r.Consumer, r.Rule, c.want, c.consumer, c.rule)
			}
			body := r.Body()
			for _, key := range k {
				if strings.Contains(body, key) {
					t.Fatal("the body quotes a key")
				}
			}
			if c.want != Allowed && !json.Valid([]byte(body)) {
				t.Fatalf("body is not JSON: %s", body)
			}
		})
	}
}

func TestCheckWithoutRulesAndDryRun(t *testing.T) {
	now := time.Now()
	s, k := newTestStore(t, testPolicy(nil), testKey{consumer: "app"})
	if r := s.Check(req("DELETE", "//anything/..", withKey(k["app"])), now); r.Code != Allowed || r.Consumer != "app" {
		t.Fatalf("no rules: got %s, want allowed (paths matter only to path rules)", r.Code)
	}
	s.UpsertPolicy(testPolicy(func(p *apiwardenv1alpha1.APIPolicySpec) { p.Mode = apiwardenv1alpha1.PolicyModeDryRun }))
	r := s.Check(req("GET", "/", http.Header{}), now)
	if r.Code != Allowed || r.DryRun != KeyMissing {
		t.Fatalf("dry run: got %s/%s, want allowed/key_missing", r.Code, r.DryRun)
	}
	s.DeletePolicy("shop", "orders")
	if r := s.Check(req("GET", "/", withKey(k["app"])), now); r.Code != PolicyUnknown {
		t.Fatalf("deleted policy: got %s", r.Code)
	}
}

func TestNotReadyUntilSyncedAndPeppered(t *testing.T) {
	s := NewStore(testHome, nil)
	s.UpsertPolicy(testPolicy(nil))
	in := req("GET", "/", http.Header{})
	if r := s.Check(in, time.Now()); r.Code != NotReady || r.Code.Status() != 503 {
		t.Fatalf("got %s", r.Code)
	}
	s.MarkSynced()
	if r := s.Check(in, time.Now()); r.Code != NotReady {
		t.Fatalf("without pepper: got %s", r.Code)
	}
	if err := s.SetPepper(testPepper[:10]); err == nil {
		t.Fatal("short pepper accepted")
	}
	if err := s.SetPepper(testPepper); err != nil {
		t.Fatal(err)
	}
	if r := s.Check(in, time.Now()); r.Code != KeyMissing {
		t.Fatalf("ready: got %s", r.Code)
	}
}

func TestHashStoreTrust(t *testing.T) {
	s, k := newTestStore(t, testPolicy(nil))
	now := time.Now()
	sec, plain := hashStore(t, "shop", "clients", testKey{consumer: "app"})
	k = plain
	// A namespace user may write Secrets in their namespace, labels and
	// all: only apiwarden's namespace is trusted.
	forged := sec.DeepCopy()
	forged.Namespace = "shop"
	if err := s.UpsertHashStore(forged); err != nil {
		t.Fatal(err)
	}
	if r := s.Check(req("GET", "/", withKey(k["app"])), now); r.Code != KeyUnknown {
		t.Fatalf("a hash store outside apiwarden's namespace was trusted: %s", r.Code)
	}
	renamed := sec.DeepCopy()
	renamed.Name = "clients-copy"
	_ = s.UpsertHashStore(renamed)
	if r := s.Check(req("GET", "/", withKey(k["app"])), now); r.Code != KeyUnknown {
		t.Fatalf("a hash store with the wrong name was trusted: %s", r.Code)
	}
	relabelled := sec.DeepCopy()
	relabelled.Labels[keystore.LabelKeySetNamespace] = "other"
	_ = s.UpsertHashStore(relabelled)
	if r := s.Check(req("GET", "/", withKey(k["app"])), now); r.Code != KeyUnknown {
		t.Fatalf("a hash store whose labels name another key set was trusted: %s", r.Code)
	}
	if err := s.UpsertHashStore(sec); err != nil {
		t.Fatal(err)
	}
	if r := s.Check(req("GET", "/", withKey(k["app"])), now); r.Code != Allowed {
		t.Fatalf("got %s", r.Code)
	}
	corrupt := sec.DeepCopy()
	corrupt.Data[keystore.HashesField] = []byte(`[{"id":"kx","hash":"zz","consumer":"app"}]`)
	if err := s.UpsertHashStore(corrupt); err == nil || strings.Contains(err.Error(), k["app"]) {
		t.Fatalf("corrupt store: err = %v", err)
	}
	if r := s.Check(req("GET", "/", withKey(k["app"])), now); r.Code != KeyUnknown {
		t.Fatalf("a corrupt hash store must drop the set's keys (fail closed): %s", r.Code)
	}
	_ = s.UpsertHashStore(sec)
	s.DeleteHashStore("shop", "clients")
	if r := s.Check(req("GET", "/", withKey(k["app"])), now); r.Code != KeyUnknown {
		t.Fatalf("deleted store: %s", r.Code)
	}
}

func TestUsage(t *testing.T) {
	s, k := newTestStore(t, testPolicy(nil), testKey{consumer: "app"}, testKey{consumer: "idle"})
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for range 3 {
		s.Check(req("GET", "/", withKey(k["app"])), now)
	}
	s.Check(req("GET", "/?api_key=x", withKey(k["idle"])), now) // refused: not a use
	u := s.Usage()
	if len(u) != 1 || u[0].Consumer != "app" || u[0].Uses != 3 || !u[0].LastUsed.Equal(now) || u[0].KeySet != "clients" {
		t.Fatalf("usage = %+v", u)
	}
	// Usage survives a rebuild of the set (a rotation of another consumer).
	sec, _ := hashStore(t, "shop", "clients")
	_ = s.UpsertHashStore(sec) // app's key is gone now, but its use is not reported yet
	if u := s.Usage(); len(u) != 1 {
		t.Fatalf("usage of a removed key was dropped before it was reported: %+v", u)
	}
	s.MarkReported(u[0].ID, now)
	_ = s.UpsertHashStore(sec)
	if u := s.Usage(); len(u) != 0 {
		t.Fatalf("reported usage of a removed key kept: %+v", u)
	}
}

func TestNormalPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/a": true, "/a/": true, "/a/b.c": true, "/a/%20": true, "/a/..b": true, "/.well-known/x": true,
		"": false, "a": false, "//": false, "/a//b": false, "/.": false, "/..": false, "/a/./b": false, "/a/../b": false,
		"/%2e%2e/": false, "/%2F": false, "/%5c": false, "/%00": false, "/%": false, "/%4": false, "/%zz": false, "/a\x00": false, "/a#b": false,
	} {
		if got := normalPath(p); got != want {
			t.Errorf("normalPath(%q) = %t, want %t", p, got, want)
		}
	}
}

func TestFailureTrackerIsBounded(t *testing.T) {
	f := newFailureTracker(2)
	for _, c := range []string{"a", "a", "a", "b", "c", "d", ""} {
		f.add(c)
	}
	got, other := f.drain(2)
	if len(got) != 1 || got[0] != (ClientFailures{"a", 3}) || other != 3 {
		t.Fatalf("got %v other=%d", got, other)
	}
	if got, other := f.drain(1); len(got) != 0 || other != 0 {
		t.Fatal("drain did not start a new window")
	}
}

func FuzzCheck(f *testing.F) {
	s, k := newTestStore(f, testPolicy(func(p *apiwardenv1alpha1.APIPolicySpec) {
		p.Authorization = &apiwardenv1alpha1.Authorization{Rules: []apiwardenv1alpha1.AuthorizationRule{{Name: "r", Action: apiwardenv1alpha1.AuthorizationActionAllow, Paths: []apiwardenv1alpha1.PathMatch{{Value: "/a"}}}}}
	}), testKey{consumer: "app"})
	f.Add("GET", "/a?x=1", k["app"])
	f.Add("GET", "/a/../b", k["app"])
	f.Add("POST", "/%2e", "shop_x")
	f.Fuzz(func(t *testing.T, method, path, key string) {
		r := s.Check(req(method, path, withKey(key)), time.Now())
		if r.Code == Allowed && (key != k["app"] || !normalPath(strings.SplitN(path, "?", 2)[0])) {
			t.Fatalf("allowed %q %q with a key that is not app's or a path not in normal form", method, path)
		}
		if strings.Contains(r.Body(), key) && len(key) > 8 {
			t.Fatal("the body quotes the key")
		}
	})
}

// FuzzForwardAuth sends arbitrary forwarded requests through the HTTP
// handler: it must never panic, always answer with a known status, and allow
// only app's key on a path in normal form.
func FuzzForwardAuth(f *testing.F) {
	s, k := newTestStore(f, testPolicy(func(p *apiwardenv1alpha1.APIPolicySpec) {
		p.Authorization = &apiwardenv1alpha1.Authorization{Rules: []apiwardenv1alpha1.AuthorizationRule{{Name: "r", Action: apiwardenv1alpha1.AuthorizationActionAllow, Paths: []apiwardenv1alpha1.PathMatch{{Value: "/a"}}}}}
	}), testKey{consumer: "app"})
	h := HTTPHandler(s, time.Now)
	f.Add("/v1/forward-auth/shop/orders", "GET", "/a?x=1", "", k["app"])
	f.Add("/v1/forward-auth/shop/orders", "", "", "https://h/a/../b?api_key=1", k["app"])
	f.Add("/v1/forward-auth//", "POST", "%%", "http://", "x")
	f.Fuzz(func(t *testing.T, target, method, uri, original, key string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t#?") {
			return
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			return // not a request the HTTP server would hand to the handler
		}
		r := httptest.NewRequest(http.MethodGet, "http://authz"+target, nil)
		if method != "" {
			r.Header["X-Forwarded-Method"] = []string{method}
		}
		if uri != "" {
			r.Header["X-Forwarded-Uri"] = []string{uri}
		}
		if original != "" {
			r.Header["X-Original-Url"] = []string{original}
		}
		r.Header["X-Api-Key"] = []string{key}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200:
			if key != k["app"] {
				t.Fatalf("allowed a key that is not app's")
			}
		case 400, 401, 403, 404:
		default:
			t.Fatalf("status %d", w.Code)
		}
		if len(key) > 8 && strings.Contains(w.Body.String(), key) {
			t.Fatal("the body quotes the key")
		}
	})
}

// A DryRun policy rendered into Envoy never blocks, even when the service
// cannot decide: not ready yet, or the policy not yet known.
func TestGRPCDryRunModeNeverBlocks(t *testing.T) {
	s := NewStore(testHome, nil)
	g := NewGRPCServer(s, time.Now)
	check := func(mode string) *authv3.CheckResponse {
		t.Helper()
		ext := map[string]string{PolicyContextKey: "shop/unknown"}
		if mode != "" {
			ext[ModeContextKey] = mode
		}
		resp, err := g.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}},
			ContextExtensions: ext,
		}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := check(""); resp.GetOkResponse() != nil {
		t.Fatal("not ready, Enforce: allowed")
	}
	resp := check("DryRun")
	if resp.GetOkResponse() == nil {
		t.Fatalf("not ready, DryRun: denied: %v", resp.GetDeniedResponse())
	}
	dry := false
	for _, h := range resp.GetOkResponse().GetHeaders() {
		dry = dry || (h.GetHeader().GetKey() == "x-apiwarden-dry-run" && h.GetHeader().GetValue() != "")
	}
	if !dry {
		t.Error("DryRun pass-through does not say what it would have done")
	}
	s.MarkSynced()
	if err := s.SetPepper(testPepper); err != nil {
		t.Fatal(err)
	}
	if resp := check(""); resp.GetOkResponse() != nil {
		t.Fatal("unknown policy, Enforce: allowed")
	}
	if resp := check("DryRun"); resp.GetOkResponse() == nil {
		t.Fatal("unknown policy, DryRun: denied")
	}
	if resp := check("Enforce"); resp.GetOkResponse() != nil {
		t.Fatal("unknown policy, mode Enforce: allowed")
	}
}

// The same through forward-auth (Traefik): the rendered URL carries
// mode=DryRun, and the service then never blocks, whether it is not ready,
// does not know the policy, or gets no original URI. Without the mode, or
// with another, it refuses as before.
func TestHTTPDryRunModeNeverBlocks(t *testing.T) {
	s := NewStore(testHome, nil)
	h := HTTPHandler(s, time.Now)
	check := func(query string, withURI bool) *httptest.ResponseRecorder {
		t.Helper()
		target := ForwardAuthPrefix + "shop/unknown"
		if query != "" {
			target += "?" + query
		}
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if withURI {
			r.Header.Set("X-Forwarded-Uri", "/orders")
			r.Header.Set("X-Forwarded-Method", "GET")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	expect := func(what string, w *httptest.ResponseRecorder, code int, dryRun string) {
		t.Helper()
		if w.Code != code || w.Header().Get(DryRunHeader) != dryRun {
			t.Errorf("%s: HTTP %d, %s %q; want %d, %q", what, w.Code, DryRunHeader, w.Header().Get(DryRunHeader), code, dryRun)
		}
	}
	expect("not ready, Enforce", check("", true), http.StatusServiceUnavailable, "")
	expect("not ready, DryRun", check("mode=DryRun", true), http.StatusOK, "not_ready")
	expect("no URI, Enforce", check("", false), http.StatusBadRequest, "")
	expect("no URI, DryRun", check("mode=DryRun", false), http.StatusOK, "path_rejected")
	s.MarkSynced()
	if err := s.SetPepper(testPepper); err != nil {
		t.Fatal(err)
	}
	expect("unknown policy, Enforce", check("", true), http.StatusForbidden, "")
	expect("unknown policy, mode=Enforce", check("mode=Enforce", true), http.StatusForbidden, "")
	expect("unknown policy, DryRun", check("mode=DryRun", true), http.StatusOK, "policy_unknown")
	expect("unknown policy, dryrun (case matters)", check("mode=dryrun", true), http.StatusForbidden, "")
}

// The client a forward-auth request is counted under is the address the
// proxy added, never one the client wrote.
func TestForwardedClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  map[string][]string
		want string
	}{
		{"proxy's entry", map[string][]string{"X-Forwarded-For": {"10.0.0.9"}}, "10.0.0.9"},
		{"client's entries to the left", map[string][]string{"X-Forwarded-For": {"1.2.3.4, 5.6.7.8,10.0.0.9"}}, "10.0.0.9"},
		{"several header lines", map[string][]string{"X-Forwarded-For": {"1.2.3.4", "10.0.0.9"}}, "10.0.0.9"},
		{"IPv6", map[string][]string{"X-Forwarded-For": {"1.2.3.4, 2001:db8::1"}}, "2001:db8::1"},
		{"not an address", map[string][]string{"X-Forwarded-For": {strings.Repeat("x", 10000)}}, "192.0.2.1"},
		{"X-Real-Ip", map[string][]string{"X-Real-Ip": {"10.0.0.7"}}, "10.0.0.7"},
		{"X-Real-Ip not an address", map[string][]string{"X-Real-Ip": {"admin"}}, "192.0.2.1"},
		{"no header", nil, "192.0.2.1"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "192.0.2.1:41000"
		for k, v := range tc.hdr {
			r.Header[k] = v
		}
		if got := forwardedClient(r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
