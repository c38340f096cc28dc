package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/coverage"
)

// APIBaselineReconciler is the coverage scan: for each APIBaseline it
// evaluates every exposed object of the cluster with the admission engine
// (internal/exposure) and writes the counts, the first violations and the
// Compliant condition into the baseline's status. It finds what admission
// never saw (objects from before apiwarden, from while it was down, or that
// became bare when an exemption expired: it reconciles again at the next
// expiry) and records a Warning Event on each newly violating object, once.
//
// Status is written only when what it reports changes, so a resync of an
// unchanged cluster writes nothing.
type APIBaselineReconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	// Namespace is apiwarden's own namespace, never governed.
	Namespace string
	// Resync is how often every baseline is scanned again even when nothing
	// changed (default 5 minutes).
	Resync time.Duration
	// Now is the clock (tests move it).
	Now func() time.Time
	// Registerer, when set, receives apiwarden_exposed_objects.
	Registerer prometheus.Registerer
	// MaxEvents bounds the Events one scan records (default 100): the
	// first scan of a large cluster with no protection would otherwise
	// record one per object and code at once, more than the apiserver or
	// the Event broadcaster's queue should take. The rest are recorded by
	// the next scans, MaxEvents at a time.
	MaxEvents int

	gatewayAPI atomic.Bool // Gateway API CRDs present and watched
	crds       crdSet
	ctrl       controller.Controller
	cache      cache.Cache
	exposed    *prometheus.GaugeVec
	mu         sync.Mutex
	reported   map[string]bool // "uid/code" already announced by an Event
}

// eventPace is how soon a scan that left Events unrecorded runs again.
const eventPace = 2 * time.Second

