package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/keys"
	"github.com/apiwarden/apiwarden/internal/keystore"
)

// +kubebuilder:rbac:groups=apiwarden.io,resources=apikeysets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiwarden.io,resources=apikeysets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiwarden.io,resources=apikeysets,verbs=update
// +kubebuilder:rbac:groups=apiwarden.io,resources=apikeysets/finalizers,verbs=update
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=referencegrants,verbs=get;list;watch

// APIKeySetReconciler issues, delivers and rotates the keys of APIKeySets.
// Writes go in an order that survives a crash between any two of them: the
// hash store first (so a delivered key is always accepted), then delivery
// Secrets, then status; a key found delivered but missing from status is
// adopted on the next pass.
type APIKeySetReconciler struct {
	client.Client
	// Reader reads the apiserver directly (the manager's API reader). Key
	// state is read from it, never from the cache: a reconcile triggered by
	// our own Secret write must see the status written just after it, or it
	// would rotate twice. Secrets are not cached at all: apiwarden watches
	// their metadata only.
	Reader   client.Reader
	Recorder record.EventRecorder
	// Namespace is apiwarden's own namespace, where the pepper lives.
	Namespace string
	// Now returns the time; tests inject a clock.
	Now func() time.Time
	// DeliveryWorkers bounds the delivery Secrets written at once in one
	// reconcile (default 8); 1 writes them one after the other.
	DeliveryWorkers int
	// Registerer, when set, receives the API-key lifecycle metrics.
	Registerer prometheus.Registerer

	lifecycle *prometheus.CounterVec
	ctrl      controller.Controller
	cache     cache.Cache
	crds      crdSet // the ReferenceGrant CRD, which may come after the manager
}

// SetupWithManager registers the reconciler.
func (r *APIKeySetReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	r.lifecycle = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiwarden_apikey_lifecycle_events_total",
		Help: "API-key lifecycle events by event: issued, rotated (a new key replaced an old one), grace_ended, revoked, removed.",
	}, []string{"event"})
	if r.Registerer != nil {
		for _, c := range []prometheus.Collector{r.lifecycle, &keyRotationDue{cache: mgr.GetCache(), now: r.Now}} {
			if err := r.Registerer.Register(c); err != nil {
				return fmt.Errorf("registering API-key metrics: %w", err)
			}
		}
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	b := ctrl.NewControllerManagedBy(mgr).
		// Spec and annotation (rotate, revoke) changes; not status: the
		// authz service writes key usage there every minute or so.
		For(&apiwardenv1alpha1.APIKeySet{}, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		// Secrets delivered into other namespaces have no owner reference.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.secretOwner), builder.OnlyMetadata).
		Watches(crdMetadata(), handler.EnqueueRequestsFromMapFunc(r.crdChanged), builder.OnlyMetadata).
		Named("apikeyset")
	c, err := b.Build(r)
	if err != nil {
		return err
	}
	r.ctrl, r.cache = c, mgr.GetCache()
	// Deliveries into other namespaces need ReferenceGrants: watch them
	// once their CRD exists, at start or when installed later (no
	// restart).
	r.crds.gate("ReferenceGrants of key deliveries", []string{crdName(gatewayv1.SchemeGroupVersion.WithKind("ReferenceGrant"))}, func() error {
		return r.ctrl.Watch(source.Kind(r.cache, client.Object(&gatewayv1.ReferenceGrant{}), handler.EnqueueRequestsFromMapFunc(r.grantedKeySets)))
	})
	// The pepper exists from the leader's start, not from the first
	// APIKeySet: the authz service only reads it, and is not ready
	// without it.
	return mgr.Add(manager.RunnableFunc(r.ensurePepperAtStart))
}

// ensurePepperAtStart creates the pepper Secret if it is missing, retrying
// until it succeeds or the manager stops. It runs on the elected leader.
func (r *APIKeySetReconciler) ensurePepperAtStart(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("pepper")
	for wait := time.Duration(0); ; wait = min(max(2*wait, time.Second), time.Minute) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if _, err := keystore.EnsurePepper(ctx, r.Client, r.Reader, r.Namespace); err != nil {
			log.Error(err, "Creating the pepper Secret; retrying", "namespace", r.Namespace)
			continue
		}
		return nil
	}
}

// crdChanged starts the ReferenceGrant watch once its CRD exists, and then
// reconciles every APIKeySet, so deliveries waiting on grants go ahead.
func (r *APIKeySetReconciler) crdChanged(ctx context.Context, o client.Object) []reconcile.Request {
	if !r.crds.relevant(o.GetName()) || !r.crds.observe(ctx, r.cache, o) {
		return nil
	}
	var list apiwardenv1alpha1.APIKeySetList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil
	}
	out := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		out[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
	}
	return out
}

// secretOwner maps the Secrets owner references cannot tie to their
// APIKeySet: a hash store (in apiwarden's namespace, from its labels) and a
// delivery Secret in another namespace (from the owner annotation).
func (r *APIKeySetReconciler) secretOwner(_ context.Context, o client.Object) []reconcile.Request {
	if ns, set, ok := keystore.IsHashStoreOf(o); ok {
		if o.GetNamespace() != r.Namespace {
			return nil // labels anyone may copy; only apiwarden's namespace counts
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: set}}}
	}
	owner, ok := annotatedOwner(o.GetAnnotations())
	if !ok || owner.Namespace == o.GetNamespace() {
		return nil // same namespace: the owner reference handles it
	}
	return []reconcile.Request{{NamespacedName: owner}}
}

