package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// APIPolicyPath is where the apiserver sends APIPolicy UPDATE and DELETE reviews.
const APIPolicyPath = "/validate-apiwarden-io-v1alpha1-apipolicy"

// maxAffected bounds how many objects one guard decision evaluates, so that
// a policy on a Gateway with thousands of routes cannot stall admission.
// Beyond it the guard refuses the change rather than check only part of it.
const maxAffected = 500

// APIPolicyGuard refuses to delete an APIPolicy, or to update it so that it
// drops protection, while it is what keeps an exposed object compliant with a
// Deny baseline. Under a Warn baseline it admits with warnings.
type APIPolicyGuard struct {
	reader client.Reader // the manager's cache, indexed by SetupIndexes
	store  *Store
	opts   Options
}

// NewAPIPolicyGuard returns the guard.
func NewAPIPolicyGuard(reader client.Reader, store *Store, opts Options) *APIPolicyGuard {
	return &APIPolicyGuard{reader: reader, store: store, opts: opts}
}

// Handle implements admission.Handler.
func (g *APIPolicyGuard) Handle(ctx context.Context, req admission.Request) admission.Response {
	// old is the policy as it is (absent on CREATE), next as it would be
	// (absent on DELETE). A new or changed policy can take protection away
	// too: at one level the older policy wins, so a weaker older policy that
	// gains a target, or a new one that wins a same-second tie, replaces the
	// protection the target had.
	var old, next *apiwardenv1alpha1.APIPolicy
	verb := "Deleting"
	switch req.Operation {
	case admissionv1.Create:
		verb = "Creating"
	case admissionv1.Update:
		verb = "This update of"
	case admissionv1.Delete:
	default:
		return admission.Allowed("")
	}
	if req.Operation != admissionv1.Create {
		old = &apiwardenv1alpha1.APIPolicy{}
		if err := decodeRaw(req.OldObject.Raw, old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the existing APIPolicy: %w", err))
		}
	}
	if req.Operation != admissionv1.Delete {
		next = &apiwardenv1alpha1.APIPolicy{}
		if err := decodeRaw(req.Object.Raw, next); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the APIPolicy: %w", err))
		}
	}
	if old != nil && next != nil && (next.DeletionTimestamp != nil || equality.Semantic.DeepEqual(old.Spec, next.Spec)) {
		// Metadata alone (finalizers, labels, annotations) protects
		// nothing, and a policy being deleted was judged on its DELETE:
		// refusing these would keep finalizers on, whatever the policy's
		// size.
		return admission.Allowed("")
	}
	self := old
	if self == nil {
		self = next
	}

	affected, truncated, err := g.affected(ctx, old, next)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if truncated {
		return admission.Denied(fmt.Sprintf("%s APIPolicy %s/%s cannot be checked: it protects more than %d objects. Split it into policies on fewer targets, or remove the objects first.",
			verb, self.Namespace, self.Name, maxAffected))
	}
	now := g.opts.now()
	eopts := exposure.Options{OwnNamespace: g.opts.OwnNamespace, Webhook: true}

	var denyLines, warnLines []string
	var evalErr error
	namespaces := []string{self.Namespace}
	for _, o := range affected {
		namespaces = append(namespaces, o.GetNamespace())
	}
	viewErr := g.store.View(ctx, dedupe(namespaces), func(snap exposure.Snapshot) {
		after := &overlay{Snapshot: snap, namespace: self.Namespace, name: self.Name, next: next}
		for _, obj := range affected {
			if obj.GetDeletionTimestamp() != nil {
				continue // going away; nothing to leave bare
			}
			before, err := exposure.Evaluate(obj, snap, now, eopts)
			if err != nil {
				evalErr = err
				return
			}
			afterV, err := exposure.Evaluate(obj, after, now, eopts)
			if err != nil {
				evalErr = err
				return
			}
			lost := exposure.Introduced(before.Violations, afterV.Violations)
			if len(lost) == 0 {
				continue
			}
			ref := fmt.Sprintf("%s %s/%s", kindOf(obj), obj.GetNamespace(), obj.GetName())
			if l := exposure.LostProtection(ref, lost, apiwardenv1alpha1.EnforcementActionDeny); l != "" {
				denyLines = append(denyLines, l)
			}
			if l := exposure.LostProtection(ref, lost, apiwardenv1alpha1.EnforcementActionWarn); l != "" {
				warnLines = append(warnLines, l)
			}
		}
	})
	if viewErr != nil || evalErr != nil {
		return admission.Errored(http.StatusInternalServerError, errors.Join(viewErr, evalErr))
	}
	warns := make([]string, 0, len(warnLines))
	for _, l := range warnLines {
		warns = append(warns, fmt.Sprintf("apiwarden: %s APIPolicy %s/%s leaves %s", verb, self.Namespace, self.Name, l))
	}
	if len(denyLines) == 0 {
		return admission.Allowed("").WithWarnings(warns...)
	}
	if len(denyLines) > maxListed {
		denyLines = append(denyLines[:maxListed], fmt.Sprintf("… and %d more", len(denyLines)-maxListed))
	}
	logf.FromContext(ctx).Info("Denied removing protection", "policy", klog.KObj(self), "operation", req.Operation, "objects", len(denyLines))
	msg := fmt.Sprintf("%s APIPolicy %s/%s would leave exposed objects without the protection a Deny baseline requires: %s. Attach another APIPolicy that provides it first, or remove the exposure.",
		verb, self.Namespace, self.Name, strings.Join(denyLines, "; "))
	return admission.Denied(msg).WithWarnings(warns...)
}

