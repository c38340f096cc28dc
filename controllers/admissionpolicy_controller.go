package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/cachetrim"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/render"
)

// specHashAnnotation holds a digest of what apiwarden last wrote into an
// object it compiles, so that an unchanged object is not written again
// (the apiserver's defaulting makes a field-by-field comparison useless).
const specHashAnnotation = "apiwarden.io/spec-hash"

// liveHashAnnotation holds a digest of the spec as the apiserver stored it
// (defaulted) when apiwarden last wrote it: a live spec with another digest
// was edited by someone else, and is put back. Being on the object, it
// survives apiwarden's restarts.
const liveHashAnnotation = "apiwarden.io/live-spec-hash"

// managedByLabel marks the objects apiwarden writes for CEL admission.
const managedByLabel = "app.kubernetes.io/managed-by"

// paramsCacheSelector selects the ConfigMaps apiwarden's cache holds: only
// the admission params it writes, so that the manager does not cache every
// ConfigMap of the cluster.
var paramsCacheSelector = labels.SelectorFromSet(labels.Set{managedByLabel: "apiwarden"})

// CacheOptions are the informer cache options the controllers need: objects
// without managedFields and kubectl's last-applied copy (cachetrim), and of
// ConfigMaps only the admission params. cmd/manager, the tests and the
// benchmarks all configure their managers with them.
func CacheOptions() ctrlcache.Options {
	return ctrlcache.Options{
		DefaultTransform: cachetrim.Transform(),
		ByObject:         map[client.Object]ctrlcache.ByObject{&corev1.ConfigMap{}: {Label: paramsCacheSelector}},
	}
}

// eventCorrelatorEntries bounds each of the three LRU caches of the
// Event correlator (aggregation, spam filter, deduplication).
const eventCorrelatorEntries = 512

// EventBroadcaster is the broadcaster the manager records Events through:
// client-go's, with the correlator's caches bounded to 512 entries each
// instead of 4,096. An entry holds an Event's keys (about 2 KiB across the
// three caches), and apiwarden records Events only when something changes
// (and paces the coverage scan's), so the larger caches only held memory:
// 0.65 KiB per watched object with 1,000 policies (test/bench/convergence
// -heapprofile). cmd/manager and the benchmarks set it as the manager's
// EventBroadcaster; the manager runs as long as the process, so the
// broadcaster outliving it does not matter.
func EventBroadcaster() record.EventBroadcaster {
	return record.NewBroadcasterWithCorrelatorOptions(record.CorrelatorOptions{LRUCacheSize: eventCorrelatorEntries})
}

// AdmissionPolicyReconciler compiles every APIBaseline in CEL or Both
// admission mode into one ValidatingAdmissionPolicy and binding per
// evaluated kind (exposure.AdmissionPolicy), owned by the baseline, and
// removes them when the baseline returns to Webhook mode. It compiles again
// at the next exemption expiry, since CEL has no clock.
type AdmissionPolicyReconciler struct {
	Client client.Client
	// Namespace is apiwarden's own namespace, never governed.
	Namespace string
	// Now is the clock (tests move it).
	Now func() time.Time
}

// SetupWithManager registers the controller.
func (r *AdmissionPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&apiwardenv1alpha1.APIBaseline{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&admissionregistrationv1.ValidatingAdmissionPolicy{}).
		Owns(&admissionregistrationv1.ValidatingAdmissionPolicyBinding{}).
		// The params guard has every CEL-mode baseline as a (non-
		// controller) owner: a change to it reconciles them.
		Watches(&admissionregistrationv1.ValidatingAdmissionPolicy{}, handler.EnqueueRequestsFromMapFunc(guardOwners)).
		Watches(&admissionregistrationv1.ValidatingAdmissionPolicyBinding{}, handler.EnqueueRequestsFromMapFunc(guardOwners)).
		Named("admissionpolicy").
		Complete(r)
}