// grantedKeySets maps a ReferenceGrant to the APIKeySets of the namespaces it
// grants (or granted) APIKeySets from.
func (r *APIKeySetReconciler) grantedKeySets(ctx context.Context, o client.Object) []reconcile.Request {
	g, ok := o.(*gatewayv1.ReferenceGrant)
	if !ok {
		return nil
	}
	var out []reconcile.Request
	for _, ns := range keySetGrantNamespaces(g) {
		var list apiwardenv1alpha1.APIKeySetList
		if err := r.List(ctx, &list, client.InNamespace(ns)); err != nil {
			logf.FromContext(ctx).Error(err, "Listing APIKeySets for a ReferenceGrant", "namespace", ns)
			continue
		}
		for _, ks := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ks.Namespace, Name: ks.Name}})
		}
	}
	return out
}

// Reconcile implements reconcile.Reconciler.
func (r *APIKeySetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var ks apiwardenv1alpha1.APIKeySet
	if err := r.Reader.Get(ctx, req.NamespacedName, &ks); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ks.DeletionTimestamp.IsZero() {
		// Owner references remove the Secrets in the APIKeySet's namespace;
		// those delivered elsewhere, and the hash store in apiwarden's
		// namespace, are deleted here.
		if controllerutil.ContainsFinalizer(&ks, Finalizer) {
			if err := r.pruneDeliveries(ctx, &ks, true); err != nil {
				return ctrl.Result{}, err
			}
			var store corev1.Secret
			err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: hashStoreName(&ks)}, &store)
			if client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("reading the hash store: %w", err)
			}
			if err == nil && isHashStoreFor(&store, &ks) {
				if err := r.deleteExact(ctx, &store); err != nil {
					return ctrl.Result{}, fmt.Errorf("deleting the hash store: %w", err)
				}
			}
			controllerutil.RemoveFinalizer(&ks, Finalizer)
			if err := r.Update(ctx, &ks); err != nil {
				return ctrl.Result{}, client.IgnoreNotFound(err)
			}
		}
		return ctrl.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(&ks, Finalizer) {
		// Before any Secret goes to another namespace (the hash store
		// always does), so none is left behind.
		controllerutil.AddFinalizer(&ks, Finalizer)
		if err := r.Update(ctx, &ks); err != nil {
			return ctrl.Result{}, err
		}
	}
	now := r.Now()
	pepper, err := keystore.EnsurePepper(ctx, r.Client, r.Reader, r.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	store, err := r.readHashStore(ctx, &ks)
	if err != nil {
		return ctrl.Result{}, err
	}
	policy := policyOf(&ks)
	prior := stateFromStatus(ks.Status)

	// Consumers whose delivery cannot happen keep what they have and get
	// nothing new; the others go through the state machine.
	refused, delivered, err := r.inspectDeliveries(ctx, &ks)
	if err != nil {
		return ctrl.Result{}, err
	}
	var deliverable []apiwardenv1alpha1.Consumer
	for _, c := range ks.Spec.Consumers {
		if _, bad := refused[c.Name]; !bad {
			deliverable = append(deliverable, c)
		}
	}
	state := adoptDelivered(deliverable, delivered, prior, store, pepper, now, policy)

	// A valid key whose hash is lost (the hash store was deleted and the key
	// is not delivered any more) cannot be verified: count it revoked.
	for i := range state {
		for j := range state[i].Keys {
			k := &state[i].Keys[j]
			if k.State != apiwardenv1alpha1.KeyStateRevoked {
				if _, ok := store[k.ID]; !ok {
					k.State, k.Expires = apiwardenv1alpha1.KeyStateRevoked, now
				}
			}
		}
	}

	issued := map[string]issuedKey{}
	var spec []string
	roles := map[string][]string{}
	for _, c := range ks.Spec.Consumers {
		roles[c.Name] = c.Roles
	}
	var kept []keys.Consumer // refused consumers' state, carried unchanged
	for _, c := range deliverable {
		spec = append(spec, c.Name)
	}
	var machine []keys.Consumer
	for _, c := range state {
		if _, bad := refused[c.Name]; bad {
			kept = append(kept, c)
		} else {
			machine = append(machine, c)
		}
	}
	next, events, wait, err := keys.Next(now, policy, spec, machine, keys.Requests{
		Rotate: ks.Annotations[apiwardenv1alpha1.RotateAnnotation],
		Revoke: ks.Annotations[apiwardenv1alpha1.RevokeAnnotation],
	}, func(consumer string) (string, error) {
		k, err := keys.Generate(prefixOf(&ks))
		if err != nil {
			return "", err
		}
		h := keys.HashKey(pepper, k)
		store[h.ID()] = keystore.HashEntry{ID: h.ID(), Hash: h.String(), Consumer: consumer}
		issued[consumer] = issuedKey{key: k, id: h.ID()}
		return h.ID(), nil
	})
	if err != nil {
		return ctrl.Result{}, err
	}

	// 1. The new hashes join the store; nothing already valid changes yet, so
	//    no key starts its grace before its successor is delivered.
	if len(issued) > 0 {
		if err := r.writeHashStore(ctx, &ks, unionState(state, next), store, roles, now, true); err != nil {
			return ctrl.Result{}, err
		}
	}
	// 2. Delivery. A consumer whose delivery fails keeps its previous state
	//    this time and is retried; the others go on.
	failed := r.deliverAll(ctx, &ks, deliverable, issued, next, delivered, now)
	if len(failed) > 0 {
		next = revertFailed(next, state, failed)
		var ok []keys.Event
		for _, e := range events {
			if _, bad := failed[e.Consumer]; !bad {
				ok = append(ok, e)
			}
		}
		events = ok
		wait = time.Minute
	}
	final := append(next, kept...)
	// 3. Hashes as they now stand: expiries and removals.
	if err := r.writeHashStore(ctx, &ks, final, store, roles, now, false); err != nil {
		return ctrl.Result{}, err
	}
	// 4. Status, written only when it changed.
	if err := r.writeStatus(ctx, &ks, final, policy, refused, failed, now); err != nil {
		return ctrl.Result{}, err
	}
	// 5. Delivery Secrets of consumers gone from the spec, or moved.
	if err := r.pruneDeliveries(ctx, &ks, false); err != nil {
		return ctrl.Result{}, err
	}
	for _, e := range events {
		eventType := corev1.EventTypeNormal
		if e.Reason == "Revoked" || e.Reason == "Removed" {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Event(&ks, eventType, e.Reason, e.Message)
		if r.lifecycle != nil { // nil when the reconciler is driven without SetupWithManager
			r.lifecycle.WithLabelValues(lifecycleEvent(e.Reason)).Inc()
		}
		log.Info(e.Message, "apikeyset", klog.KObj(&ks), "consumer", e.Consumer, "keyID", e.KeyID)
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// lifecycleEvent is the metric label of a key event's reason.
func lifecycleEvent(reason string) string {
	switch reason {
	case "Issued":
		return "issued"
	case "Rotated":
		return "rotated"
	case "GraceEnded":
		return "grace_ended"
	case "Revoked":
		return "revoked"
	case "Removed":
		return "removed"
	}
	return "other"
}

// keyRotationDue exports, at every scrape, the seconds until each
// consumer's next key rotation (negative when overdue), from the cached
// APIKeySets' status. One series per consumer with a rotation schedule:
// bounded by the consumers APIKeySets list (at most 256 each).
type keyRotationDue struct {
	cache client.Reader
	now   func() time.Time
}

var keyRotationDesc = prometheus.NewDesc("apiwarden_apikey_rotation_due_seconds",
	"Seconds until each consumer's next API-key rotation (negative when overdue), by namespace, apikeyset and consumer.",
	[]string{"namespace", "apikeyset", "consumer"}, nil)

// Describe implements prometheus.Collector.
func (k *keyRotationDue) Describe(ch chan<- *prometheus.Desc) { ch <- keyRotationDesc }

// Collect implements prometheus.Collector.
func (k *keyRotationDue) Collect(ch chan<- prometheus.Metric) {
	var list apiwardenv1alpha1.APIKeySetList
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := k.cache.List(ctx, &list); err != nil {
		return
	}
	now := k.now()
	for _, ks := range list.Items {
		for _, c := range ks.Status.Consumers {
			if c.NextRotation != nil {
				ch <- prometheus.MustNewConstMetric(keyRotationDesc, prometheus.GaugeValue, c.NextRotation.Sub(now).Seconds(), ks.Namespace, ks.Name, c.Name)
			}
		}
	}
}

type issuedKey struct{ key, id string }

// deliverAll delivers the issued keys, up to DeliveryWorkers at a time (the
// deliveries are independent; the hash store was written before and is
// written again after all of them). It returns the consumers whose delivery
// failed, with the reason.
func (r *APIKeySetReconciler) deliverAll(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, deliverable []apiwardenv1alpha1.Consumer, issued map[string]issuedKey, next []keys.Consumer, delivered map[string]*corev1.Secret, now time.Time) map[string]string {
	log := logf.FromContext(ctx)
	byName := make(map[string]keys.Consumer, len(next))
	for _, x := range next {
		byName[x.Name] = x
	}
	var mu sync.Mutex
	failed := map[string]string{}
	one := func(c apiwardenv1alpha1.Consumer, k issuedKey) {
		if err := r.deliver(ctx, ks, c, k.key, k.id, now, byName[c.Name], delivered[c.Name]); err != nil {
			mu.Lock()
			failed[c.Name] = err.Error()
			mu.Unlock()
			log.Error(err, "Delivering a key failed", "apikeyset", klog.KObj(ks), "consumer", c.Name, "keyID", k.id)
		}
	}
	workers := r.DeliveryWorkers
	if workers <= 0 {
		workers = 8
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	for _, c := range deliverable {
		k, ok := issued[c.Name]
		if !ok {
			continue
		}
		if workers == 1 {
			one(c, k) // in this goroutine: tests stop the reconciler mid-way
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			one(c, k)
		}()
	}
	wg.Wait()
	return failed
}

// unionState is every key valid before or after this pass, each with the
// later of its expiries, so that step 1 removes nothing and starts no grace.
func unionState(before, after []keys.Consumer) []keys.Consumer {
	out := append([]keys.Consumer(nil), before...)
	idx := map[string]int{}
	for i, c := range out {
		idx[c.Name] = i
	}
	for _, c := range after {
		i, ok := idx[c.Name]
		if !ok {
			out = append(out, c)
			continue
		}
		merged := out[i]
		merged.Keys = append([]keys.Key(nil), merged.Keys...)
		for _, k := range c.Keys {
			if !merged.Has(k.ID) {
				merged.Keys = append(merged.Keys, k)
			}
		}
		out[i] = merged
	}
	return out
}

// revertFailed puts back the previous state of consumers whose delivery
// failed, so the rotation is retried rather than recorded.
func revertFailed(next, before []keys.Consumer, failed map[string]string) []keys.Consumer {
	prev := map[string]keys.Consumer{}
	for _, c := range before {
		prev[c.Name] = c
	}
	out := make([]keys.Consumer, 0, len(next))
	for _, c := range next {
		if _, bad := failed[c.Name]; bad {
			if p, ok := prev[c.Name]; ok {
				out = append(out, p)
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// inspectDeliveries reads each consumer's delivery Secret once and returns
// them by consumer (absent when there is none), with the consumers whose keys
// cannot be delivered and why: another namespace that grants nothing, a
// Secret name that is invalid, collides with the hash store, the pepper or
// another consumer, or belongs to something else.
func (r *APIKeySetReconciler) inspectDeliveries(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet) (refused map[string]string, delivered map[string]*corev1.Secret, err error) {
	refused, delivered = map[string]string{}, map[string]*corev1.Secret{}
	owner := map[string]string{r.Namespace + "/" + hashStoreName(ks): "the hash store", r.Namespace + "/" + keystore.PepperSecret: "the pepper"}
	sc := &secretScan{r: r.Reader, keySet: ks.Name, ns: ks.Namespace}
	for _, c := range ks.Spec.Consumers {
		ns, name := deliveryNamespace(ks, c), deliveryName(ks, c)
		where := ns + "/" + name
		if ns != ks.Namespace {
			reason, err := r.granted(ctx, ks, ns, name)
			if err != nil {
				return nil, nil, err
			}
			if reason != "" {
				refused[c.Name] = reason
				continue
			}
		}
		switch {
		case len(name) > 253 || len(hashStoreName(ks)) > 253:
			refused[c.Name] = fmt.Sprintf("the Secret name %q is longer than 253 characters", name)
			continue
		case owner[where] != "":
			refused[c.Name] = fmt.Sprintf("its Secret %q is already %s", secretRef(ks, ns, name), owner[where])
			continue
		case ns == r.Namespace && strings.HasSuffix(name, ".hashes"):
			refused[c.Name] = fmt.Sprintf("its Secret %q would take a name kept for hash stores (<namespace>.<apikeyset>.hashes)", secretRef(ks, ns, name))
			continue
		}
		owner[where] = "consumer " + c.Name + "'s"
		s, err := sc.get(ctx, ns, name)
		if err != nil {
			return nil, nil, err
		}
		if s == nil {
			continue
		}
		if !deliveredBy(s, ks) || s.Labels[keystore.LabelConsumer] != c.Name {
			refused[c.Name] = fmt.Sprintf("Secret %q exists and was not written by apiwarden for this consumer", secretRef(ks, ns, name))
			continue
		}
		delivered[c.Name] = s
	}
	return refused, delivered, nil
}

// secretScan reads the delivery Secrets of a key set in its own namespace in
// two requests — the names of every Secret there (metadata only) and, in
// full, those labelled for the key set — instead of one GET per consumer.
// Secrets in other namespaces are read one by one.
type secretScan struct {
	r          client.Reader
	keySet, ns string
	loaded     bool
	names      map[string]bool
	ours       map[string]*corev1.Secret
}

func (sc *secretScan) get(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	if ns != sc.ns {
		return sc.read(ctx, ns, name)
	}
	if !sc.loaded {
		var meta metav1.PartialObjectMetadataList
		meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
		if err := sc.r.List(ctx, &meta, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing Secrets in %s: %w", ns, err)
		}
		var full corev1.SecretList
		if err := sc.r.List(ctx, &full, client.InNamespace(ns), client.MatchingLabels{keystore.LabelKeySet: sc.keySet}); err != nil {
			return nil, fmt.Errorf("listing the delivery Secrets in %s: %w", ns, err)
		}
		sc.names, sc.ours = map[string]bool{}, map[string]*corev1.Secret{}
		for _, m := range meta.Items {
			sc.names[m.Name] = true
		}
		for i := range full.Items {
			sc.ours[full.Items[i].Name] = &full.Items[i]
		}
		sc.loaded = true
	}
	if s := sc.ours[name]; s != nil {
		return s, nil
	}
	if !sc.names[name] {
		return nil, nil
	}
	// Someone else's Secret (or one created since the lists): read it.
	return sc.read(ctx, ns, name)
}

// read gets one Secret; nil when there is none.
func (sc *secretScan) read(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := sc.r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", ns, name, err)
	}
	return s, nil
}

// secretRef names a Secret as messages show it: bare in the APIKeySet's
// namespace, namespace/name elsewhere.
func secretRef(ks *apiwardenv1alpha1.APIKeySet, ns, name string) string {
	if ns == ks.Namespace {
		return name
	}
	return ns + "/" + name
}

// granted checks that namespace ns lets this APIKeySet write Secret name
// (secretGranted).
func (r *APIKeySetReconciler) granted(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, ns, name string) (string, error) {
	return secretGranted(ctx, r.Reader, ks.Namespace, ns, name)
}

// secretGranted checks that namespace ns lets the APIKeySets of namespace
// from write Secret name: a Gateway API ReferenceGrant in ns from APIKeySet
// (group apiwarden.io) in from to Secret (core group), naming this Secret or
// any. The same grant lets an APIPolicy of from put a consumer's client
// certificate Secret there. It returns why not, or "".
func secretGranted(ctx context.Context, reader client.Reader, from, ns, name string) (string, error) {
	var grants gatewayv1.ReferenceGrantList
	err := reader.List(ctx, &grants, client.InNamespace(ns))
	if meta.IsNoMatchError(err) {
		return fmt.Sprintf("delivery into namespace %s needs a ReferenceGrant there, and the Gateway API ReferenceGrant CRD (v1) is not installed", ns), nil
	}
	if err != nil {
		return "", fmt.Errorf("listing ReferenceGrants in %s: %w", ns, err)
	}
	for _, g := range grants.Items {
		fromOK := false
		for _, f := range g.Spec.From {
			if string(f.Group) == apiwardenv1alpha1.GroupVersion.Group && f.Kind == "APIKeySet" && string(f.Namespace) == from {
				fromOK = true
			}
		}
		if !fromOK {
			continue
		}
		for _, t := range g.Spec.To {
			if t.Group == "" && t.Kind == "Secret" && (t.Name == nil || string(*t.Name) == name) {
				return "", nil
			}
		}
	}
	return fmt.Sprintf("namespace %s does not grant it: create a ReferenceGrant there from APIKeySet (group apiwarden.io) in namespace %s to Secret %s", ns, from, name), nil
}

// pruneDeliveries deletes the delivery Secrets that apiwarden wrote for ks
// and no longer wants: those of consumers gone from the spec (so a removed
// consumer's key cannot be found and adopted later) and those left where a
// consumer's delivery used to be, in any namespace. With all, every delivery
// Secret goes (the APIKeySet is being deleted).
func (r *APIKeySetReconciler) pruneDeliveries(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, all bool) error {
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.Reader.List(ctx, &list, client.MatchingLabels{keystore.LabelKeySet: ks.Name}); err != nil {
		return fmt.Errorf("listing delivery Secrets: %w", err)
	}
	want := map[string]string{} // consumer -> namespace/name
	if !all {
		for _, c := range ks.Spec.Consumers {
			want[c.Name] = deliveryNamespace(ks, c) + "/" + deliveryName(ks, c)
		}
	}
	for i := range list.Items {
		s := &list.Items[i]
		consumer, isDelivery := s.Labels[keystore.LabelConsumer]
		if !isDelivery || !deliveredBy(s, ks) || want[consumer] == s.Namespace+"/"+s.Name {
			continue
		}
		if err := r.Delete(ctx, s); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting the delivery Secret %s/%s of consumer %s: %w", s.Namespace, s.Name, consumer, err)
		}
	}
	return nil
}

func policyOf(ks *apiwardenv1alpha1.APIKeySet) keys.Policy {
	p := keys.Policy{Every: 2160 * time.Hour, Grace: 168 * time.Hour}
	if rot := ks.Spec.Rotation; rot != nil {
		if rot.Every != nil {
			p.Every = rot.Every.Duration
		}
		if rot.GracePeriod != nil {
			p.Grace = rot.GracePeriod.Duration
		}
	}
	return p
}

func prefixOf(ks *apiwardenv1alpha1.APIKeySet) string {
	if ks.Spec.KeyPrefix != "" {
		return ks.Spec.KeyPrefix
	}
	return "apiw"
}

func hashStoreName(ks *apiwardenv1alpha1.APIKeySet) string {
	return keystore.HashStoreName(ks.Namespace, ks.Name)
}

// Finalizer is set on every APIKeySet, so that the Secrets owner references
// cannot reach are deleted with it: its hash store, in apiwarden's
// namespace, and the keys it delivered into other namespaces.
const Finalizer = "apiwarden.io/delivery-cleanup"

// deliveryNamespace is where a consumer's key is delivered.
func deliveryNamespace(ks *apiwardenv1alpha1.APIKeySet, c apiwardenv1alpha1.Consumer) string {
	if c.SecretRef != nil && c.SecretRef.Namespace != "" {
		return c.SecretRef.Namespace
	}
	return ks.Namespace
}

// ownerValue identifies an APIKeySet on the Secrets it delivers: owner
// references cannot cross namespaces, so Secrets in other namespaces carry
// this annotation instead (and same-namespace ones carry it too).
func ownerValue(ks *apiwardenv1alpha1.APIKeySet) string {
	return ks.Namespace + "/" + ks.Name + "/" + string(ks.UID)
}

// deliveredBy reports whether apiwarden wrote s for ks.
func deliveredBy(s metav1.Object, ks *apiwardenv1alpha1.APIKeySet) bool {
	if s.GetNamespace() == ks.Namespace {
		return metav1.IsControlledBy(s, ks)
	}
	return s.GetAnnotations()[keystore.AnnotationOwner] == ownerValue(ks)
}

func deliveryName(ks *apiwardenv1alpha1.APIKeySet, c apiwardenv1alpha1.Consumer) string {
	if c.SecretRef != nil && c.SecretRef.Name != "" {
		return c.SecretRef.Name
	}
	return ks.Name + "-" + c.Name
}

func (r *APIKeySetReconciler) readHashStore(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet) (map[string]keystore.HashEntry, error) {
	var s corev1.Secret
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: hashStoreName(ks)}, &s)
	out := map[string]keystore.HashEntry{}
	if apierrors.IsNotFound(err) {
		return r.migrateHashStore(ctx, ks)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the hash store: %w", err)
	}
	if !isHashStoreFor(&s, ks) {
		return nil, fmt.Errorf("the Secret %s/%s, where the hash store goes, is not this key set's hash store", s.Namespace, s.Name)
	}
	if err := r.dropLegacyHashStore(ctx, ks); err != nil {
		return nil, err
	}
	entries, err := keystore.Decode(&s)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		out[e.ID] = e
	}
	return out, nil
}

// legacyHashStoreName is where builds before the hash stores moved into
// apiwarden's namespace kept them: in the key set's namespace.
func legacyHashStoreName(ks *apiwardenv1alpha1.APIKeySet) string {
	return ks.Name + "-apiwarden-hashes"
}

// migrateHashStore moves a hash store an earlier build wrote into the key
// set's namespace (controlled by ks) into apiwarden's, so an upgrade loses
// no key in its grace period, and returns its entries; with none, the store
// is empty.
func (r *APIKeySetReconciler) migrateHashStore(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet) (map[string]keystore.HashEntry, error) {
	out := map[string]keystore.HashEntry{}
	var old corev1.Secret
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: ks.Namespace, Name: legacyHashStoreName(ks)}, &old)
	if apierrors.IsNotFound(err) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the hash store of an earlier version: %w", err)
	}
	if !metav1.IsControlledBy(&old, ks) {
		return out, nil // not one apiwarden wrote for this set
	}
	entries, err := keystore.Decode(&old)
	if err != nil {
		return nil, fmt.Errorf("the hash store of an earlier version: %w", err)
	}
	moved := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: hashStoreName(ks), Labels: keystore.HashStoreLabels(ks.Namespace, ks.Name)},
		Data: map[string][]byte{keystore.HashesField: old.Data[keystore.HashesField]}}
	if err := r.Create(ctx, moved); err != nil {
		return nil, fmt.Errorf("moving the hash store into %s: %w", r.Namespace, err)
	}
	if err := r.deleteExact(ctx, &old); err != nil {
		return nil, fmt.Errorf("deleting the hash store of an earlier version: %w", err)
	}
	for _, e := range entries {
		out[e.ID] = e
	}
	return out, nil
}

