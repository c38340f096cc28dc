package webhooks

import (
	"context"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// Field indexes on the manager's cache, through which the APIPolicy guard
// finds what a policy protects without listing the apiserver.
const (
	// IndexRouteParent indexes HTTPRoutes and GRPCRoutes by "namespace/name" of
	// each parent Gateway.
	IndexRouteParent = "apiwarden.io/route-parent"
	// IndexIngressBackend indexes Ingresses by the names of their backend Services.
	IndexIngressBackend = "apiwarden.io/ingress-backend"
)

// SetupIndexes registers the field indexes admission needs. Gateway API
// indexes are registered only when the Gateway API CRDs are installed.
func SetupIndexes(ctx context.Context, indexer client.FieldIndexer, gatewayAPI bool) error {
	if err := indexer.IndexField(ctx, &networkingv1.Ingress{}, IndexIngressBackend, func(o client.Object) []string {
		return exposure.IngressBackendServices(o.(*networkingv1.Ingress))
	}); err != nil {
		return fmt.Errorf("indexing Ingresses by backend: %w", err)
	}
	if !gatewayAPI {
		return nil
	}
	if err := indexer.IndexField(ctx, &gatewayv1.HTTPRoute{}, IndexRouteParent, func(o client.Object) []string {
		r := o.(*gatewayv1.HTTPRoute)
		return parentIndexKeys(r.Namespace, r.Spec.ParentRefs)
	}); err != nil {
		return fmt.Errorf("indexing HTTPRoutes by parent: %w", err)
	}
	if err := indexer.IndexField(ctx, &gatewayv1.GRPCRoute{}, IndexRouteParent, func(o client.Object) []string {
		r := o.(*gatewayv1.GRPCRoute)
		return parentIndexKeys(r.Namespace, r.Spec.ParentRefs)
	}); err != nil {
		return fmt.Errorf("indexing GRPCRoutes by parent: %w", err)
	}
	return nil
}

// parentIndexKeys renders a route's parent Gateways as "namespace/name".
func parentIndexKeys(namespace string, refs []gatewayv1.ParentReference) []string {
	gws := exposure.RouteParentGateways(namespace, refs)
	out := make([]string, len(gws))
	for i, g := range gws {
		out[i] = g.Namespace + "/" + g.Name
	}
	return out
}

// overlay replaces one APIPolicy in a snapshot: with next, or with nothing
// when next is nil. The policy guard asks the engine what the cluster would
// look like after a deletion or update.
type overlay struct {
	exposure.Snapshot
	namespace, name string
	next            *apiwardenv1alpha1.APIPolicy
}

// PoliciesFor implements exposure.Snapshot.
func (o *overlay) PoliciesFor(t exposure.TargetKey) []*apiwardenv1alpha1.APIPolicy {
	var out []*apiwardenv1alpha1.APIPolicy
	for _, p := range o.Snapshot.PoliciesFor(t) {
		if p.Namespace == o.namespace && p.Name == o.name {
			continue
		}
		out = append(out, p)
	}
	if o.next != nil {
		for _, k := range exposure.PolicyTargetKeys(o.next) {
			if k == t {
				out = append(out, o.next)
				break
			}
		}
	}
	return out
}