func celMode(b *apiwardenv1alpha1.APIBaseline) bool {
	return b.Spec.Admission == apiwardenv1alpha1.AdmissionModeCEL || b.Spec.Admission == apiwardenv1alpha1.AdmissionModeBoth
}

// Reconcile brings one baseline's compiled policies up to date.
func (r *AdmissionPolicyReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var b apiwardenv1alpha1.APIBaseline
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		// Deleted: the policies go with it (owner references).
		return reconcile.Result{}, r.syncParamsGuard(ctx)
	}
	if !celMode(&b) || !b.DeletionTimestamp.IsZero() {
		if err := r.removeCompiled(ctx, b.Name); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{}, r.syncParamsGuard(ctx)
	}
	if err := r.syncParamsGuard(ctx); err != nil {
		return reconcile.Result{}, err
	}
	now := r.Now()
	owner := metav1.OwnerReference{APIVersion: apiwardenv1alpha1.GroupVersion.String(), Kind: "APIBaseline", Name: b.Name, UID: b.UID,
		Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}
	for _, k := range exposure.CELKinds {
		vap, binding, err := exposure.AdmissionPolicy(&b, k.Kind, now, r.Namespace)
		if err != nil {
			return reconcile.Result{}, err
		}
		for _, o := range []client.Object{vap, binding} {
			o.SetOwnerReferences([]metav1.OwnerReference{owner})
			if err := r.apply(ctx, o); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	guard, guardBinding := exposure.AdmissionGuardPolicy(&b, r.Namespace)
	if guard == nil {
		// Only a Deny baseline guards APIPolicy deletion.
		name := exposure.AdmissionPolicyName(b.Name, exposure.GuardKind)
		for _, o := range []client.Object{&admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name}},
			&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}} {
			if err := r.Client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, err
			}
		}
	} else {
		for _, o := range []client.Object{guard, guardBinding} {
			o.SetOwnerReferences([]metav1.OwnerReference{owner})
			if err := r.apply(ctx, o); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	// Compile again just past the next exemption expiry.
	if next := nextExemptionExpiry([]*apiwardenv1alpha1.APIBaseline{&b}, now); !next.IsZero() {
		return reconcile.Result{RequeueAfter: next.Sub(now) + time.Second}, nil
	}
	return reconcile.Result{}, nil
}

// apply writes o unless the object there already carries the digest of
// the same content and its spec is as apiwarden left it. Every write
// carries the whole spec: a new object is created, an existing one replaced
// with an update that names the resourceVersion apiwarden read (a stale
// read fails with a conflict and the reconcile comes back), so neither a
// field someone added (a match condition that never holds, say) nor one
// apiwarden no longer wants survives, whoever owns it. Each write is first
// made as a dry run, to learn the defaulted spec whose digest the real write
// records in liveHashAnnotation; a live spec with another digest, or
// without one, was edited by someone else.
func (r *AdmissionPolicyReconciler) apply(ctx context.Context, o client.Object) error {
	sum, err := digest(o)
	if err != nil {
		return err
	}
	var cur client.Object
	switch o.(type) {
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		cur = &admissionregistrationv1.ValidatingAdmissionPolicy{}
	default:
		cur = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	}
	kind := o.GetObjectKind().GroupVersionKind().Kind
	err = r.Client.Get(ctx, client.ObjectKeyFromObject(o), cur)
	if apierrors.IsNotFound(err) {
		o.SetAnnotations(map[string]string{specHashAnnotation: sum})
		dry := o.DeepCopyObject().(client.Object)
		if err := r.Client.Create(ctx, dry, client.DryRunAll, client.FieldOwner(render.FieldManager)); err != nil {
			return fmt.Errorf("creating %s %s (dry run): %w", kind, o.GetName(), err)
		}
		live, err := specDigest(dry)
		if err != nil {
			return err
		}
		o.SetAnnotations(map[string]string{specHashAnnotation: sum, liveHashAnnotation: live})
		if err := r.Client.Create(ctx, o, client.FieldOwner(render.FieldManager)); err != nil {
			return fmt.Errorf("creating %s %s: %w", kind, o.GetName(), err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	live, err := specDigest(cur)
	if err != nil {
		return err
	}
	if anns := cur.GetAnnotations(); anns[liveHashAnnotation] == live && anns[specHashAnnotation] == sum {
		return nil
	}
	// Changed by apiwarden's compiler or by someone else: either way
	// the whole spec is written.
	switch c := cur.(type) {
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		c.Spec = o.(*admissionregistrationv1.ValidatingAdmissionPolicy).Spec
	case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		c.Spec = o.(*admissionregistrationv1.ValidatingAdmissionPolicyBinding).Spec
	}
	cur.SetLabels(o.GetLabels())
	cur.SetOwnerReferences(o.GetOwnerReferences())
	anns := cur.GetAnnotations()
	if anns == nil {
		anns = map[string]string{}
	}
	anns[specHashAnnotation] = sum
	delete(anns, liveHashAnnotation)
	cur.SetAnnotations(anns)
	dry := cur.DeepCopyObject().(client.Object)
	if err := r.Client.Update(ctx, dry, client.DryRunAll, client.FieldOwner(render.FieldManager)); err != nil {
		return fmt.Errorf("writing %s %s (dry run): %w", kind, o.GetName(), err)
	}
	if live, err = specDigest(dry); err != nil {
		return err
	}
	anns[liveHashAnnotation] = live
	if err := r.Client.Update(ctx, cur, client.FieldOwner(render.FieldManager)); err != nil {
		return fmt.Errorf("writing %s %s: %w", kind, o.GetName(), err)
	}
	return nil
}

// specDigest is a short hash of an object's spec alone, as stored.
func specDigest(o client.Object) (string, error) { return shortHash(compiledSpec(o)) }

// digest is a short hash of an object's labels, owners and spec.
func digest(o client.Object) (string, error) {
	return shortHash([]any{o.GetLabels(), o.GetOwnerReferences(), compiledSpec(o)})
}

// compiledSpec is the spec of a compiled policy or binding.
func compiledSpec(o client.Object) any {
	switch x := o.(type) {
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		return x.Spec
	case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		return x.Spec
	}
	return nil
}

// shortHash is the first 12 bytes of the SHA-256 of v's JSON, in hex.
func shortHash(v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:12]), nil
}

// guardOwners maps the params guard to the baselines that own it.
func guardOwners(_ context.Context, o client.Object) []reconcile.Request {
	if o.GetName() != exposure.ParamsGuardName {
		return nil
	}
	var out []reconcile.Request
	for _, ref := range o.GetOwnerReferences() {
		if ref.Kind == "APIBaseline" {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: ref.Name}})
		}
	}
	return out
}