// dropLegacyHashStore deletes a hash store an earlier build left in the key
// set's namespace once the store in apiwarden's namespace exists (a
// reconcile running across the upgrade may have written it before
// migrateHashStore could). It looks in the manager's metadata cache, so the
// common case, none, costs no request.
func (r *APIKeySetReconciler) dropLegacyHashStore(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet) error {
	var old metav1.PartialObjectMetadata
	old.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err := r.Get(ctx, client.ObjectKey{Namespace: ks.Namespace, Name: legacyHashStoreName(ks)}, &old)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking for the hash store of an earlier version: %w", err)
	}
	if !metav1.IsControlledBy(&old, ks) {
		return nil
	}
	if err := r.deleteExact(ctx, &old); err != nil {
		return fmt.Errorf("deleting the hash store of an earlier version: %w", err)
	}
	return nil
}

// deleteExact deletes o only if it is still the object that was read (same
// UID: not one recreated under its name since); gone already is fine.
func (r *APIKeySetReconciler) deleteExact(ctx context.Context, o client.Object) error {
	uid := o.GetUID()
	return client.IgnoreNotFound(r.Delete(ctx, o, client.Preconditions{UID: &uid}))
}

// isHashStoreFor reports whether s, found where ks's hash store goes, is it:
// the labels apiwarden gives it, and nothing that makes it a delivery.
func isHashStoreFor(s *corev1.Secret, ks *apiwardenv1alpha1.APIKeySet) bool {
	ns, set, ok := keystore.IsHashStoreOf(s)
	_, delivery := s.Labels[keystore.LabelConsumer]
	return ok && ns == ks.Namespace && set == ks.Name && !delivery
}

