package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// crdName is the name of the CRD serving a kind: its plural, a dot, its group.
func crdName(gvk schema.GroupVersionKind) string {
	k := strings.ToLower(gvk.Kind)
	switch {
	case strings.HasSuffix(k, "y") && !strings.ContainsAny(k[len(k)-2:len(k)-1], "aeiou"):
		k = k[:len(k)-1] + "ies"
	default:
		k += "s"
	}
	return k + "." + gvk.Group
}

// crdMetadata is the object a metadata-only watch of CRDs is built from.
func crdMetadata() client.Object {
	crd := &metav1.PartialObjectMetadata{}
	crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	return crd
}

// crdSet tracks which of some CRDs exist, from a controller's metadata watch
// of CustomResourceDefinitions, and starts each registered watch once every
// CRD it needs exists: at start, or when installed later, with no restart.
// It is how a controller works with optional CRDs (Gateway API, Envoy
// Gateway, cert-manager).
type crdSet struct {
	mu      sync.Mutex
	present map[string]bool
	gates   []*crdGate
}

type crdGate struct {
	needs   []string
	start   func() error
	what    string
	started bool
}

// gate registers start, run once every CRD in needs exists; what names it
// in logs. On failure it is retried at the next CRD event.
func (s *crdSet) gate(what string, needs []string, start func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gates = append(s.gates, &crdGate{needs: needs, start: start, what: what})
}

// relevant reports whether name is a CRD some gate, or extra, needs.
func (s *crdSet) relevant(name string, extra ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.gates {
		for _, n := range g.needs {
			if n == name {
				return true
			}
		}
	}
	for _, n := range extra {
		if n == name {
			return true
		}
	}
	return false
}

// has reports whether every named CRD exists.
func (s *crdSet) has(names ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if !s.present[n] {
			return false
		}
	}
	return true
}

// observe records a CRD event (confirming against reader, since a delete
// event carries the last state), starts the gates it completes, and reports
// whether the CRD's presence changed.
func (s *crdSet) observe(ctx context.Context, reader client.Reader, o client.Object) bool {
	exists := o.GetDeletionTimestamp() == nil
	if err := reader.Get(ctx, client.ObjectKey{Name: o.GetName()}, crdMetadata()); apierrors.IsNotFound(err) {
		exists = false
	}
	s.mu.Lock()
	if s.present == nil {
		s.present = map[string]bool{}
	}
	changed := s.present[o.GetName()] != exists
	s.present[o.GetName()] = exists
	var ready []*crdGate
	for _, g := range s.gates {
		if g.started {
			continue
		}
		all := true
		for _, n := range g.needs {
			all = all && s.present[n]
		}
		if all {
			g.started = true
			ready = append(ready, g)
		}
	}
	s.mu.Unlock()
	for _, g := range ready {
		// Not from the event handler: the controller holds its lock while
		// its first sources sync, and the handler runs during that sync.
		go func() {
			if err := g.start(); err != nil {
				logf.FromContext(ctx).Error(err, "Starting a watch", "watch", g.what)
				s.mu.Lock()
				g.started = false
				s.mu.Unlock()
			}
		}()
	}
	return changed
}

// watchGatewayAPI starts c's watches of Gateways, HTTPRoutes and GRPCRoutes,
// mapped to requests by h: what a gate starts once the Gateway API CRDs
// exist.
func watchGatewayAPI(c controller.Controller, cache ctrlcache.Cache, h handler.EventHandler) error {
	for _, o := range []client.Object{&gatewayv1.HTTPRoute{}, &gatewayv1.GRPCRoute{}, &gatewayv1.Gateway{}} {
		if err := c.Watch(source.Kind(cache, o, h)); err != nil {
			return fmt.Errorf("watching %T: %w", o, err)
		}
	}
	return nil
}
