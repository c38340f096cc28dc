package coverage

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// ScanOptions tune Scan.
type ScanOptions struct {
	// OwnNamespace is apiwarden's namespace, never governed.
	OwnNamespace string
	// GatewayAPI says whether the Gateway API CRDs are installed, so that
	// Gateways and routes are read too.
	GatewayAPI bool
	// Namespace, when set, limits the scan to the objects of one namespace,
	// with the APIPolicies of that namespace and of the namespaces of the
	// Gateways its routes attach to.
	Namespace string
}

// Scan reads every object the engine evaluates, with the baselines,
// policies and namespaces that decide, and evaluates each at now. The
// controller reads from its cache, `apiwarden coverage` from the apiserver;
// the two slices are aligned.
func Scan(ctx context.Context, r client.Reader, now time.Time, o ScanOptions) ([]Object, []client.Object, error) {
	var baselines apiwardenv1alpha1.APIBaselineList
	var policies apiwardenv1alpha1.APIPolicyList
	var namespaces corev1.NamespaceList
	var in []client.ListOption
	if o.Namespace != "" {
		in = append(in, client.InNamespace(o.Namespace))
		var ns corev1.Namespace
		if err := r.Get(ctx, client.ObjectKey{Name: o.Namespace}, &ns); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil, nil
			}
			return nil, nil, fmt.Errorf("reading namespace %s: %w", o.Namespace, err)
		}
		namespaces.Items = []corev1.Namespace{ns}
	} else if err := r.List(ctx, &namespaces); err != nil {
		return nil, nil, fmt.Errorf("listing namespaces: %w", err)
	}
	if err := r.List(ctx, &baselines); err != nil {
		return nil, nil, fmt.Errorf("listing APIBaselines: %w", err)
	}
	if err := r.List(ctx, &policies, in...); err != nil {
		return nil, nil, fmt.Errorf("listing APIPolicies: %w", err)
	}
	var objs []client.Object
	var ingresses networkingv1.IngressList
	var services corev1.ServiceList
	type named struct {
		kinds string
		list  client.ObjectList
	}
	lists := []named{{"Ingresses", &ingresses}, {"Services", &services}}
	if o.GatewayAPI {
		lists = append(lists, named{"Gateways", &gatewayv1.GatewayList{}}, named{"HTTPRoutes", &gatewayv1.HTTPRouteList{}}, named{"GRPCRoutes", &gatewayv1.GRPCRouteList{}})
	}
	for _, n := range lists {
		l := n.list
		if err := r.List(ctx, l, in...); err != nil {
			return nil, nil, fmt.Errorf("listing %s: %w", n.kinds, err)
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			return nil, nil, err
		}
		for _, it := range items {
			objs = append(objs, it.(client.Object))
		}
	}
	if o.Namespace != "" {
		// A route may attach to a Gateway of another namespace, and the
		// policies on that Gateway cover it too: read theirs as well.
		for _, ns := range parentNamespaces(objs, o.Namespace) {
			var more apiwardenv1alpha1.APIPolicyList
			if err := r.List(ctx, &more, client.InNamespace(ns)); err != nil {
				return nil, nil, fmt.Errorf("reading the APIPolicies of namespace %s, to whose Gateways routes of %s attach: %w", ns, o.Namespace, err)
			}
			policies.Items = append(policies.Items, more.Items...)
		}
	}
	bs := make([]*apiwardenv1alpha1.APIBaseline, len(baselines.Items))
	for i := range baselines.Items {
		bs[i] = &baselines.Items[i]
	}
	ps := make([]*apiwardenv1alpha1.APIPolicy, len(policies.Items))
	for i := range policies.Items {
		ps[i] = &policies.Items[i]
	}
	nsLabels := make(map[string]map[string]string, len(namespaces.Items))
	for _, n := range namespaces.Items {
		nsLabels[n.Name] = n.Labels
	}
	snap := exposure.NewMemorySnapshot(bs, ps, nsLabels)
	opts := exposure.Options{OwnNamespace: o.OwnNamespace}

	out := make([]Object, 0, len(objs))
	evaluated := objs[:0]
	for _, obj := range objs {
		kind, _ := exposure.KindOf(obj.(runtime.Object))
		v, err := exposure.Evaluate(obj.(runtime.Object), snap, now, opts)
		if err != nil {
			continue // the engine refuses only objects it does not evaluate
		}
		out = append(out, Object{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(), Verdict: v})
		evaluated = append(evaluated, obj)
	}
	return out, evaluated, nil
}

// parentNamespaces returns, sorted, the namespaces other than ns of the
// targets whose policies protect objs: the Gateways routes attach to.
func parentNamespaces(objs []client.Object, ns string) []string {
	seen := map[string]bool{}
	for _, o := range objs {
		for _, k := range exposure.LevelKeys(o.(runtime.Object)) {
			if k.Namespace != ns {
				seen[k.Namespace] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