// adoptDelivered reconciles status with what was delivered. A key found
// delivered but missing from status (a crash between delivery and the status
// write) is recorded as the consumer's Active key, with the manual requests
// it answered; its hash must already be in the store, as the write order
// guarantees, or it is not apiwarden's current key and is replaced. A
// delivered key status knows whose hash was lost is re-hashed. A consumer
// whose delivery Secret is missing, or holds another key, is due a new key
// now (its old key keeps its grace: pods may still hold it).
func adoptDelivered(consumers []apiwardenv1alpha1.Consumer, delivered map[string]*corev1.Secret, state []keys.Consumer, store map[string]keystore.HashEntry, pepper []byte, now time.Time, p keys.Policy) []keys.Consumer {
	state = append([]keys.Consumer(nil), state...)
	byName := map[string]int{}
	for i, c := range state {
		state[i].Keys = append([]keys.Key(nil), c.Keys...)
		byName[c.Name] = i
	}
	dueNow := func(i int) {
		for j := range state[i].Keys {
			if state[i].Keys[j].State == apiwardenv1alpha1.KeyStateActive {
				state[i].Keys[j].Created = now.Add(-p.Every)
			}
		}
	}
	for _, c := range consumers {
		i, known := byName[c.Name]
		s, ok := delivered[c.Name]
		if !ok {
			if known {
				dueNow(i)
			}
			continue
		}
		key := string(s.Data[keystore.KeyField])
		if _, err := keys.Parse(key); err != nil {
			if known {
				dueNow(i)
			}
			continue
		}
		h := keys.HashKey(pepper, key)
		if known && state[i].Has(h.ID()) {
			if _, ok := store[h.ID()]; !ok {
				store[h.ID()] = keystore.HashEntry{ID: h.ID(), Hash: h.String(), Consumer: c.Name}
			}
			if k := state[i].Active(); k != nil && k.ID != h.ID() {
				dueNow(i) // the Secret holds an older key than the Active one
			}
			continue
		}
		if _, ok := store[h.ID()]; !ok {
			if known {
				dueNow(i)
			}
			continue // not a key apiwarden issued last: replace it
		}
		if !known {
			state = append(state, keys.Consumer{Name: c.Name})
			i = len(state) - 1
			byName[c.Name] = i
		}
		created := now
		if t, err := time.Parse(time.RFC3339, s.Annotations[keystore.AnnotationCreated]); err == nil && !t.After(now) {
			created = t
		}
		for j := range state[i].Keys {
			if state[i].Keys[j].State == apiwardenv1alpha1.KeyStateActive {
				// The grace began when the successor was delivered.
				state[i].Keys[j].State = apiwardenv1alpha1.KeyStateGrace
				state[i].Keys[j].Expires = created.Add(max(p.Grace, keys.MinGrace))
			}
		}
		state[i].Keys = append([]keys.Key{{ID: h.ID(), State: apiwardenv1alpha1.KeyStateActive, Created: created}}, state[i].Keys...)
		if v, ok := s.Annotations[keystore.AnnotationRotateRequest]; ok {
			state[i].LastRotate = v
		}
		if v, ok := s.Annotations[keystore.AnnotationRevokeRequest]; ok {
			state[i].LastRevoke = v
		}
	}
	return state
}

