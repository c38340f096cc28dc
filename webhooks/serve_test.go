package webhooks

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/scheme"
)

// newTestHandler serves the Ingress validator over a store holding one Deny
// baseline, filled by hand as the informers would. This test is about HTTP
// handling of hostile input, not the apiserver, which test/admission covers.
func newTestHandler(t testing.TB) http.Handler {
	t.Helper()
	store := NewStore(nil)
	store.put(&apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "default"}})
	return Handlers(nil, store, Options{Now: func() time.Time { return time.Unix(0, 0) }})[IngressPath]
}

func review(t testing.TB, obj runtime.Object) []byte {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("1"), Operation: admissionv1.Create, Namespace: "shop", Name: "web",
			Kind:   metav1.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
			Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testIngress is an Ingress as the apiserver sends it, with apiVersion and kind.
func testIngress(namespace string, spec networkingv1.IngressSpec) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: namespace},
		Spec:       spec,
	}
}

// bareRules is one host without TLS: every baseline fails it.
var bareRules = networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "shop.example.com"}}}

func post(h http.Handler, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, IngressPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServeRejectsMalformedReviews(t *testing.T) {
	h := newTestHandler(t)
	cases := []struct {
		name, contentType string
		body              []byte
		code              int
	}{
		{"empty body", "application/json", nil, http.StatusBadRequest},
		{"not JSON", "application/json", []byte("{nope"), http.StatusBadRequest},
		{"wrong content type", "text/plain", review(t, &networkingv1.Ingress{}), http.StatusUnsupportedMediaType},
		{"no request", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), http.StatusBadRequest},
		{"no uid", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`), http.StatusBadRequest},
		{"no object", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1"}}`), http.StatusBadRequest},
		{"v1beta1 review", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"1"}}`), http.StatusBadRequest},
		{"too large", "application/json", bytes.Repeat([]byte(" "), maxReviewBytes+1), http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := post(h, c.contentType, c.body)
			if rec.Code != c.code {
				t.Fatalf("HTTP %d, want %d: %s", rec.Code, c.code, rec.Body.String())
			}
		})
	}
	req := httptest.NewRequest(http.MethodGet, IngressPath, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: HTTP %d, want 405", rec.Code)
	}
}

func TestValidReviewIsAnswered(t *testing.T) {
	h := newTestHandler(t)
	in := testIngress("shop", bareRules)
	rec := post(h, "application/json", review(t, in))
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body.String())
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.Allowed || out.Response.UID != "1" ||
		!strings.Contains(out.Response.Result.Message, "Ingress shop/web exposes host shop.example.com without TLS") {
		t.Fatalf("want a denial naming the missing TLS, got %+v", out.Response)
	}
}

// FuzzAdmissionReview sends arbitrary bodies to the Ingress webhook: it must
// never panic and never answer 5xx; malformed input gets 4xx.
func FuzzAdmissionReview(f *testing.F) {
	h := newTestHandler(f)
	in := testIngress("shop", networkingv1.IngressSpec{
		TLS:   []networkingv1.IngressTLS{{Hosts: []string{"*.example.com"}}},
		Rules: []networkingv1.IngressRule{{Host: "a.example.com"}, {}},
	})
	f.Add(review(f, in))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"spec":{"rules":[{"host":"*"}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":null}}`))
	f.Add([]byte(`null`))
	// Updates: the old object is decoded too (the gateway-annotation check).
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"UPDATE","object":{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"annotations":{"traefik.ingress.kubernetes.io/router.middlewares":"a@kubernetescrd"}}},"oldObject":{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"annotations":null}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"UPDATE","object":{"apiVersion":"networking.k8s.io/v1","kind":"Ingress"},"oldObject":"not an object"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := post(h, "application/json", body)
		switch {
		case rec.Code >= 500:
			t.Fatalf("HTTP %d for body %q: %s", rec.Code, body, rec.Body.String())
		case rec.Code == http.StatusOK:
			// Only a well-formed review is answered with 200, and the answer
			// is a v1 AdmissionReview for the same request.
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.Response.UID == "" || out.APIVersion != "admission.k8s.io/v1" {
				t.Fatalf("HTTP 200 without a proper review answer for body %q: %s", body, rec.Body.String())
			}
		case rec.Code < 400:
			t.Fatalf("HTTP %d for body %q", rec.Code, body)
		}
	})
}

