package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/prometheus/client_golang/prometheus"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/render"
)

// indexPolicyTarget indexes APIPolicies by the "group/kind/namespace/name" of
// each target (exposure.TargetKey.String).
const indexPolicyTarget = "apiwarden.io/policy-target"

// APIPolicyReconciler renders APIPolicies into the configuration of the
// gateway (see package render) and applies it with server-side apply.
//
// Rendered objects are owned by their policy (garbage-collected with it) and
// listed in its status; an object listed before and no longer rendered is
// deleted. The controller starts without the Gateway API or the gateway's
// CRDs: it watches CustomResourceDefinitions, reports GatewayNotInstalled
// until they exist, then starts its route and Gateway watches and renders,
// with no restart.
type APIPolicyReconciler struct {
	// Client reads from the manager's cache and writes to the apiserver.
	Client client.Client
	// Reader reads from the apiserver directly, for objects apiwarden does
	// not cache (rendered objects, checked before they are pruned).
	Reader client.Reader
	// Cache is the manager's cache, for watches started after the Gateway
	// API CRDs appear.
	Cache cache.Cache
	// Recorder emits Events on policies.
	Recorder record.EventRecorder
	// Renderer is the gateway apiwarden programs.
	Renderer render.Renderer
	// Authz is where apiwarden's authz service listens.
	Authz render.AuthzService
	// Registerer, when set, receives the client-certificate expiry metric.
	Registerer prometheus.Registerer
	// Workers is how many policies are reconciled at once (default 8).
	// A reconcile mostly waits on the apiserver (one apply per rendered
	// object, then status), so more workers than cores pays off.
	Workers int

	ctrl    controller.Controller
	crds    crdSet       // optional CRDs seen installed, and the watches waiting on them
	applied appliedCache // what was last applied to each object, to skip no-op applies
}

var gatewayAPIKinds = []schema.GroupVersionKind{
	gatewayv1.SchemeGroupVersion.WithKind("Gateway"),
	gatewayv1.SchemeGroupVersion.WithKind("HTTPRoute"),
	gatewayv1.SchemeGroupVersion.WithKind("GRPCRoute"),
}