// writeHashStore writes the hashes of the keys valid in state. With
// keepExpiry, entries already in the store keep their expiry (none starts
// its grace before its successor is delivered).
func (r *APIKeySetReconciler) writeHashStore(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, state []keys.Consumer, store map[string]keystore.HashEntry, roles map[string][]string, now time.Time, keepExpiry bool) error {
	var entries []keystore.HashEntry
	seen := map[string]bool{}
	for _, c := range state {
		for _, k := range c.Valid(now) {
			e, ok := store[k.ID]
			if !ok || seen[k.ID] {
				continue // lost hashes were revoked before the state machine ran
			}
			seen[k.ID] = true
			prev := e.NotAfter
			e.Consumer, e.Roles, e.NotAfter = c.Name, roles[c.Name], nil
			switch {
			case keepExpiry:
				e.NotAfter = prev
			case k.State == apiwardenv1alpha1.KeyStateGrace:
				t := k.Expires.UTC()
				e.NotAfter = &t
			}
			entries = append(entries, e)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].ID < entries[j].ID })
	raw, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	// In apiwarden's namespace, where the authz service reads; no owner
	// reference can cross namespaces, so the finalizer deletes it with ks.
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: hashStoreName(ks)}}
	err = r.upsert(ctx, s, func() error {
		if s.ResourceVersion != "" && !isHashStoreFor(s, ks) {
			return fmt.Errorf("the Secret %s/%s exists and is not this key set's hash store", s.Namespace, s.Name)
		}
		s.Labels = keystore.HashStoreLabels(ks.Namespace, ks.Name)
		s.Data = map[string][]byte{keystore.HashesField: raw}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing the hash store: %w", err)
	}
	return nil
}