// affected returns the objects the policies (the old and the new form of one
// policy; either may be nil) protect: their targets, the routes attached to a
// targeted Gateway, and the Ingresses backed by a targeted Service. Kinds
// whose CRDs are not installed are skipped.
func (g *APIPolicyGuard) affected(ctx context.Context, old, next *apiwardenv1alpha1.APIPolicy) (out []client.Object, truncated bool, err error) {
	seen := map[string]bool{}
	add := func(o client.Object) {
		k := kindOf(o) + "/" + o.GetNamespace() + "/" + o.GetName()
		if seen[k] {
			return
		}
		if len(out) == maxAffected {
			truncated = true
			return
		}
		seen[k] = true
		out = append(out, o)
	}
	p := old
	if p == nil {
		p = next
	}
	get := func(o client.Object, name string) error {
		err := g.reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: name}, o)
		if err == nil && o.GetDeletionTimestamp() != nil {
			return nil
		}
		switch {
		case err == nil:
			add(o)
		case client.IgnoreNotFound(err) == nil || meta.IsNoMatchError(err):
		default:
			return fmt.Errorf("reading target %s/%s: %w", p.Namespace, name, err)
		}
		return nil
	}
	var targets []exposure.TargetKey
	for _, q := range []*apiwardenv1alpha1.APIPolicy{old, next} {
		if q != nil {
			targets = append(targets, exposure.PolicyTargetKeys(q)...)
		}
	}
	for _, k := range targets {
		var err error
		switch k.Kind {
		case "Ingress":
			err = get(&networkingv1.Ingress{}, k.Name)
		case "Service":
			if err = get(&corev1.Service{}, k.Name); err == nil {
				var list networkingv1.IngressList
				err = g.reader.List(ctx, &list, client.InNamespace(p.Namespace), client.MatchingFields{IndexIngressBackend: k.Name})
				for i := range list.Items {
					add(&list.Items[i])
				}
			}
		case "Gateway":
			if err = get(&gatewayv1.Gateway{}, k.Name); err == nil {
				err = g.attachedRoutes(ctx, k, add)
			}
		case "HTTPRoute":
			err = get(&gatewayv1.HTTPRoute{}, k.Name)
		case "GRPCRoute":
			err = get(&gatewayv1.GRPCRoute{}, k.Name)
		}
		if err != nil && !meta.IsNoMatchError(err) {
			return nil, false, fmt.Errorf("finding what APIPolicy %s/%s protects: %w", p.Namespace, p.Name, err)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, truncated, nil
}

func (g *APIPolicyGuard) attachedRoutes(ctx context.Context, gw exposure.TargetKey, add func(client.Object)) error {
	parent := client.MatchingFields{IndexRouteParent: gw.Namespace + "/" + gw.Name}
	var hr gatewayv1.HTTPRouteList
	if err := g.reader.List(ctx, &hr, parent); err != nil && !meta.IsNoMatchError(err) {
		return err
	}
	for i := range hr.Items {
		add(&hr.Items[i])
	}
	var gr gatewayv1.GRPCRouteList
	if err := g.reader.List(ctx, &gr, parent); err != nil && !meta.IsNoMatchError(err) {
		return err
	}
	for i := range gr.Items {
		add(&gr.Items[i])
	}
	return nil
}

func kindOf(o client.Object) string {
	if k, ok := exposure.KindOf(o); ok {
		return k
	}
	return fmt.Sprintf("%T", o)
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
