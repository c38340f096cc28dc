// Package cachetrim shrinks the objects apiwarden keeps in its informer
// caches to the parts it reads, which bounds the manager's memory per
// watched object (docs/benchmarks.md has the measured figure).
package cachetrim

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// LastApplied is kubectl's client-side-apply annotation: a full copy of the
// object as last applied, often its largest part, which apiwarden never reads.
const LastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Transform drops managedFields and the last-applied annotation from every
// cached object. Objects apiwarden writes are read back from the apiserver,
// never from the cache, so nothing it writes depends on what is dropped.
func Transform() cache.TransformFunc {
	return func(in any) (any, error) {
		m, err := meta.Accessor(in)
		if err != nil {
			// Not an object (a DeletedFinalStateUnknown tombstone): as is.
			return in, nil
		}
		m.SetManagedFields(nil)
		trimRoute(in)
		if a := m.GetAnnotations(); a != nil {
			if _, ok := a[LastApplied]; ok {
				delete(a, LastApplied)
				m.SetAnnotations(a)
			}
		}
		return in, nil
	}
}

// trimRoute drops what apiwarden never reads of a cached route: its status
// (one entry per parent Gateway, with conditions) and, in each rule, the
// backends and filters. Parent references, hostnames and the rules' matches
// stay: the APIPolicy controller reads the parents, and the admission engine
// reads hostnames and matches (credentials in query parameters).
func trimRoute(in any) {
	switch r := in.(type) {
	case *gatewayv1.HTTPRoute:
		r.Status = gatewayv1.HTTPRouteStatus{}
		for i := range r.Spec.Rules {
			r.Spec.Rules[i].BackendRefs = nil
			r.Spec.Rules[i].Filters = nil
		}
	case *gatewayv1.GRPCRoute:
		r.Status = gatewayv1.GRPCRouteStatus{}
		for i := range r.Spec.Rules {
			r.Spec.Rules[i].BackendRefs = nil
			r.Spec.Rules[i].Filters = nil
		}
	}
}