// deliver writes a key to the consumer's Secret. existing is the Secret as
// inspectDeliveries read it (nil when there was none): it is updated from
// that read, and a concurrent change fails the write with a conflict, which
// counts as a failed delivery and is retried.
func (r *APIKeySetReconciler) deliver(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, c apiwardenv1alpha1.Consumer, key, id string, now time.Time, state keys.Consumer, existing *corev1.Secret) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: deliveryNamespace(ks, c), Name: deliveryName(ks, c)}}
	if existing != nil {
		s = existing.DeepCopy()
	}
	err := r.write(ctx, s, existing != nil, func() error {
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[keystore.LabelKeySet], s.Labels[keystore.LabelConsumer] = ks.Name, c.Name
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[keystore.AnnotationKeyID] = id
		s.Annotations[keystore.AnnotationCreated] = now.UTC().Format(time.RFC3339)
		s.Annotations[keystore.AnnotationRotateRequest] = state.LastRotate
		s.Annotations[keystore.AnnotationRevokeRequest] = state.LastRevoke
		s.Type = corev1.SecretTypeOpaque
		s.Annotations[keystore.AnnotationOwner] = ownerValue(ks)
		s.Data = map[string][]byte{keystore.KeyField: []byte(key), keystore.KeyIDField: []byte(id)}
		if s.Namespace != ks.Namespace {
			return nil // owner references cannot cross namespaces: the finalizer cleans up
		}
		return controllerutil.SetControllerReference(ks, s, r.Scheme())
	})
	if err != nil {
		// Never wrap anything that could carry the key.
		return fmt.Errorf("delivering key %s to Secret %s/%s: %s", id, s.Namespace, s.Name, apierrors.ReasonForError(err))
	}
	return nil
}