// crdNames are the CRD names of kinds.
func crdNames(kinds []schema.GroupVersionKind) []string {
	out := make([]string, 0, len(kinds))
	for _, gvk := range kinds {
		if n := crdName(gvk); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// missingCRDs lists the CRDs the renderer needs that are not installed.
func (r *APIPolicyReconciler) missingCRDs() []string {
	var out []string
	need := r.Renderer.Kinds()
	if r.Renderer.Supports(gatewayv1.GroupName, "HTTPRoute") || r.Renderer.Supports(gatewayv1.GroupName, "Gateway") {
		// A renderer for Gateway API targets needs their CRDs too; one
		// for Ingresses (Traefik) does not.
		need = append(slices.Clone(gatewayAPIKinds), need...)
	}
	for _, n := range crdNames(need) {
		if !r.crds.has(n) {
			out = append(out, n)
		}
	}
	return out
}

// SetupWithManager registers the controller, its index and its watches.
func (r *APIPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	if r.Cache == nil {
		r.Cache = mgr.GetCache()
	}
	if r.Authz.Name == "" {
		r.Authz = render.DefaultAuthzService
	}
	if r.Workers <= 0 {
		r.Workers = 8
	}
	if r.Registerer != nil {
		if err := r.Registerer.Register(newCertificateExpiry(r)); err != nil {
			return fmt.Errorf("registering the certificate expiry metric: %w", err)
		}
		if err := r.Registerer.Register(newPolicyConditions(r)); err != nil {
			return fmt.Errorf("registering the policy condition metric: %w", err)
		}
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &apiwardenv1alpha1.APIPolicy{}, indexPolicyTarget, func(o client.Object) []string {
		keys := exposure.PolicyTargetKeys(o.(*apiwardenv1alpha1.APIPolicy))
		out := make([]string, len(keys))
		for i, k := range keys {
			out[i] = k.String()
		}
		return out
	}); err != nil {
		return fmt.Errorf("indexing APIPolicies by target: %w", err)
	}
	c, err := ctrl.NewControllerManagedBy(mgr).
		For(&apiwardenv1alpha1.APIPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&apiwardenv1alpha1.APIPolicy{}, handler.EnqueueRequestsFromMapFunc(r.relatedPolicies), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(crdMetadata(), handler.EnqueueRequestsFromMapFunc(r.crdChanged), builder.OnlyMetadata).
		Watches(&networkingv1.Ingress{}, handler.EnqueueRequestsFromMapFunc(r.targetPolicies)).
		Watches(&apiwardenv1alpha1.APIKeySet{}, handler.EnqueueRequestsFromMapFunc(r.keySetPolicies), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.targetPolicies)).
		Named("apipolicy").
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).
		Build(r)
	if err != nil {
		return err
	}
	r.ctrl = c
	r.crds.gate("Gateway API routes and Gateways", crdNames(gatewayAPIKinds), r.startGatewayAPIWatches)
	r.crds.gate("cert-manager Certificates", []string{certificateCRD}, r.startCertificateWatch)
	r.crds.gate("ReferenceGrants", []string{referenceGrantCRD}, func() error {
		return r.ctrl.Watch(source.Kind(r.Cache, client.Object(&gatewayv1.ReferenceGrant{}), handler.EnqueueRequestsFromMapFunc(r.grantPolicies)))
	})
	return nil
}

// crdChanged records which CRDs exist; when one apiwarden needs appears or
// goes, every policy is reconciled again, and once the Gateway API CRDs
// exist the route and Gateway watches start.
func (r *APIPolicyReconciler) crdChanged(ctx context.Context, o client.Object) []reconcile.Request {
	if !r.crds.relevant(o.GetName(), crdNames(r.Renderer.Kinds())...) || !r.crds.observe(ctx, r.Cache, o) {
		return nil
	}
	// A CRD that went (or came back) took its objects with it: forget
	// what was applied, so every policy applies everything again.
	r.applied.clear()
	return r.allPolicies(ctx)
}

func (r *APIPolicyReconciler) startGatewayAPIWatches() error {
	return watchGatewayAPI(r.ctrl, r.Cache, handler.EnqueueRequestsFromMapFunc(r.targetPolicies))
}

func (r *APIPolicyReconciler) allPolicies(ctx context.Context) []reconcile.Request {
	var list apiwardenv1alpha1.APIPolicyList
	if err := r.Client.List(ctx, &list); err != nil {
		logf.FromContext(ctx).Error(err, "Listing APIPolicies")
		return nil
	}
	out := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		out[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
	}
	return out
}

// policiesFor lists the policies that name a target, from the index.
func (r *APIPolicyReconciler) policiesFor(ctx context.Context, k exposure.TargetKey) ([]*apiwardenv1alpha1.APIPolicy, error) {
	var list apiwardenv1alpha1.APIPolicyList
	if err := r.Client.List(ctx, &list, client.InNamespace(k.Namespace), client.MatchingFields{indexPolicyTarget: k.String()}); err != nil {
		return nil, err
	}
	out := make([]*apiwardenv1alpha1.APIPolicy, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// targetPolicies maps a target (route, Gateway, Ingress, Service) to the
// policies naming it.
func (r *APIPolicyReconciler) targetPolicies(ctx context.Context, o client.Object) []reconcile.Request {
	kind, ok := exposure.KindOf(o)
	if !ok {
		return nil
	}
	group := render.GatewayGroup
	switch kind {
	case "Ingress":
		group = networkingv1.GroupName
	case "Service":
		group = ""
	}
	ps, err := r.policiesFor(ctx, exposure.TargetKey{Group: group, Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName()})
	if err != nil {
		logf.FromContext(ctx).Error(err, "Listing APIPolicies by target")
		return nil
	}
	return requests(ps)
}

// relatedPolicies maps a changed policy to the other policies whose outcome
// depends on it: those naming the same targets (conflicts), and, for a
// Gateway-level policy, every route-level policy (routes of any namespace
// may attach to the Gateway).
func (r *APIPolicyReconciler) relatedPolicies(ctx context.Context, o client.Object) []reconcile.Request {
	p, ok := o.(*apiwardenv1alpha1.APIPolicy)
	if !ok {
		return nil
	}
	var out []*apiwardenv1alpha1.APIPolicy
	onGateway := false
	for _, k := range exposure.PolicyTargetKeys(p) {
		onGateway = onGateway || (k.Group == render.GatewayGroup && k.Kind == "Gateway")
		ps, err := r.policiesFor(ctx, k)
		if err != nil {
			logf.FromContext(ctx).Error(err, "Listing APIPolicies by target")
			return nil
		}
		out = append(out, ps...)
	}
	if onGateway {
		// Routes in any namespace may attach to the Gateway and inherit
		// from its policy. Gateway-level policies are few, so listing
		// every policy on their changes is cheap enough.
		var list apiwardenv1alpha1.APIPolicyList
		if err := r.Client.List(ctx, &list); err != nil {
			logf.FromContext(ctx).Error(err, "Listing APIPolicies")
			return nil
		}
		for i := range list.Items {
			for _, ref := range list.Items[i].Spec.TargetRefs {
				if render.IsRoute(ref.Group, ref.Kind) {
					out = append(out, &list.Items[i])
					break
				}
			}
		}
	}
	reqs := requests(out)
	return slices.DeleteFunc(reqs, func(q reconcile.Request) bool { return q.Name == p.Name && q.Namespace == p.Namespace })
}

func requests(ps []*apiwardenv1alpha1.APIPolicy) []reconcile.Request {
	out := make([]reconcile.Request, 0, len(ps))
	for _, p := range ps {
		q := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}}
		if !slices.Contains(out, q) {
			out = append(out, q)
		}
	}
	return out
}

// cacheLookup answers render.Lookup from the manager's cache.
type cacheLookup struct {
	ctx context.Context
	r   *APIPolicyReconciler
}

func (l cacheLookup) Target(k exposure.TargetKey) (client.Object, error) {
	var o client.Object
	switch {
	case k.Group == render.GatewayGroup && k.Kind == "HTTPRoute":
		o = &gatewayv1.HTTPRoute{}
	case k.Group == render.GatewayGroup && k.Kind == "GRPCRoute":
		o = &gatewayv1.GRPCRoute{}
	case k.Group == render.GatewayGroup && k.Kind == "Gateway":
		o = &gatewayv1.Gateway{}
	case k.Group == networkingv1.GroupName && k.Kind == "Ingress":
		o = &networkingv1.Ingress{}
	case k.Group == "" && k.Kind == "Service":
		o = &corev1.Service{}
	default:
		return nil, nil
	}
	if err := l.r.Client.Get(l.ctx, client.ObjectKey{Namespace: k.Namespace, Name: k.Name}, o); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return o, nil
}

func (l cacheLookup) PoliciesFor(k exposure.TargetKey) []*apiwardenv1alpha1.APIPolicy {
	ps, err := l.r.policiesFor(l.ctx, k)
	if err != nil {
		// The cache answers from memory; an error here is a programming
		// error (a missing index), not a transient one.
		panic(fmt.Sprintf("listing APIPolicies by target %s: %v", k, err))
	}
	return ps
}

// Reconcile renders one policy, applies what it renders, prunes what it
// rendered before and no longer does, and writes status when it changed.
func (r *APIPolicyReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx)
	var p apiwardenv1alpha1.APIPolicy
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		// Deleted: the garbage collector removes what it owned. (Records
		// of what was applied need no cleanup: they include the owner's
		// UID, so a policy recreated under the same name applies again.)
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.finalize(ctx, &p)
	}
	st := newStatusBuilder(&p, r.Renderer.Name())
	// Certificates that cannot be had do not keep the policy's other
	// protections off: status says why, the rest is rendered and applied,
	// and an error worth retrying is returned at the end.
	certs, certCond, certErr := r.reconcileCertificates(ctx, &p)
	if certErr != nil && certCond == nil {
		c := cond(apiwardenv1alpha1.ConditionCertificatesReady, false, apiwardenv1alpha1.ReasonReconcileError, certErr.Error())
		certCond = &c
	}
	st.certificates(certs, certCond)
	if missing := r.missingCRDs(); len(missing) > 0 {
		st.notInstalled(missing)
		st.keep(p.Status.Targets, func(apiwardenv1alpha1.RenderedObject) bool { return true })
		return reconcile.Result{}, errors.Join(r.writeStatus(ctx, &p, st), certErr)
	}
	plans, err := render.Plan(&p, cacheLookup{ctx: ctx, r: r}, r.Renderer, r.Authz)
	if err != nil {
		return reconcile.Result{}, err
	}
	var applyErr error
	applied := map[apiwardenv1alpha1.RenderedObject]bool{}
	for i := range plans {
		tp := &plans[i]
		if tp.Outcome != render.OutcomeRendered {
			continue
		}
		if err := r.ensureAuthzGrant(ctx, &p, tp.Result.Objects); err != nil {
			applyErr = err
			st.applyFailed(i, err)
			continue
		}
		failed := false
		for _, o := range tp.Result.Objects {
			if err := r.apply(ctx, &p, o); err != nil {
				applyErr, failed = err, true
				st.applyFailed(i, err)
				break
			}
			applied[renderedRef(o)] = true
		}
		// The target points at the objects only once they all exist.
		if len(tp.Result.TargetAnnotations) > 0 && !failed {
			ro, err := r.annotateTarget(ctx, &p, tp.Ref, tp.Input.Object, tp.Result.TargetAnnotations)
			if err != nil {
				applyErr = err
				st.applyFailed(i, err)
				continue
			}
			applied[ro] = true
		}
	}
	pruned, gone, pruneErr := r.prune(ctx, &p, applied, applyErr == nil)
	st.plans(plans, applied)
	pending, err := r.admissionParamsPending(ctx, &p)
	if err != nil {
		return reconcile.Result{}, err
	}
	st.paramsPending = pending
	// What the status listed and is neither applied now, pruned, nor gone
	// stays listed, so a later reconcile still prunes it.
	st.keep(p.Status.Targets, func(ro apiwardenv1alpha1.RenderedObject) bool {
		return !applied[ro] && !slices.Contains(pruned, ro) && !slices.Contains(gone, ro)
	})
	if err := r.writeStatus(ctx, &p, st); err != nil {
		if apierrors.IsConflict(err) {
			// The cached policy was stale (its status just changed):
			// reconcile again from the newer copy, without an error.
			return reconcile.Result{Requeue: true}, nil
		}
		return reconcile.Result{}, err
	}
	for _, o := range pruned {
		if isAnnotatedTarget(o) {
			r.Recorder.Eventf(&p, corev1.EventTypeNormal, "Pruned", "Removed apiwarden's annotations from %s %s, which the policy no longer renders", o.Kind, o.Name)
			continue
		}
		r.Recorder.Eventf(&p, corev1.EventTypeNormal, "Pruned", "Deleted %s %s, which the policy no longer renders", o.Kind, o.Name)
	}
	if applyErr != nil {
		log.Error(applyErr, "Applying rendered objects")
		return reconcile.Result{}, applyErr
	}
	if pruneErr != nil {
		return reconcile.Result{}, pruneErr
	}
	if certErr != nil {
		log.Error(certErr, "Applying client certificates")
		return reconcile.Result{}, certErr
	}
	if pending != "" {
		return reconcile.Result{RequeueAfter: paramsPoll}, nil
	}
	// Come back within reapplyAfter, so rendered objects someone edited or
	// deleted are restored even when nothing else changes.
	return reconcile.Result{RequeueAfter: reapplyAfter}, nil
}

