package webhooks

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// Field indexes on the manager's cache. Admission looks objects up through
// them and never lists the apiserver per request.
const (
	// IndexPolicyTarget indexes APIPolicies by "group/kind/namespace/name" of each target.
	IndexPolicyTarget = "apiwarden.io/policy-target"
	// IndexRouteParent indexes HTTPRoutes and GRPCRoutes by "namespace/name" of
	// each parent Gateway.
	IndexRouteParent = "apiwarden.io/route-parent"
	// IndexIngressBackend indexes Ingresses by the names of their backend Services.
	IndexIngressBackend = "apiwarden.io/ingress-backend"
)

// SetupIndexes registers the field indexes admission needs. Gateway API
// indexes are registered only when the Gateway API CRDs are installed.
func SetupIndexes(ctx context.Context, indexer client.FieldIndexer, gatewayAPI bool) error {
	if err := indexer.IndexField(ctx, &apiwardenv1alpha1.APIPolicy{}, IndexPolicyTarget, func(o client.Object) []string {
		var keys []string
		for _, k := range exposure.PolicyTargetKeys(o.(*apiwardenv1alpha1.APIPolicy)) {
			keys = append(keys, k.String())
		}
		return keys
	}); err != nil {
		return fmt.Errorf("indexing APIPolicies by target: %w", err)
	}
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

// cacheSnapshot is an exposure.Snapshot read from the manager's cache. It
// remembers the first error, because the engine's interface cannot return
// one; callers check err before trusting a verdict. Lists share the cache's
// objects (client.UnsafeDisableDeepCopy): nothing here or in the engine may
// modify them.
type cacheSnapshot struct {
	ctx    context.Context
	reader client.Reader
	// apiReader reads the apiserver directly. A namespace missing from the
	// cache exists all the same (the apiserver admits nothing into a
	// namespace that does not), so the cache is behind: ask the apiserver
	// rather than judge the object ungoverned.
	apiReader client.Reader
	err       error
}

func (s *cacheSnapshot) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// Baselines implements exposure.Snapshot.
func (s *cacheSnapshot) Baselines() []*apiwardenv1alpha1.APIBaseline {
	var list apiwardenv1alpha1.APIBaselineList
	// The engine only reads: list the cache's own objects, without the deep
	// copy that would otherwise cost an allocation per field per request.
	if err := s.reader.List(s.ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		s.fail(fmt.Errorf("listing APIBaselines from the cache: %w", err))
		return nil
	}
	out := make([]*apiwardenv1alpha1.APIBaseline, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out
}

// PoliciesFor implements exposure.Snapshot.
func (s *cacheSnapshot) PoliciesFor(t exposure.TargetKey) []*apiwardenv1alpha1.APIPolicy {
	var list apiwardenv1alpha1.APIPolicyList
	if err := s.reader.List(s.ctx, &list, client.InNamespace(t.Namespace), client.MatchingFields{IndexPolicyTarget: t.String()}, client.UnsafeDisableDeepCopy); err != nil {
		s.fail(fmt.Errorf("looking up APIPolicies for %s: %w", t, err))
		return nil
	}
	out := make([]*apiwardenv1alpha1.APIPolicy, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out
}

// NamespaceLabels implements exposure.Snapshot.
func (s *cacheSnapshot) NamespaceLabels(name string) (map[string]string, bool) {
	var ns corev1.Namespace
	err := s.reader.Get(s.ctx, client.ObjectKey{Name: name}, &ns)
	if apierrors.IsNotFound(err) && s.apiReader != nil {
		err = s.apiReader.Get(s.ctx, client.ObjectKey{Name: name}, &ns)
	}
	if err != nil {
		if !apierrors.IsNotFound(err) {
			s.fail(fmt.Errorf("reading namespace %s: %w", name, err))
		}
		return nil, false
	}
	return ns.Labels, true
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

// isNoMatch reports whether err says a kind's CRD is not installed.
func isNoMatch(err error) bool {
	return meta.IsNoMatchError(err)
}