// TestActionsShapeTheAnswer: Deny refuses, Warn admits with warnings, Audit
// admits silently, for the same bare Ingress.
func TestActionsShapeTheAnswer(t *testing.T) {
	in := testIngress("shop", bareRules)
	for _, tc := range []struct {
		action   apiwardenv1alpha1.EnforcementAction
		allowed  bool
		warnings int
	}{
		{apiwardenv1alpha1.EnforcementActionDeny, false, 0},
		{apiwardenv1alpha1.EnforcementActionWarn, true, 3},
		{apiwardenv1alpha1.EnforcementActionAudit, true, 0},
	} {
		store := NewStore(nil)
		store.put(&apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: apiwardenv1alpha1.APIBaselineSpec{EnforcementAction: tc.action}})
		h := Handlers(nil, store, Options{})[IngressPath]
		rec := post(h, "application/json", review(t, in))
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("%s: bad answer %s", tc.action, rec.Body.String())
		}
		if out.Response.Allowed != tc.allowed || len(out.Response.Warnings) != tc.warnings {
			t.Errorf("%s: allowed=%v warnings=%q, want allowed=%v and %d warnings", tc.action, out.Response.Allowed, out.Response.Warnings, tc.allowed, tc.warnings)
		}
	}
}

// TestNamespaceNotYetInTheStore: a namespace the informers have not
// delivered is read from the apiserver (here an in-memory reader), so a
// baseline selecting it by label still applies.
func TestNamespaceNotYetInTheStore(t *testing.T) {
	late := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late", Labels: map[string]string{"governed": "yes"}}}
	reader := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(late).Build()
	store := NewStore(reader)
	store.put(&apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: apiwardenv1alpha1.APIBaselineSpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"governed": "yes"}},
	}})
	in := testIngress("late", bareRules)
	body := review(t, in)
	body = bytes.Replace(body, []byte(`"namespace":"shop"`), []byte(`"namespace":"late"`), 1)
	rec := post(Handlers(nil, store, Options{})[IngressPath], "application/json", body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.Response.Allowed {
		t.Fatalf("want a denial in a governed namespace the store had not seen, got %s", rec.Body.String())
	}
}

// TestGatewayAnnotationUpdatesThroughServe: through the HTTP path the
// apiserver uses, an update of a non-compliant Ingress that only sets or
// removes the gateway annotations apiwarden writes is admitted; any other
// update of it is judged (and denied).
func TestGatewayAnnotationUpdatesThroughServe(t *testing.T) {
	h := newTestHandler(t)
	old := testIngress("shop", bareRules)
	old.Annotations = map[string]string{"team": "orders"}
	withMiddleware := old.DeepCopy()
	withMiddleware.Annotations["traefik.ingress.kubernetes.io/router.middlewares"] = "shop-auth@kubernetescrd"
	relabelled := old.DeepCopy()
	relabelled.Labels = map[string]string{"touched": "yes"}
	update := func(from, to *networkingv1.Ingress) *admissionv1.AdmissionResponse {
		t.Helper()
		oldRaw, err := json.Marshal(from)
		if err != nil {
			t.Fatal(err)
		}
		body := review(t, to)
		var r admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		r.Request.Operation, r.Request.OldObject = admissionv1.Update, runtime.RawExtension{Raw: oldRaw}
		if body, err = json.Marshal(r); err != nil {
			t.Fatal(err)
		}
		rec := post(h, "application/json", body)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("bad answer: HTTP %d %s", rec.Code, rec.Body.String())
		}
		return out.Response
	}
	if resp := update(old, withMiddleware); !resp.Allowed {
		t.Errorf("adding the gateway annotation was denied: %+v", resp.Result)
	}
	if resp := update(withMiddleware, old); !resp.Allowed {
		t.Errorf("removing the gateway annotation was denied: %+v", resp.Result)
	}
	if resp := update(old, relabelled); resp.Allowed || !strings.Contains(resp.Result.Message, "without TLS") {
		t.Errorf("another update of a non-compliant Ingress was not judged: %+v", resp)
	}
}
