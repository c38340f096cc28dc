package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// maxReviewBytes bounds an AdmissionReview body. The apiserver caps objects
// at about 1.5 MiB and sends the old object too on updates.
const maxReviewBytes = 7 << 20

// Handlers returns every admission endpoint by path. reader is the manager's
// cache (indexed by SetupIndexes); gatewayAPI says whether the Gateway API
// CRDs are installed.
func Handlers(reader client.Reader, scheme *runtime.Scheme, opts Options, gatewayAPI bool) map[string]http.Handler {
	decoder := admission.NewDecoder(scheme)
	handlers := map[string]admission.Handler{
		IngressPath:   NewIngressValidator(reader, decoder, opts),
		ServicePath:   NewServiceValidator(reader, decoder, opts),
		APIPolicyPath: NewAPIPolicyGuard(reader, decoder, opts),
	}
	if gatewayAPI {
		handlers[GatewayPath] = NewGatewayValidator(reader, decoder, opts)
		handlers[HTTPRoutePath] = NewHTTPRouteValidator(reader, decoder, opts)
		handlers[GRPCRoutePath] = NewGRPCRouteValidator(reader, decoder, opts)
	}
	out := make(map[string]http.Handler, len(handlers))
	for path, h := range handlers {
		out[path] = Strict(&admission.Webhook{Handler: h})
	}
	return out
}

// Setup registers the field indexes and the admission endpoints on the
// manager's webhook server.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options, gatewayAPI bool) error {
	if err := SetupIndexes(ctx, mgr.GetFieldIndexer(), gatewayAPI); err != nil {
		return err
	}
	for path, h := range Handlers(mgr.GetCache(), mgr.GetScheme(), opts, gatewayAPI) {
		mgr.GetWebhookServer().Register(path, h)
	}
	return nil
}

// Strict wraps an admission webhook so that malformed requests get HTTP 400
// (controller-runtime answers them with HTTP 200 and an error inside the
// review): a POST with a JSON AdmissionReview of version v1 carrying a
// request with a UID, within the size limit.
func Strict(next http.Handler) http.Handler {
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
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil {
			badRequest(w, http.StatusBadRequest, fmt.Errorf("the body is not an AdmissionReview: %w", err))
			return
		}
		if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
			badRequest(w, http.StatusBadRequest, fmt.Errorf("want an admission.k8s.io/v1 AdmissionReview, got %q %q", review.APIVersion, review.Kind))
			return
		}
		if review.Request == nil || review.Request.UID == "" {
			badRequest(w, http.StatusBadRequest, errors.New("the AdmissionReview has no request or no request uid"))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
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