// SetupWithManager registers the controller. Route and Gateway watches
// start when the Gateway API CRDs exist, at start or later.
func (r *APIBaselineReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Resync <= 0 {
		r.Resync = 5 * time.Minute
	}
	if r.MaxEvents <= 0 {
		r.MaxEvents = 100
	}
	r.reported = map[string]bool{}
	r.exposed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apiwarden_exposed_objects",
		Help: "Exposed objects an APIBaseline governs, by baseline and state (protected, exempt, violating), from the last coverage scan.",
	}, []string{"baseline", "state"})
	if r.Registerer != nil {
		if err := r.Registerer.Register(r.exposed); err != nil {
			return fmt.Errorf("registering apiwarden_exposed_objects: %w", err)
		}
	}
	all := handler.EnqueueRequestsFromMapFunc(r.allBaselines)
	c, err := ctrl.NewControllerManagedBy(mgr).
		For(&apiwardenv1alpha1.APIBaseline{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&networkingv1.Ingress{}, all).
		Watches(&corev1.Service{}, all).
		Watches(&corev1.Namespace{}, all, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&apiwardenv1alpha1.APIPolicy{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(crdMetadata(), handler.EnqueueRequestsFromMapFunc(r.crdChanged), builder.OnlyMetadata).
		Named("apibaseline").
		Build(r)
	if err != nil {
		return err
	}
	r.ctrl, r.cache = c, mgr.GetCache()
	r.crds.gate("Gateway API objects of the coverage scan", crdNames(gatewayAPIKinds), func() error {
		r.gatewayAPI.Store(true)
		if err := watchGatewayAPI(r.ctrl, r.cache, all); err != nil {
			r.gatewayAPI.Store(false)
			return err
		}
		return nil
	})
	return nil
}

// crdChanged starts the Gateway and route watches once the Gateway API
// CRDs exist (at start, or when installed later: no restart), and then
// rescans every baseline.
func (r *APIBaselineReconciler) crdChanged(ctx context.Context, o client.Object) []reconcile.Request {
	if !r.crds.relevant(o.GetName()) || !r.crds.observe(ctx, r.cache, o) {
		return nil
	}
	return r.allBaselines(ctx, o)
}

func (r *APIBaselineReconciler) allBaselines(ctx context.Context, _ client.Object) []reconcile.Request {
	return requestsForAll(ctx, r.Client, &apiwardenv1alpha1.APIBaselineList{})
}

// scan evaluates every object the engine governs, from the cache.
func (r *APIBaselineReconciler) scan(ctx context.Context, now time.Time) ([]coverage.Object, []client.Object, error) {
	return coverage.Scan(ctx, r.Client, now, coverage.ScanOptions{OwnNamespace: r.Namespace, GatewayAPI: r.gatewayAPI.Load()})
}

// Reconcile scans the cluster for one baseline and writes its status.
func (r *APIBaselineReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var b apiwardenv1alpha1.APIBaseline
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		if client.IgnoreNotFound(err) == nil {
			r.exposed.DeletePartialMatch(prometheus.Labels{"baseline": req.Name})
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	now := r.Now()
	objs, raw, err := r.scan(ctx, now)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("scanning exposed objects: %w", err)
	}
	sum := coverage.Summarize(b.Name, objs, now)
	moreEvents := r.announce(b.Name, objs, raw)

	next := b.Status.DeepCopy()
	next.ObservedGeneration = b.Generation
	counts := sum.Counts
	next.Counts = &counts
	r.exposed.WithLabelValues(b.Name, "protected").Set(float64(counts.Protected))
	r.exposed.WithLabelValues(b.Name, "exempt").Set(float64(counts.Exempt))
	r.exposed.WithLabelValues(b.Name, "violating").Set(float64(counts.Violating))
	next.Violations = sum.Violations
	compliant := cond(apiwardenv1alpha1.ConditionCompliant, true, apiwardenv1alpha1.ReasonAllCompliant,
		fmt.Sprintf("%d exposed objects: %d protected, %d exempt", counts.Exposed, counts.Protected, counts.Exempt))
	if sum.Total > 0 {
		compliant = cond(apiwardenv1alpha1.ConditionCompliant, false, apiwardenv1alpha1.ReasonViolations,
			fmt.Sprintf("%d violations on %d of %d exposed objects; status.violations lists the first %d", sum.Total, counts.Violating, counts.Exposed, len(sum.Violations)))
	}
	ready := cond(apiwardenv1alpha1.ConditionReady, true, apiwardenv1alpha1.ReasonReconciled, "the coverage scan completed")
	for _, c := range []metav1.Condition{compliant, ready} {
		c.ObservedGeneration = b.Generation
		meta.SetStatusCondition(&next.Conditions, c)
	}
	// lastScanTime is left alone when nothing else changed, so that a
	// resync of an unchanged cluster writes nothing.
	next.LastScanTime = b.Status.LastScanTime
	if !equality.Semantic.DeepEqual(&b.Status, next) {
		next.LastScanTime = &metav1.Time{Time: now}
		orig := b.DeepCopy()
		b.Status = *next
		// A merge patch, not an update: the status is computed whole from
		// the scan, so the optimistic lock would only turn a stale cache
		// into a conflict and a retry.
		if err := r.Client.Status().Patch(ctx, &b, client.MergeFrom(orig)); err != nil {
			return reconcile.Result{}, fmt.Errorf("writing status: %w", err)
		}
	}
	after := r.Resync
	if moreEvents {
		after = eventPace // the next MaxEvents Events
	}
	if !sum.NextChange.IsZero() {
		if d := sum.NextChange.Sub(now); d < after {
			after = d + time.Second // just past the expiry
		}
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// announce records a Warning Event on an object when violations of the
// baseline appear on it: one Event for all the codes new since the last
// scan (reason: the first of them), so resyncs do not repeat it; a
// violation fixed and broken again is announced again. At most MaxEvents
// Events per scan: it reports whether some were left for the next scan.
func (r *APIBaselineReconciler) announce(baseline string, objs []coverage.Object, raw []client.Object) (more bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	current := map[string]bool{}
	budget := r.MaxEvents
	defer func() {
		for k := range r.reported {
			if !current[k] && strings.Contains(k, "/"+baseline+"/") {
				delete(r.reported, k)
			}
		}
	}()
	var fresh []string
	var msgs []string
	for i, o := range objs {
		fresh, msgs = fresh[:0], msgs[:0]
		var reason string
		for _, v := range o.Verdict.Violations {
			if v.Baseline != baseline {
				continue
			}
			key := string(raw[i].GetUID()) + "/" + baseline + "/" + string(v.Code)
			current[key] = true
			if r.reported[key] || slices.Contains(fresh, key) {
				continue
			}
			if reason == "" {
				reason = string(v.Code)
			}
			fresh, msgs = append(fresh, key), append(msgs, v.Message)
		}
		if len(fresh) == 0 {
			continue
		}
		if budget == 0 {
			more = true
			continue
		}
		budget--
		for _, k := range fresh {
			r.reported[k] = true
		}
		r.Recorder.Eventf(raw[i], corev1.EventTypeWarning, reason, "APIBaseline %s: %s", baseline, coverage.Clip(strings.Join(msgs, " "), 1024))
	}
	return more
}