// upsert reads s through the API reader, applies mutate, and creates or
// updates it: controllerutil.CreateOrUpdate would read the (uncached)
// Secret through the cache.
func (r *APIKeySetReconciler) upsert(ctx context.Context, s *corev1.Secret, mutate func() error) error {
	err := r.Reader.Get(ctx, client.ObjectKeyFromObject(s), s)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return r.write(ctx, s, err == nil, mutate)
}

// write applies mutate to s, then updates it when it exists, else creates it.
func (r *APIKeySetReconciler) write(ctx context.Context, s *corev1.Secret, exists bool, mutate func() error) error {
	var before *corev1.Secret
	if exists {
		before = s.DeepCopy()
	}
	if err := mutate(); err != nil {
		return err
	}
	if exists {
		if equality.Semantic.DeepEqual(before, s) {
			return nil // nothing to write
		}
		return r.Update(ctx, s)
	}
	return r.Create(ctx, s)
}

func stateFromStatus(st apiwardenv1alpha1.APIKeySetStatus) []keys.Consumer {
	var out []keys.Consumer
	for _, c := range st.Consumers {
		kc := keys.Consumer{Name: c.Name, LastRotate: c.LastRotateRequest, LastRevoke: c.LastRevokeRequest}
		for _, k := range c.Keys {
			key := keys.Key{ID: k.ID, State: k.State, Created: k.CreatedAt.Time}
			if k.ExpiresAt != nil {
				key.Expires = k.ExpiresAt.Time
			}
			kc.Keys = append(kc.Keys, key)
		}
		out = append(out, kc)
	}
	return out
}

