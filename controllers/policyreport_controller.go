package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/coverage"
	"github.com/apiwarden/apiwarden/internal/policyreport"
	"github.com/apiwarden/apiwarden/internal/render"
)

// PolicyReportReconciler keeps one wgpolicyk8s.io/v1alpha2 PolicyReport,
// named apiwarden, in every namespace with exposed objects an APIBaseline
// governs: the coverage scan of that namespace in the form Kyverno writes,
// so Policy Reporter and its dashboards show apiwarden's findings. The
// request is a namespace: a change to an object rescans only its namespace,
// a change to an APIBaseline every namespace.
//
// The report is written (server-side apply) only when its content changes:
// results keep their timestamps while they say the same thing, so a resync
// of an unchanged cluster writes nothing. A namespace with nothing to report
// has no report. Nothing is written until the PolicyReport CRD exists; with
// InstallCRD the controller installs it when it is missing.
type PolicyReportReconciler struct {
	Client client.Client
	// APIReader reads a report whole, uncached, when it must be rewritten
	// (the cache holds reports' metadata only).
	APIReader client.Reader
	// Namespace is apiwarden's own namespace, never governed.
	Namespace string
	// Resync is how often every namespace is scanned again even when nothing
	// changed (default 5 minutes).
	Resync time.Duration
	// MaxResults bounds the results of one report (default
	// policyreport.DefaultMaxResults).
	MaxResults int
	// InstallCRD installs the PolicyReport CRD, as Kyverno ships it, when
	// the cluster does not have it.
	InstallCRD bool
	// Now is the clock (tests move it).
	Now func() time.Time

	crds  crdSet
	ctrl  controller.Controller
	cache cache.Cache
	mu    sync.Mutex
	// written is, per namespace, the generation of the report as apiwarden
	// last wrote or verified it; a report with another generation was
	// changed by someone else and is read whole again.
	written map[string]int64
}

// SetupWithManager registers the controller; with InstallCRD, also the
// leader-elected step that installs the PolicyReport CRD.
func (r *PolicyReportReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Resync <= 0 {
		r.Resync = 5 * time.Minute
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	r.written = map[string]int64{}
	if r.InstallCRD {
		if err := mgr.Add(&policyReportCRDInstaller{client: mgr.GetClient()}); err != nil {
			return err
		}
	}
	byNamespace := handler.EnqueueRequestsFromMapFunc(namespaceOf)
	all := handler.EnqueueRequestsFromMapFunc(r.allNamespaces)
	c, err := ctrl.NewControllerManagedBy(mgr).
		For(&corev1.Namespace{}, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&networkingv1.Ingress{}, byNamespace).
		Watches(&corev1.Service{}, byNamespace).
		// A policy on a Gateway covers routes of other namespaces too.
		Watches(&apiwardenv1alpha1.APIPolicy{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return policyNamespaces(ctx, r.Client, o)
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&apiwardenv1alpha1.APIBaseline{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(crdMetadata(), handler.EnqueueRequestsFromMapFunc(r.crdChanged), builder.OnlyMetadata).
		Named("policyreport").
		Build(r)
	if err != nil {
		return err
	}
	r.ctrl, r.cache = c, mgr.GetCache()
	r.crds.gate("Gateway API objects of the PolicyReports", crdNames(gatewayAPIKinds), func() error {
		return watchGatewayAPI(r.ctrl, r.cache, byNamespace)
	})
	// A report changed or deleted by someone else is written again. The
	// cache keeps reports' metadata only: they are the largest objects
	// apiwarden writes, and the content hash says whether one is current.
	r.crds.gate("PolicyReports", []string{policyreport.CRDName}, func() error {
		var report client.Object = reportMetadata()
		return r.ctrl.Watch(source.Kind(r.cache, report, byNamespace, predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == policyreport.Name
		})))
	})
	return nil
}

func reportMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(policyreport.GVK)
	return m
}

func reportObject() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(policyreport.GVK)
	return u
}

func namespaceOf(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
}

func (r *PolicyReportReconciler) allNamespaces(ctx context.Context, _ client.Object) []reconcile.Request {
	return requestsForAll(ctx, r.Client, &corev1.NamespaceList{})
}

// crdChanged starts the Gateway API and PolicyReport watches once their
// CRDs exist, and then rescans every namespace.
func (r *PolicyReportReconciler) crdChanged(ctx context.Context, o client.Object) []reconcile.Request {
	if !r.crds.relevant(o.GetName()) || !r.crds.observe(ctx, r.cache, o) {
		return nil
	}
	return r.allNamespaces(ctx, o)
}

