package exposure

import (
	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// MemorySnapshot is a Snapshot built from objects in memory, for the CLI,
// tests and benchmarks. Build it with NewMemorySnapshot; it is read-only
// afterwards and safe for concurrent use.
type MemorySnapshot struct {
	baselines  []*apiwardenv1alpha1.APIBaseline
	byTarget   map[TargetKey][]*apiwardenv1alpha1.APIPolicy
	namespaces map[string]map[string]string
}

// NewMemorySnapshot indexes policies by target. namespaces maps each known
// namespace to its labels; it may be nil.
func NewMemorySnapshot(baselines []*apiwardenv1alpha1.APIBaseline, policies []*apiwardenv1alpha1.APIPolicy, namespaces map[string]map[string]string) *MemorySnapshot {
	s := &MemorySnapshot{baselines: baselines, byTarget: map[TargetKey][]*apiwardenv1alpha1.APIPolicy{}, namespaces: namespaces}
	for _, p := range policies {
		for _, k := range PolicyTargetKeys(p) {
			s.byTarget[k] = append(s.byTarget[k], p)
		}
	}
	return s
}

// PolicyTargetKeys returns the distinct targets of a policy, the index keys
// by which the webhook's cache and MemorySnapshot find it.
func PolicyTargetKeys(p *apiwardenv1alpha1.APIPolicy) []TargetKey {
	var keys []TargetKey
	seen := map[TargetKey]bool{}
	for _, ref := range p.Spec.TargetRefs {
		k := TargetKey{Group: ref.Group, Kind: ref.Kind, Namespace: p.Namespace, Name: ref.Name}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// Baselines implements Snapshot.
func (s *MemorySnapshot) Baselines() []*apiwardenv1alpha1.APIBaseline { return s.baselines }

// PoliciesFor implements Snapshot.
func (s *MemorySnapshot) PoliciesFor(t TargetKey) []*apiwardenv1alpha1.APIPolicy {
	return s.byTarget[t]
}

// NamespaceLabels implements Snapshot.
func (s *MemorySnapshot) NamespaceLabels(name string) (map[string]string, bool) {
	l, ok := s.namespaces[name]
	return l, ok
}
