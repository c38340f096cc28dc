package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sigsjson "sigs.k8s.io/json"
)

// maxReviewBytes bounds an AdmissionReview body. The apiserver caps objects
// at about 1.5 MiB and sends the old object too on updates.
const maxReviewBytes = 7 << 20

// Handlers returns every admission endpoint by path. reader is the manager's
// cache (indexed by SetupIndexes); store holds the policies, baselines and
// namespaces the engine reads.
func Handlers(reader client.Reader, store *Store, opts Options) map[string]http.Handler {
	// The Gateway API validators read only APIPolicies, APIBaselines and
	// Namespaces, so they are served even before the Gateway API CRDs
	// exist: installing the CRDs later then needs no restart for them.
	handlers := map[string]admission.Handler{
		IngressPath:   NewIngressValidator(store, opts),
		ServicePath:   NewServiceValidator(store, opts),
		APIPolicyPath: NewAPIPolicyGuard(reader, store, opts),
		GatewayPath:   NewGatewayValidator(store, opts),
		HTTPRoutePath: NewHTTPRouteValidator(store, opts),
		GRPCRoutePath: NewGRPCRouteValidator(store, opts),
	}
	out := make(map[string]http.Handler, len(handlers))
	for path, h := range handlers {
		out[path] = Serve(h)
	}
	return out
}

// Setup registers the field indexes, fills a Store from the informers,
// starts the other informers admission reads (so that readiness, which waits
// for the cache, covers them), and registers the admission endpoints on the
// manager's webhook server. Callers should add store.Synced to readiness. gatewayAPI says
// whether the Gateway API CRDs are installed: without them, the guard cannot
// find the routes attached to a Gateway and refuses changes to policies on
// Gateways until the manager restarts.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options, gatewayAPI bool) (*Store, error) {
	if err := SetupIndexes(ctx, mgr.GetFieldIndexer(), gatewayAPI); err != nil {
		return nil, err
	}
	store := NewStore(mgr.GetAPIReader())
	if err := store.Watch(ctx, mgr.GetCache()); err != nil {
		return nil, err
	}
	for _, o := range []client.Object{&corev1.Service{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, o); err != nil {
			return nil, fmt.Errorf("starting the %T informer: %w", o, err)
		}
	}
	if gatewayAPI {
		if _, err := mgr.GetCache().GetInformer(ctx, &gatewayv1.Gateway{}); err != nil {
			return nil, fmt.Errorf("starting the Gateway informer: %w", err)
		}
	}
	for path, h := range Handlers(mgr.GetCache(), store, opts) {
		mgr.GetWebhookServer().Register(path, h)
	}
	return store, nil
}

// Serve answers AdmissionReviews for h over HTTP. It decodes each review
// once, with the object straight into its type when h allows it (controller-runtime's admission.Webhook parses it twice, to sniff its
// kind and then to decode it), and it answers malformed requests with HTTP
// 4xx where admission.Webhook answers HTTP 200 with an error inside: a POST of
// application/json holding an admission.k8s.io/v1 AdmissionReview whose
// request has a UID, within the size limit. A panic in h is recovered and
// answered with HTTP 500, so one bad request cannot stop the server.
func Serve(h admission.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			badRequest(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed; admission reviews are POSTed", r.Method))
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			badRequest(w, http.StatusUnsupportedMediaType, errors.New("content type must be application/json"))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
		if err != nil {
			badRequest(w, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err))
			return
		}
		if len(body) > maxReviewBytes {
			badRequest(w, http.StatusRequestEntityTooLarge, fmt.Errorf("the admission review exceeds %d bytes", maxReviewBytes))
			return
		}
		req, obj, err := decodeReview(body, h)
		if err != nil {
			badRequest(w, http.StatusBadRequest, err)
			return
		}
		resp, ok := handleRecovering(r.Context(), h, req, obj)
		if !ok {
			badRequest(w, http.StatusInternalServerError, errors.New("the admission handler failed; see the manager's log"))
			return
		}
		if err := resp.Complete(req); err != nil {
			badRequest(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
			Response: &resp.AdmissionResponse,
		})
	})
}

// objectHandler is a handler that takes its object already decoded, so
// Serve can decode the review and the object in one pass.
type objectHandler interface {
	newObject() client.Object
	handleObject(ctx context.Context, req admission.Request, obj client.Object) admission.Response
}

// typedRequest decodes an AdmissionRequest with its object straight into a
// typed value: the outer Object field shadows the embedded raw one.
type typedRequest struct {
	admissionv1.AdmissionRequest
	Object any `json:"object"`
}

// decodeReview decodes and checks a review. For an objectHandler the object
// is decoded in the same pass and returned; otherwise obj is nil and the
// request carries the raw object. Decoding is case-sensitive, as the
// apiserver's own: a field spelled differently is not taken for another.
func decodeReview(body []byte, h admission.Handler) (admission.Request, client.Object, error) {
	var review struct {
		APIVersion string        `json:"apiVersion"`
		Kind       string        `json:"kind"`
		Request    *typedRequest `json:"request"`
	}
	oh, typed := h.(objectHandler)
	var obj client.Object
	if typed {
		obj = oh.newObject()
		review.Request = &typedRequest{Object: obj}
	} else {
		review.Request = &typedRequest{Object: &runtime.RawExtension{}}
	}
	// Not the strict decoder: tracking duplicate keys in every nested object
	// costs more than the rest of the decision, and the apiserver, which
	// serializes these objects itself, never sends duplicates.
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return admission.Request{}, nil, fmt.Errorf("the body is not an AdmissionReview: %w", err)
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return admission.Request{}, nil, fmt.Errorf("want an admission.k8s.io/v1 AdmissionReview, got %q %q", review.APIVersion, review.Kind)
	}
	if review.Request == nil || review.Request.UID == "" {
		return admission.Request{}, nil, errors.New("the AdmissionReview has no request or no request uid")
	}
	req := admission.Request{AdmissionRequest: review.Request.AdmissionRequest}
	switch o := review.Request.Object.(type) {
	case *runtime.RawExtension:
		req.Object = *o
	case nil:
		// "object": null, as on DELETE.
		obj = nil
	}
	// An object the apiserver sends always carries its kind; without one
	// the review had no object (or an empty one).
	if typed && (review.Request.Object == nil || obj.GetObjectKind().GroupVersionKind().Kind == "") {
		return admission.Request{}, nil, errors.New("the AdmissionReview carries no object")
	}
	return req, obj, nil
}

func handleRecovering(ctx context.Context, h admission.Handler, req admission.Request, obj client.Object) (resp admission.Response, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			logf.FromContext(ctx).Error(fmt.Errorf("panic: %v", p), "Admission handler panicked", "uid", req.UID, "kind", req.Kind.Kind)
			ok = false
		}
	}()
	if oh, typed := h.(objectHandler); typed && obj != nil {
		return oh.handleObject(ctx, req, obj), true
	}
	return h.Handle(ctx, req), true
}

func badRequest(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Code: int32(code), Message: err.Error(),
		Reason: metav1.StatusReasonBadRequest,
	})
}
