package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// requestsForAll lists every object of list's kind from c and returns one
// request per object, keyed by name only: how a controller keyed on a
// cluster-scoped kind (baselines, namespaces) enqueues all of them. A failed
// list is logged and enqueues nothing; the next event or resync retries.
func requestsForAll(ctx context.Context, c client.Reader, list client.ObjectList) []reconcile.Request {
	if err := c.List(ctx, list); err != nil {
		logf.FromContext(ctx).Error(err, "Listing objects to enqueue", "kind", list.GetObjectKind().GroupVersionKind().Kind)
		return nil
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(items))
	for _, it := range items {
		if o, ok := it.(client.Object); ok {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: o.GetName()}})
		}
	}
	return out
}

// policyNamespaces returns the requests, keyed by namespace name, of the
// namespaces whose objects an APIPolicy can cover: its own, and every
// namespace when it targets a Gateway (routes of any namespace may attach
// to a Gateway). For controllers keyed on namespaces.
func policyNamespaces(ctx context.Context, c client.Reader, o client.Object) []reconcile.Request {
	if p, ok := o.(*apiwardenv1alpha1.APIPolicy); ok {
		for _, ref := range p.Spec.TargetRefs {
			if ref.Kind == "Gateway" {
				return requestsForAll(ctx, c, &corev1.NamespaceList{})
			}
		}
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
}