// Reconcile rescans one namespace and writes its report when it changed.
func (r *PolicyReportReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !r.crds.has(policyreport.CRDName) {
		return reconcile.Result{}, nil
	}
	ns := req.Name
	now := r.Now()
	objs, _, err := coverage.Scan(ctx, r.Client, now, coverage.ScanOptions{
		OwnNamespace: r.Namespace, GatewayAPI: r.crds.has(crdNames(gatewayAPIKinds)...), Namespace: ns})
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("scanning namespace %s: %w", ns, err)
	}
	var baselines apiwardenv1alpha1.APIBaselineList
	if err := r.Client.List(ctx, &baselines); err != nil {
		return reconcile.Result{}, err
	}
	bs := make([]*apiwardenv1alpha1.APIBaseline, len(baselines.Items))
	for i := range baselines.Items {
		bs[i] = &baselines.Items[i]
	}
	key := types.NamespacedName{Namespace: ns, Name: policyreport.Name}
	cur := reportMetadata()
	err = r.cache.Get(ctx, key, cur)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("reading PolicyReport %s/%s: %w", ns, policyreport.Name, err)
	}
	ours := exists && cur.GetLabels()[policyreport.ManagedByLabel] == policyreport.Source
	rep := policyreport.Build(ns, objs, bs, nil, now, r.MaxResults)
	switch {
	case len(rep.Results) == 0:
		r.forget(ns)
		if ours {
			if err := r.Client.Delete(ctx, cur); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, fmt.Errorf("deleting PolicyReport %s/%s: %w", ns, policyreport.Name, err)
			}
		}
	case ours && cur.GetAnnotations()[policyreport.HashAnnotation] == rep.Hash() && r.current(ns, cur.GetGeneration()):
		// Unchanged: no read, no write.
	default:
		if err := r.write(ctx, key, exists, &rep, func(prev *policyreport.Report) policyreport.Report {
			return policyreport.Build(ns, objs, bs, prev, now, r.MaxResults)
		}); err != nil {
			return reconcile.Result{}, err
		}
	}
	after := r.Resync
	for _, o := range objs {
		if e := o.Verdict.NextExpiry; !e.IsZero() && e.After(now) && e.Sub(now) < after {
			after = e.Sub(now) + time.Second // just past the expiry
		}
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// write brings the report at key to what build makes: results that did not
// change keep their timestamps, read from the report as it is.
func (r *PolicyReportReconciler) write(ctx context.Context, key types.NamespacedName, exists bool, rep *policyreport.Report,
	build func(prev *policyreport.Report) policyreport.Report) error {
	if exists {
		full := reportObject()
		err := r.APIReader.Get(ctx, key, full)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("reading PolicyReport %s/%s: %w", key.Namespace, key.Name, err)
		default:
			if prev, err := policyreport.FromUnstructured(full); err == nil {
				*rep = build(&prev)
				if policyreport.Equal(*rep, prev) && full.GetLabels()[policyreport.ManagedByLabel] == policyreport.Source &&
					full.GetAnnotations()[policyreport.HashAnnotation] == rep.Hash() {
					r.remember(key.Namespace, full.GetGeneration())
					return nil
				}
			}
		}
	}
	u, err := rep.Unstructured()
	if err != nil {
		return err
	}
	if err := r.Client.Patch(ctx, u, client.Apply, client.FieldOwner(render.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying PolicyReport %s/%s: %w", key.Namespace, key.Name, err)
	}
	r.remember(key.Namespace, u.GetGeneration())
	return nil
}

func (r *PolicyReportReconciler) remember(ns string, generation int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.written[ns] = generation
}

func (r *PolicyReportReconciler) forget(ns string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.written, ns)
}

// current reports whether generation is the one apiwarden last wrote or
// verified in ns.
func (r *PolicyReportReconciler) current(ns string, generation int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.written[ns]
	return ok && g == generation
}

// policyReportCRDInstaller installs the PolicyReport CRD at start when the
// cluster does not have it (Kyverno or Policy Reporter may have installed
// it already; an existing CRD is never changed).
type policyReportCRDInstaller struct{ client client.Client }

var _ manager.LeaderElectionRunnable = (*policyReportCRDInstaller)(nil)

func (i *policyReportCRDInstaller) NeedLeaderElection() bool { return true }

func (i *policyReportCRDInstaller) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("policyreport-crd")
	crd, err := policyreport.CRD()
	if err != nil {
		return err
	}
	// Unstructured, so that the manager's scheme need not know CRDs.
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
	if err != nil {
		return err
	}
	for {
		obj := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(content)}
		obj.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
		err := i.client.Create(ctx, obj)
		if err == nil {
			log.Info("Installed the PolicyReport CRD", "crd", crd.Name)
			return nil
		}
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		// A transient apiserver error must not stop the manager; a
		// permission error is worth saying once, then reports wait for
		// someone to install the CRD.
		if apierrors.IsForbidden(err) {
			log.Error(err, "Cannot install the PolicyReport CRD; install it or turn --install-policyreport-crd off")
			return nil
		}
		log.Error(err, "Installing the PolicyReport CRD; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}