// paramsPoll is how soon a policy waiting for CEL admission params is
// reconciled again.
const paramsPoll = 500 * time.Millisecond

// admissionParamsPending says why CEL admission does not know p yet ("" when
// it does, or when no CEL-mode baseline governs p's namespace): "policy
// Enforced" must mean that routes it protects can now be created.
func (r *APIPolicyReconciler) admissionParamsPending(ctx context.Context, p *apiwardenv1alpha1.APIPolicy) (string, error) {
	var baselines apiwardenv1alpha1.APIBaselineList
	if err := r.Client.List(ctx, &baselines); err != nil {
		return "", err
	}
	var cel []*apiwardenv1alpha1.APIBaseline
	for i := range baselines.Items {
		if celMode(&baselines.Items[i]) {
			cel = append(cel, &baselines.Items[i])
		}
	}
	if len(cel) == 0 || p.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun {
		return "", nil
	}
	var ns corev1.Namespace
	if err := r.Client.Get(ctx, client.ObjectKey{Name: p.Namespace}, &ns); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	snap := exposure.NewMemorySnapshot(cel, nil, map[string]map[string]string{ns.Name: ns.Labels})
	if len(exposure.Governing(snap, ns.Name, exposure.Options{OwnNamespace: r.Authz.Namespace})) == 0 {
		return "", nil
	}
	var cm corev1.ConfigMap
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: exposure.ParamsName}, &cm)
	if client.IgnoreNotFound(err) != nil {
		return "", err
	}
	if exposure.ParamsGeneration(cm.Data, p.Name) == strconv.FormatInt(p.Generation, 10) {
		return "", nil
	}
	return fmt.Sprintf("the CEL admission params of namespace %s (ConfigMap %s) do not include generation %d of the policy yet", p.Namespace, exposure.ParamsName, p.Generation), nil
}