func (r *APIKeySetReconciler) writeStatus(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, state []keys.Consumer, p keys.Policy, refused, failed map[string]string, now time.Time) error {
	st := ks.Status.DeepCopy()
	lastUsed := map[string]*metav1.Time{} // written by the authz service; kept
	for _, c := range ks.Status.Consumers {
		for _, k := range c.Keys {
			lastUsed[k.ID] = k.LastUsed
		}
	}
	var overdue []string
	var nextRotation *metav1.Time
	st.ObservedGeneration = ks.Generation
	st.Consumers = nil
	for _, c := range state {
		cs := apiwardenv1alpha1.ConsumerStatus{Name: c.Name, LastRotateRequest: c.LastRotate, LastRevokeRequest: c.LastRevoke}
		for _, k := range c.Keys {
			ks := apiwardenv1alpha1.KeyStatus{ID: k.ID, State: k.State, CreatedAt: metav1.NewTime(k.Created.UTC().Truncate(time.Second)), LastUsed: lastUsed[k.ID]}
			if !k.Expires.IsZero() {
				t := metav1.NewTime(k.Expires.UTC().Truncate(time.Second))
				ks.ExpiresAt = &t
			}
			if k.State == apiwardenv1alpha1.KeyStateActive {
				t := metav1.NewTime(k.Created.Add(p.Every).UTC().Truncate(time.Second))
				cs.NextRotation = &t
				if !now.Before(t.Time) {
					overdue = append(overdue, c.Name)
				}
				if nextRotation == nil || t.Before(nextRotation) {
					nextRotation = &t
				}
			}
			cs.Keys = append(cs.Keys, ks)
		}
		st.Consumers = append(st.Consumers, cs)
	}
	ready := metav1.Condition{
		Type: apiwardenv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: apiwardenv1alpha1.ReasonReconciled,
		Message: fmt.Sprintf("%d consumers have a delivered key.", len(state)), ObservedGeneration: ks.Generation,
	}
	if len(refused) > 0 || len(failed) > 0 {
		var problems []string
		for _, name := range slices.Sorted(maps.Keys(refused)) {
			problems = append(problems, fmt.Sprintf("consumer %s gets no new key: %s", name, refused[name]))
		}
		for _, name := range slices.Sorted(maps.Keys(failed)) {
			problems = append(problems, fmt.Sprintf("consumer %s: delivery failed and will be retried (%s)", name, failed[name]))
		}
		ready.Status, ready.Reason = metav1.ConditionFalse, apiwardenv1alpha1.ReasonInvalid
		if len(refused) == 0 {
			ready.Reason = apiwardenv1alpha1.ReasonReconcileError
		}
		ready.Message = strings.Join(problems, "; ") + "."
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	due := metav1.Condition{
		Type: apiwardenv1alpha1.ConditionRotationDue, Status: metav1.ConditionFalse, Reason: apiwardenv1alpha1.ReasonOnSchedule,
		Message: "Every active key is younger than its rotation period.", ObservedGeneration: ks.Generation,
	}
	if nextRotation != nil {
		due.Message = fmt.Sprintf("Every active key is younger than its rotation period; the next rotation is at %s.", nextRotation.UTC().Format(time.RFC3339))
	}
	if len(overdue) > 0 {
		due.Status, due.Reason = metav1.ConditionTrue, apiwardenv1alpha1.ReasonOverdue
		due.Message = fmt.Sprintf("The active keys of %s are past their rotation time and were not replaced; see the Ready condition for why.", strings.Join(overdue, ", "))
	}
	meta.SetStatusCondition(&st.Conditions, due)
	if equality.Semantic.DeepEqual(st, &ks.Status) {
		return nil
	}
	// A merge patch, not an update: a concurrent edit of the spec or
	// annotations must not make the status write fail after keys went out.
	orig := ks.DeepCopy()
	ks.Status = *st
	if err := r.Status().Patch(ctx, ks, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("writing status: %w", err)
	}
	return nil
}
