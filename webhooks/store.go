package webhooks

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// Store is what admission knows about the cluster's APIBaselines,
// APIPolicies and Namespaces, kept current by the manager's informers and
// indexed for the engine: policies by target, namespaces by name. Reads
// copy nothing and take a read lock, so a decision costs map lookups rather
// than cache List calls, which copy and reflect on every request.
//
// The objects it holds are the informers' own: nothing may modify them.
type Store struct {
	mu         sync.RWMutex
	baselines  map[string]*apiwardenv1alpha1.APIBaseline
	sorted     []*apiwardenv1alpha1.APIBaseline // baselines by name, rebuilt on change
	policies   map[client.ObjectKey]*apiwardenv1alpha1.APIPolicy
	byTarget   map[exposure.TargetKey][]*apiwardenv1alpha1.APIPolicy
	namespaces map[string]map[string]string

	// apiReader reads a namespace the informer has not delivered yet.
	apiReader client.Reader

	synced []func() bool
}

// NewStore returns an empty store. apiReader, if not nil, is asked for
// namespaces the store does not know yet.
func NewStore(apiReader client.Reader) *Store {
	return &Store{
		baselines:  map[string]*apiwardenv1alpha1.APIBaseline{},
		policies:   map[client.ObjectKey]*apiwardenv1alpha1.APIPolicy{},
		byTarget:   map[exposure.TargetKey][]*apiwardenv1alpha1.APIPolicy{},
		namespaces: map[string]map[string]string{},
		apiReader:  apiReader,
	}
}

// Watch registers the store's event handlers on the manager cache's
// informers of APIBaselines, APIPolicies and Namespaces.
func (s *Store) Watch(ctx context.Context, c ctrlcache.Cache) error {
	for _, obj := range []client.Object{&apiwardenv1alpha1.APIBaseline{}, &apiwardenv1alpha1.APIPolicy{}, &corev1.Namespace{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { s.put(o) },
			UpdateFunc: func(_, o any) { s.put(o) },
			DeleteFunc: func(o any) {
				if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
					o = t.Obj
				}
				s.remove(o)
			},
		})
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		s.synced = append(s.synced, reg.HasSynced)
	}
	return nil
}

// Synced reports whether the store has received every object the informers
// listed at start; admission is not ready before. A store filled by hand
// (no informers) is synced.
func (s *Store) Synced() bool {
	for _, f := range s.synced {
		if !f() {
			return false
		}
	}
	return true
}

// errNotSynced fails a decision taken before the store is complete: an
// empty store would admit everything.
var errNotSynced = errors.New("apiwarden's policy store is still loading; retry in a moment")

func (s *Store) put(o any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch x := o.(type) {
	case *apiwardenv1alpha1.APIBaseline:
		s.baselines[x.Name] = x
		s.resort()
	case *apiwardenv1alpha1.APIPolicy:
		key := client.ObjectKeyFromObject(x)
		if old, ok := s.policies[key]; ok {
			s.unindex(old)
		}
		s.policies[key] = x
		for _, k := range exposure.PolicyTargetKeys(x) {
			s.byTarget[k] = append(s.byTarget[k], x)
		}
	case *corev1.Namespace:
		s.namespaces[x.Name] = x.Labels
	}
}

func (s *Store) remove(o any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch x := o.(type) {
	case *apiwardenv1alpha1.APIBaseline:
		delete(s.baselines, x.Name)
		s.resort()
	case *apiwardenv1alpha1.APIPolicy:
		key := client.ObjectKeyFromObject(x)
		if old, ok := s.policies[key]; ok {
			s.unindex(old)
			delete(s.policies, key)
		}
	case *corev1.Namespace:
		delete(s.namespaces, x.Name)
	}
}