// syncParamsGuard keeps the params guard (exposure.ParamsGuardPolicy) while
// any baseline is in CEL or Both mode, owned by each of them so that
// garbage collection removes it with the last one, and deletes it when none
// is.
func (r *AdmissionPolicyReconciler) syncParamsGuard(ctx context.Context) error {
	var list apiwardenv1alpha1.APIBaselineList
	if err := r.Client.List(ctx, &list); err != nil {
		return err
	}
	var owners []metav1.OwnerReference
	for i := range list.Items {
		b := &list.Items[i]
		if celMode(b) && b.DeletionTimestamp.IsZero() {
			owners = append(owners, metav1.OwnerReference{APIVersion: apiwardenv1alpha1.GroupVersion.String(), Kind: "APIBaseline", Name: b.Name, UID: b.UID})
		}
	}
	sort.Slice(owners, func(i, j int) bool { return owners[i].Name < owners[j].Name })
	vap, binding := exposure.ParamsGuardPolicy(r.Namespace)
	if len(owners) == 0 {
		for _, o := range []client.Object{binding, vap} {
			if err := r.Client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
		return nil
	}
	for _, o := range []client.Object{vap, binding} {
		o.SetOwnerReferences(owners)
		if err := r.apply(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// removeCompiled deletes the policies and bindings compiled for baseline.
func (r *AdmissionPolicyReconciler) removeCompiled(ctx context.Context, baseline string) error {
	sel := client.MatchingLabels{exposure.AdmissionPolicyLabel: baseline}
	var bindings admissionregistrationv1.ValidatingAdmissionPolicyBindingList
	if err := r.Client.List(ctx, &bindings, sel); err != nil {
		return err
	}
	for i := range bindings.Items {
		if err := r.Client.Delete(ctx, &bindings.Items[i]); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	var policies admissionregistrationv1.ValidatingAdmissionPolicyList
	if err := r.Client.List(ctx, &policies, sel); err != nil {
		return err
	}
	for i := range policies.Items {
		if err := r.Client.Delete(ctx, &policies.Items[i]); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }

// AdmissionParamsReconciler keeps the admission params ConfigMap
// (exposure.ParamsName) in every namespace a CEL or Both baseline governs,
// computed by exposure.Params from every APIPolicy, and removes it from
// namespaces no such baseline governs. The request is a namespace. A
// ConfigMap is written only when its content changes.
type AdmissionParamsReconciler struct {
	Client client.Client
	// Namespace is apiwarden's own namespace, never governed.
	Namespace string
	// Now is the clock (tests move it).
	Now func() time.Time

	crds  crdSet
	ctrl  controller.Controller
	cache ctrlcache.Cache
}

// SetupWithManager registers the controller.
func (r *AdmissionParamsReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	all := handler.EnqueueRequestsFromMapFunc(r.allNamespaces)
	// The exposed objects decide what the guard on APIPolicy deletion
	// protects.
	byNamespace := handler.EnqueueRequestsFromMapFunc(namespaceOf)
	c, err := ctrl.NewControllerManagedBy(mgr).
		For(&corev1.Namespace{}, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&apiwardenv1alpha1.APIPolicy{}, handler.EnqueueRequestsFromMapFunc(r.policyChanged), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&apiwardenv1alpha1.APIBaseline{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if o.GetName() != exposure.ParamsName {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
		})).
		Watches(&networkingv1.Ingress{}, byNamespace).
		Watches(&corev1.Service{}, byNamespace).
		Watches(crdMetadata(), handler.EnqueueRequestsFromMapFunc(r.crdChanged), builder.OnlyMetadata).
		Named("admissionparams").
		Build(r)
	if err != nil {
		return err
	}
	r.ctrl, r.cache = c, mgr.GetCache()
	r.crds.gate("Gateway API objects of the admission guard", crdNames(gatewayAPIKinds), func() error {
		return watchGatewayAPI(r.ctrl, r.cache, byNamespace)
	})
	return nil
}

// crdChanged starts the Gateway API watches once their CRDs exist, and then
// recomputes every namespace's params.
func (r *AdmissionParamsReconciler) crdChanged(ctx context.Context, o client.Object) []reconcile.Request {
	if !r.crds.relevant(o.GetName()) || !r.crds.observe(ctx, r.cache, o) {
		return nil
	}
	return r.allNamespaces(ctx, o)
}

// exposedObjects lists the objects of ns the engine evaluates (Gateway API
// kinds once their CRDs exist).
func (r *AdmissionParamsReconciler) exposedObjects(ctx context.Context, ns string) ([]client.Object, error) {
	lists := []client.ObjectList{&networkingv1.IngressList{}, &corev1.ServiceList{}}
	if r.crds.has(crdNames(gatewayAPIKinds)...) {
		lists = append(lists, &gatewayv1.GatewayList{}, &gatewayv1.HTTPRouteList{}, &gatewayv1.GRPCRouteList{})
	}
	var out []client.Object
	for _, l := range lists {
		if err := r.Client.List(ctx, l, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			out = append(out, it.(client.Object))
		}
	}
	return out, nil
}

func (r *AdmissionParamsReconciler) allNamespaces(ctx context.Context, _ client.Object) []reconcile.Request {
	return requestsForAll(ctx, r.Client, &corev1.NamespaceList{})
}

// policyChanged enqueues the namespaces the policy can cover.
func (r *AdmissionParamsReconciler) policyChanged(ctx context.Context, o client.Object) []reconcile.Request {
	return policyNamespaces(ctx, r.Client, o)
}

// Reconcile writes, or removes, one namespace's params.
func (r *AdmissionParamsReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns := req.Name
	var namespace corev1.Namespace
	if err := r.Client.Get(ctx, types.NamespacedName{Name: ns}, &namespace); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var baselines apiwardenv1alpha1.APIBaselineList
	if err := r.Client.List(ctx, &baselines); err != nil {
		return reconcile.Result{}, err
	}
	var cel []*apiwardenv1alpha1.APIBaseline
	for i := range baselines.Items {
		if celMode(&baselines.Items[i]) {
			cel = append(cel, &baselines.Items[i])
		}
	}
	nsLabels := map[string]map[string]string{ns: namespace.Labels}
	governed := len(cel) > 0 && namespace.DeletionTimestamp.IsZero() &&
		len(exposure.Governing(exposure.NewMemorySnapshot(cel, nil, nsLabels), ns, exposure.Options{OwnNamespace: r.Namespace})) > 0
	cur := &corev1.ConfigMap{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: exposure.ParamsName}, cur)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	if !governed {
		if exists && cur.Labels[managedByLabel] == "apiwarden" {
			return reconcile.Result{}, client.IgnoreNotFound(r.Client.Delete(ctx, cur))
		}
		return reconcile.Result{}, nil
	}
	var policies apiwardenv1alpha1.APIPolicyList
	if err := r.Client.List(ctx, &policies); err != nil {
		return reconcile.Result{}, err
	}
	ps := make([]*apiwardenv1alpha1.APIPolicy, len(policies.Items))
	for i := range policies.Items {
		ps[i] = &policies.Items[i]
	}
	snap := exposure.NewMemorySnapshot(cel, ps, nsLabels)
	data := exposure.Params(snap, ps, ns)
	objs, err := r.exposedObjects(ctx, ns)
	if err != nil {
		return reconcile.Result{}, err
	}
	now := r.Now()
	data[exposure.GuardKey] = exposure.Guard(snap, ps, objs, ns, now, exposure.Options{OwnNamespace: r.Namespace})
	// The guard depends on the time through exemptions: come back when the
	// next one expires, even if nothing else changes by then.
	var result reconcile.Result
	if next := nextExemptionExpiry(cel, now); !next.IsZero() {
		result.RequeueAfter = next.Sub(now) + time.Second
	}
	// Semantic equality: a nil and an empty map are the same params.
	if exists && cur.Labels[managedByLabel] == "apiwarden" && equality.Semantic.DeepEqual(cur.Data, data) {
		return result, nil
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: exposure.ParamsName, Labels: map[string]string{managedByLabel: "apiwarden"}},
		Data:       data,
	}
	if err := r.Client.Patch(ctx, cm, client.Apply, client.FieldOwner(render.FieldManager), client.ForceOwnership); err != nil {
		return reconcile.Result{}, fmt.Errorf("applying admission params %s/%s: %w", ns, exposure.ParamsName, err)
	}
	return result, nil
}

// nextExemptionExpiry returns the earliest expiry after now of the
// baselines' exemptions, or the zero time.
func nextExemptionExpiry(bs []*apiwardenv1alpha1.APIBaseline, now time.Time) time.Time {
	var next time.Time
	for _, b := range bs {
		for _, e := range b.Spec.Exemptions {
			if t := e.Expires.Time; t.After(now) && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	return next
}
