package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// maxListed bounds how many violations one admission response lists, so a
// pathological object cannot produce a megabyte-long denial.
const maxListed = 10

// Options configure the admission handlers.
type Options struct {
	// OwnNamespace is apiwarden's namespace, never governed.
	OwnNamespace string
	// Now returns the current time; tests may fix it.
	Now func() time.Time
	// Metrics, when set, records every decision.
	Metrics *Metrics
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// exposureValidator admits or rejects one exposable kind as the engine says.
type exposureValidator struct {
	kind   string
	newObj func() client.Object
	store  *Store
	opts   Options
}

// Handle implements admission.Handler.
func (v *exposureValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	obj := v.newObj()
	if err := decodeRaw(req.Object.Raw, obj); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding %s: %w", v.kind, err))
	}
	return v.handleObject(ctx, req, obj)
}

// gatewayAnnotationPrefixes are the annotations apiwarden sets on targets
// for a gateway that reads them there (internal/render/traefik); the
// exposure engine reads none of them.
var gatewayAnnotationPrefixes = []string{"traefik.ingress.kubernetes.io/router."}

// onlyGatewayAnnotationsChanged reports whether old and obj differ in
// nothing but gateway annotations (and the metadata every write changes).
func onlyGatewayAnnotationsChanged(old, obj client.Object) bool {
	strip := func(o client.Object) client.Object {
		c := o.DeepCopyObject().(client.Object)
		c.SetResourceVersion("")
		c.SetGeneration(0)
		c.SetManagedFields(nil)
		anns := map[string]string{}
		for k, v := range c.GetAnnotations() {
			if !slices.ContainsFunc(gatewayAnnotationPrefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
				anns[k] = v
			}
		}
		c.SetAnnotations(anns)
		return c
	}
	return equality.Semantic.DeepEqual(strip(old), strip(obj))
}

// newObject implements objectHandler.
func (v *exposureValidator) newObject() client.Object { return v.newObj() }

// handleObject implements objectHandler: it decides on an object already
// decoded from the review.
func (v *exposureValidator) handleObject(ctx context.Context, req admission.Request, obj client.Object) admission.Response {
	if obj.GetObjectKind().GroupVersionKind().Kind == "" {
		// Objects the apiserver sends always carry apiVersion and kind.
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("the review carries no %s", v.kind))
	}
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		old := v.newObj()
		if err := decodeRaw(req.OldObject.Raw, old); err == nil && onlyGatewayAnnotationsChanged(old, obj) {
			// The gateway annotations apiwarden sets on its targets (or
			// removes when a policy goes) change no exposure decision;
			// refusing them would keep a protection off an object that
			// predates a Deny baseline, or a deleted policy's finalizer on.
			return admission.Allowed("")
		}
	}
	if obj.GetDeletionTimestamp() != nil {
		// Updates of an object being deleted remove finalizers (a cloud
		// controller releasing a load balancer, say); refusing them would
		// leave the object stuck in Terminating.
		return admission.Allowed("")
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace(req.Namespace)
	}
	start := time.Now()
	var verdict exposure.Verdict
	var evalErr error
	err := v.store.View(ctx, []string{obj.GetNamespace()}, func(snap exposure.Snapshot) {
		verdict, evalErr = exposure.Evaluate(obj, snap, v.opts.now(), exposure.Options{OwnNamespace: v.opts.OwnNamespace, Webhook: true})
	})
	if err == nil {
		err = evalErr
	}
	if err != nil {
		// A verdict computed from a partial view could wrongly admit: fail
		// closed, denying the request with the reason.
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("evaluating %s %s/%s: %w", v.kind, obj.GetNamespace(), obj.GetName(), err))
	}
	deny, warn := verdict.ByAction(apiwardenv1alpha1.EnforcementActionDeny), verdict.ByAction(apiwardenv1alpha1.EnforcementActionWarn)
	resp := respond(deny, warn)
	v.opts.Metrics.observe(v.kind, deny, warn, start)
	if !resp.Allowed {
		logf.FromContext(ctx).Info("Denied exposed object", "kind", v.kind, "object", klog.KObj(obj), "codes", codes(deny))
	}
	return resp
}

// decodeRaw decodes an object the apiserver sent. The apiserver has already
// validated and serialized it, so one case-sensitive JSON pass is enough; the
// scheme's decoder would parse it twice.
func decodeRaw(raw []byte, into client.Object) error {
	if len(raw) == 0 {
		return errors.New("the request carries no object")
	}
	// Unknown fields are accepted: the object may be newer than apiwarden's
	// types.
	return sigsjson.UnmarshalCaseSensitivePreserveInts(raw, into)
}

// respond turns violations into an admission response: denied when any deny
// violation exists, with warnings for the warn ones.
func respond(deny, warn []exposure.Violation) admission.Response {
	var resp admission.Response
	if len(deny) > 0 {
		resp = admission.Denied(denialMessage(deny))
	} else {
		resp = admission.Allowed("")
	}
	return resp.WithWarnings(warnings(warn)...)
}

// denialMessage lists each violation's message and fix, one per line.
func denialMessage(vs []exposure.Violation) string {
	var b strings.Builder
	for i, v := range vs {
		if i == maxListed {
			fmt.Fprintf(&b, "\n… and %d more violations; run `apiwarden check` on the manifest to see them all.", len(vs)-maxListed)
			break
		}
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(v.Text())
	}
	return b.String()
}

// warnings renders warn-level violations as admission warnings, which kubectl
// prints. The apiserver may truncate a warning past 256 characters, so the
// code and message come first.
func warnings(vs []exposure.Violation) []string {
	var out []string
	for i, v := range vs {
		if i == maxListed {
			out = append(out, fmt.Sprintf("apiwarden: %d more violations not shown", len(vs)-maxListed))
			break
		}
		out = append(out, fmt.Sprintf("apiwarden %s: %s", v.Code, v.Message))
	}
	return out
}

func codes(vs []exposure.Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v.Code)
	}
	return out
}