func renderedRef(o client.Object) apiwardenv1alpha1.RenderedObject {
	gvk := o.GetObjectKind().GroupVersionKind()
	return apiwardenv1alpha1.RenderedObject{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: o.GetName()}
}

// apply server-side applies o as field manager "apiwarden", owned by p. Only
// the fields apiwarden sets are sent, so fields other managers own are kept.
func (r *APIPolicyReconciler) apply(ctx context.Context, p *apiwardenv1alpha1.APIPolicy, o client.Object) error {
	if o.GetNamespace() == p.Namespace {
		o.SetOwnerReferences([]metav1.OwnerReference{{
			APIVersion: apiwardenv1alpha1.GroupVersion.String(), Kind: "APIPolicy", Name: p.Name, UID: p.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}})
	} else {
		// Owner references cannot cross namespaces: an annotation names the
		// policy, and its finalizer cleans up.
		ann := o.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[keystore.AnnotationOwner] = certOwner(p)
		o.SetAnnotations(ann)
	}
	u, err := toUnstructured(o)
	if err != nil {
		return err
	}
	// An apply that would change nothing still costs the apiserver a full
	// managed-fields computation; skip it when the same object was applied
	// recently.
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	key := u.GetAPIVersion() + "/" + u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
	known, same := r.applied.seen(key, data)
	if same {
		return nil
	}
	if !known {
		if err := r.checkOwner(ctx, p, u); err != nil {
			// Not yet applied by this process: never take over an object
			// someone else made, even one with the same name.
			return err
		}
	}
	if err := r.Client.Patch(ctx, u, client.Apply, client.FieldOwner(render.FieldManager), client.ForceOwnership); err != nil {
		r.applied.forget(key)
		return fmt.Errorf("applying %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	r.applied.remember(key, data)
	return nil
}

// checkOwner refuses to apply over an existing object that this policy
// does not control: server-side apply with force would take it over, and
// pruning or garbage collection would later delete it.
func (r *APIPolicyReconciler) checkOwner(ctx context.Context, p *apiwardenv1alpha1.APIPolicy, u *unstructured.Unstructured) error {
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(u.GroupVersionKind())
	err := r.Reader.Get(ctx, client.ObjectKeyFromObject(u), live)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s %s/%s before applying it: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	if u.GetNamespace() != p.Namespace {
		if live.Annotations[keystore.AnnotationOwner] == certOwner(p) {
			return nil
		}
	} else if c := metav1.GetControllerOf(live); c != nil && c.UID == p.UID {
		return nil
	}
	return notControlledError(fmt.Sprintf("%s %s/%s exists and is not controlled by this APIPolicy; apiwarden does not take it over: rename or delete it", u.GetKind(), u.GetNamespace(), u.GetName()))
}

// notControlledError is checkOwner's refusal: it lasts until someone
// renames or deletes the object, so retrying soon does not help.
type notControlledError string

func (e notControlledError) Error() string { return string(e) }

// toUnstructured drops what the Go types add but apiwarden does not set
// (creationTimestamp, status), so an apply never claims those fields.
func toUnstructured(o client.Object) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}

// ensureAuthzGrant applies, per namespace, the
// ReferenceGrant that lets SecurityPolicies of the policy's namespace send
// ext_authz requests to the authz Service in apiwarden's namespace (Envoy
// Gateway refuses a cross-namespace backendRef without one). Grants are not
// pruned: they allow only that one Service, and other policies of the
// namespace may rely on them.
func (r *APIPolicyReconciler) ensureAuthzGrant(ctx context.Context, p *apiwardenv1alpha1.APIPolicy, objs []client.Object) error {
	if p.Namespace == r.Authz.Namespace {
		return nil
	}
	needs := false
	for _, o := range objs {
		if o.GetObjectKind().GroupVersionKind().Kind == "SecurityPolicy" {
			if u, err := toUnstructured(o); err == nil {
				if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "extAuth"); found {
					needs = true
				}
			}
		}
	}
	if !needs {
		return nil
	}
	g := render.AuthzReferenceGrant(p.Namespace, r.Authz)
	u, err := toUnstructured(g)
	if err != nil {
		return err
	}
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	// Like a rendered object: skipped while unchanged, applied again after
	// reapplyAfter, so a deleted grant comes back on the periodic
	// reconcile.
	key := authzGrantKey(g)
	if _, same := r.applied.seen(key, data); same {
		return nil
	}
	if err := r.Client.Patch(ctx, u, client.Apply, client.FieldOwner(render.FieldManager), client.ForceOwnership); err != nil {
		r.applied.forget(key)
		return fmt.Errorf("applying ReferenceGrant %s/%s: %w", g.Namespace, g.Name, err)
	}
	r.applied.remember(key, data)
	return nil
}