// unindex removes p from the target index. Callers hold the write lock.
func (s *Store) unindex(p *apiwardenv1alpha1.APIPolicy) {
	for _, k := range exposure.PolicyTargetKeys(p) {
		list := s.byTarget[k]
		out := make([]*apiwardenv1alpha1.APIPolicy, 0, len(list))
		for _, q := range list {
			if q != p {
				out = append(out, q)
			}
		}
		if len(out) == 0 {
			delete(s.byTarget, k)
		} else {
			s.byTarget[k] = out
		}
	}
}

// resort rebuilds the sorted baseline list. Callers hold the write lock.
// The slice is replaced, never modified, so readers may keep the old one.
func (s *Store) resort() {
	out := make([]*apiwardenv1alpha1.APIBaseline, 0, len(s.baselines))
	for _, b := range s.baselines {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	s.sorted = out
}

// Has reports whether the store holds obj (an APIBaseline, APIPolicy or
// Namespace) at its resourceVersion or later, or, when present is false,
// does not hold it. Other kinds are not in the store: Has reports true.
func (s *Store) Has(obj client.Object, present bool) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var got client.Object
	switch o := obj.(type) {
	case *apiwardenv1alpha1.APIBaseline:
		if b, ok := s.baselines[o.Name]; ok {
			got = b
		}
	case *apiwardenv1alpha1.APIPolicy:
		if p, ok := s.policies[client.ObjectKeyFromObject(o)]; ok {
			got = p
		}
	case *corev1.Namespace:
		if _, ok := s.namespaces[o.Name]; ok {
			return present
		}
		return !present
	default:
		return true
	}
	if !present {
		return got == nil
	}
	return got != nil && (obj.GetResourceVersion() == "" || rvAtLeast(got.GetResourceVersion(), obj.GetResourceVersion()))
}

// rvAtLeast compares resourceVersions as the numbers etcd makes them.
func rvAtLeast(have, want string) bool {
	if len(have) != len(want) {
		return len(have) > len(want)
	}
	return have >= want
}

// snapshot is one decision's view of the store. The read lock is held while
// the engine runs, so the view is consistent.
type snapshot struct {
	s *Store
	// fetched holds namespaces read from the apiserver before the lock was
	// taken, because the store did not have them yet.
	fetched map[string]map[string]string
}

// View runs f with a consistent snapshot of the store. namespaces are those
// the decision will look up: any the store does not know yet is read from
// the apiserver first, outside the lock, so no apiserver call ever holds up
// the informers or other decisions. A namespace the apiserver does not have
// either is reported unknown; any other read error is returned.
func (s *Store) View(ctx context.Context, namespaces []string, f func(exposure.Snapshot)) error {
	if !s.Synced() {
		return errNotSynced
	}
	snap := &snapshot{s: s}
	for _, name := range namespaces {
		s.mu.RLock()
		_, known := s.namespaces[name]
		s.mu.RUnlock()
		if known || s.apiReader == nil || snap.fetched[name] != nil {
			continue
		}
		var ns corev1.Namespace
		if err := s.apiReader.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("reading namespace %s: %w", name, err)
		}
		if snap.fetched == nil {
			snap.fetched = map[string]map[string]string{}
		}
		labels := ns.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		snap.fetched[name] = labels
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	f(snap)
	return nil
}

// Baselines implements exposure.Snapshot.
func (v *snapshot) Baselines() []*apiwardenv1alpha1.APIBaseline { return v.s.sorted }

// PoliciesFor implements exposure.Snapshot. The slice is the store's own:
// read it only within View's callback, which holds the store's read lock
// (put appends to these slices in place), and never modify it.
func (v *snapshot) PoliciesFor(t exposure.TargetKey) []*apiwardenv1alpha1.APIPolicy {
	return v.s.byTarget[t]
}

// NamespaceLabels implements exposure.Snapshot. A namespace the informer has
// not delivered yet exists all the same (the apiserver admits nothing into a
// namespace that does not); View has read it from the apiserver, so it is
// never taken as ungoverned.
func (v *snapshot) NamespaceLabels(name string) (map[string]string, bool) {
	if l, ok := v.s.namespaces[name]; ok {
		return l, true
	}
	l, ok := v.fetched[name]
	return l, ok
}