// authzGrantKey names an authz ReferenceGrant in the no-op-apply cache.
func authzGrantKey(g *gatewayv1.ReferenceGrant) string {
	return "grant/" + g.Namespace + "/" + g.Name
}

// authzGrantGone maps a deleted authz ReferenceGrant to the policies of the
// namespace it served, after forgetting that it was applied, so that they
// apply it again at once. Other grants, and grants still there, map to
// nothing.
func (r *APIPolicyReconciler) authzGrantGone(ctx context.Context, g *gatewayv1.ReferenceGrant) []reconcile.Request {
	if g.Namespace != r.Authz.Namespace || len(g.Spec.From) != 1 {
		return nil
	}
	ns := string(g.Spec.From[0].Namespace)
	if render.AuthzReferenceGrant(ns, r.Authz).Name != g.Name ||
		!apierrors.IsNotFound(r.Cache.Get(ctx, client.ObjectKeyFromObject(g), &gatewayv1.ReferenceGrant{})) {
		return nil
	}
	r.applied.forget(authzGrantKey(g))
	var list apiwardenv1alpha1.APIPolicyList
	if err := r.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil
	}
	out := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		out[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
	}
	return out
}

// prune deletes the objects the status lists as rendered that this
// reconcile did not apply. Before deleting, it checks that the object is
// still owned by this policy, so an object a user took over is left alone.
// When an apply failed, nothing is pruned (the status keeps listing what
// exists).
//
// It returns what it deleted (or un-annotated), and what needs no pruning
// because it is already gone or no longer this policy's: both leave the
// status list.
func (r *APIPolicyReconciler) prune(ctx context.Context, p *apiwardenv1alpha1.APIPolicy, applied map[apiwardenv1alpha1.RenderedObject]bool, ok bool) (out, gone []apiwardenv1alpha1.RenderedObject, err error) {
	if !ok {
		return nil, nil, nil
	}
	for _, t := range p.Status.Targets {
		for _, ro := range t.Rendered {
			if applied[ro] || slices.Contains(out, ro) || slices.Contains(gone, ro) {
				continue
			}
			if isAnnotatedTarget(ro) {
				if err := r.unannotateTarget(ctx, p, ro); err != nil {
					return out, gone, fmt.Errorf("removing apiwarden's annotations from %s %s: %w", ro.Kind, ro.Name, err)
				}
				out = append(out, ro)
				continue
			}
			gv, err := schema.ParseGroupVersion(ro.APIVersion)
			if err != nil {
				gone = append(gone, ro)
				continue
			}
			live := &metav1.PartialObjectMetadata{}
			live.SetGroupVersionKind(gv.WithKind(ro.Kind))
			if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: ro.Name}, live); err != nil {
				if apierrors.IsNotFound(err) {
					gone = append(gone, ro)
					continue
				}
				return out, gone, fmt.Errorf("reading %s %s before pruning it: %w", ro.Kind, ro.Name, err)
			}
			if !ownedBy(live, p) {
				gone = append(gone, ro)
				continue
			}
			r.applied.forget(ro.APIVersion + "/" + ro.Kind + "/" + p.Namespace + "/" + ro.Name)
			if err := r.Client.Delete(ctx, live, client.Preconditions{UID: ptr.To(live.UID)}); client.IgnoreNotFound(err) != nil {
				return out, gone, fmt.Errorf("pruning %s %s: %w", ro.Kind, ro.Name, err)
			}
			out = append(out, ro)
		}
	}
	return out, gone, nil
}

func ownedBy(o metav1.Object, p *apiwardenv1alpha1.APIPolicy) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.UID == p.UID {
			return true
		}
	}
	return false
}
