// Package authz is apiwarden's authorization service: it verifies the API
// keys of APIKeySets for requests the gateway forwards to it, applies the
// authorization rules of the APIPolicy that protects the route, and tells the
// gateway to allow (forwarding the consumer's identity and stripping the key)
// or to answer 400, 401 or 403.
//
// It speaks Envoy's external authorization over gRPC
// (envoy.service.auth.v3.Authorization/Check, for Envoy Gateway and Istio)
// and HTTP forward-auth (the request shape of Traefik's ForwardAuth and
// ingress-nginx's auth-url). Both front ends share one decision function,
// Store.Check, which does no I/O and allocates nothing.
//
// What it knows comes from the manager's informers: APIPolicies and the hash
// stores of APIKeySets. Every change builds a new immutable snapshot that is
// swapped in atomically, so a rotation or a revocation takes effect as soon as
// the informer sees it, on every replica, with no restart.
package authz

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/keys"
	"github.com/apiwarden/apiwarden/internal/keystore"
)

// snapshot is what Store.Check reads. It is never modified once published.
type snapshot struct {
	hasher   *keys.Hasher       // nil until the pepper is loaded
	policies map[string]*policy // by "namespace/name"
	sets     map[string]*keySet // by "namespace/name"
}

// keySet is the verification index of one APIKeySet's hash store.
type keySet struct {
	namespace, name string
	byHash          map[keys.Hash]*keyEntry
}

// keyEntry is one valid key. usage survives snapshot rebuilds.
type keyEntry struct {
	hash     keys.Hash
	id       string
	consumer string
	roles    []string
	notAfter int64 // UnixNano; 0 when the key does not expire
	usage    *usage
	okResp   atomic.Pointer[cachedOK] // the gRPC allowed response, built on first use
}

// usage counts the uses of one key on this replica.
type usage struct {
	namespace, keySet, consumer, id string
	uses                            atomic.Uint64
	lastUsed                        atomic.Int64 // Unix seconds
	reported                        atomic.Int64 // lastUsed last written to status
}

// Store holds the current snapshot and builds new ones from informer events.
// Its methods are safe for concurrent use.
type Store struct {
	cur atomic.Pointer[snapshot]

	mu       sync.Mutex // serialises writers
	usage    map[string]*usage
	synced   atomic.Bool
	metrics  *Metrics
	failures *failureTracker
	// home is apiwarden's namespace: only hash stores there are trusted.
	home string
}

// NewStore returns an empty store that trusts the hash stores of home,
// apiwarden's namespace. Until SetPepper and MarkSynced are called every
// check answers 503.
func NewStore(home string, m *Metrics) *Store {
	s := &Store{usage: map[string]*usage{}, metrics: m, failures: newFailureTracker(4096), home: home}
	s.cur.Store(&snapshot{policies: map[string]*policy{}, sets: map[string]*keySet{}})
	return s
}

// MarkSynced records that the informers have delivered their initial lists.
func (s *Store) MarkSynced() { s.synced.Store(true) }

// Ready reports whether checks can be answered: the informers are synced and
// the pepper is known.
func (s *Store) Ready() bool { return s.synced.Load() && s.cur.Load().hasher != nil }

// update publishes a copy of the snapshot changed by f.
func (s *Store) update(f func(next *snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	next := &snapshot{hasher: old.hasher, policies: old.policies, sets: old.sets}
	f(next)
	s.cur.Store(next)
}

// SetPepper installs the pepper read from the pepper Secret.
func (s *Store) SetPepper(p []byte) error {
	h, err := keys.NewHasher(p)
	if err != nil {
		return err
	}
	s.update(func(n *snapshot) { n.hasher = h })
	return nil
}

// UpsertPolicy compiles an APIPolicy and publishes it.
func (s *Store) UpsertPolicy(p *apiwardenv1alpha1.APIPolicy) {
	c := compilePolicy(p)
	s.update(func(n *snapshot) {
		n.policies = maps.Clone(n.policies)
		n.policies[c.key] = c
	})
}

// DeletePolicy forgets an APIPolicy.
func (s *Store) DeletePolicy(namespace, name string) {
	s.update(func(n *snapshot) {
		n.policies = maps.Clone(n.policies)
		delete(n.policies, namespace+"/"+name)
	})
}

// UpsertHashStore indexes a hash store Secret (of apiwarden's namespace,
// the only one the service reads), under the key set its labels name. A
// Secret that is not a hash store written by the APIKeySet controller is
// ignored; a corrupt one removes the key set's keys (fail closed) and
// returns the reason.
func (s *Store) UpsertHashStore(sec *corev1.Secret) error {
	namespace, name, ok := keystore.IsHashStoreOf(sec)
	if !ok || sec.Namespace != s.home {
		return nil
	}
	entries, err := keystore.Decode(sec)
	if err != nil {
		s.DeleteHashStore(namespace, name)
		return err
	}
	ks := &keySet{namespace: namespace, name: name, byHash: make(map[keys.Hash]*keyEntry, len(entries))}
	s.mu.Lock()
	for _, e := range entries {
		h, _ := keys.ParseHash(e.Hash) // Decode checked it
		ke := &keyEntry{hash: h, id: e.ID, consumer: e.Consumer, roles: slices.Clone(e.Roles), usage: s.usageLocked(namespace, name, e.Consumer, e.ID)}
		if e.NotAfter != nil {
			ke.notAfter = e.NotAfter.UnixNano()
		}
		ks.byHash[h] = ke
	}
	s.mu.Unlock()
	s.update(func(n *snapshot) {
		n.sets = maps.Clone(n.sets)
		n.sets[namespace+"/"+name] = ks
	})
	s.pruneUsage()
	return nil
}

// DeleteHashStore forgets the keys of a key set.
func (s *Store) DeleteHashStore(namespace, keySet string) {
	s.update(func(n *snapshot) {
		n.sets = maps.Clone(n.sets)
		delete(n.sets, namespace+"/"+keySet)
	})
	s.pruneUsage()
}

func (s *Store) usageLocked(namespace, keySet, consumer, id string) *usage {
	u := s.usage[id]
	if u == nil || u.namespace != namespace || u.keySet != keySet {
		u = &usage{namespace: namespace, keySet: keySet, consumer: consumer, id: id}
		s.usage[id] = u
	}
	return u
}

// pruneUsage drops the counters of keys no longer in any set once their last
// use has been reported (Usage keeps returning them until then).
func (s *Store) pruneUsage() {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := map[string]bool{}
	for _, ks := range s.cur.Load().sets {
		for _, e := range ks.byHash {
			live[e.id] = true
		}
	}
	for id, u := range s.usage {
		if !live[id] && u.lastUsed.Load() <= u.reported.Load() {
			delete(s.usage, id)
		}
	}
}

// KeyUsage is the use of one key on this replica, for the APIKeySet status.
type KeyUsage struct {
	Namespace, KeySet, Consumer, ID string
	// Uses is the number of successful checks with the key.
	Uses uint64
	// LastUsed is the last successful check, zero if never.
	LastUsed time.Time
	// Pending is true when LastUsed has not been reported by MarkReported.
	Pending bool
}

// Usage returns the use of every key this replica has seen used.
func (s *Store) Usage() []KeyUsage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []KeyUsage
	for _, u := range s.usage {
		last := u.lastUsed.Load()
		if last == 0 {
			continue
		}
		out = append(out, KeyUsage{Namespace: u.namespace, KeySet: u.keySet, Consumer: u.consumer, ID: u.id, Uses: u.uses.Load(), LastUsed: time.Unix(last, 0).UTC(), Pending: last > u.reported.Load()})
	}
	slices.SortFunc(out, func(a, b KeyUsage) int {
		return strings.Compare(a.Namespace+"/"+a.KeySet+"/"+a.ID, b.Namespace+"/"+b.KeySet+"/"+b.ID)
	})
	return out
}

// MarkReported records that the last use of key id up to t is in status.
func (s *Store) MarkReported(id string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.usage[id]; u != nil && t.Unix() > u.reported.Load() {
		u.reported.Store(t.Unix())
	}
}

// String describes the snapshot for debugging; it names no key.
func (s *Store) String() string {
	c := s.cur.Load()
	n := 0
	for _, ks := range c.sets {
		n += len(ks.byHash)
	}
	return fmt.Sprintf("authz store: %d policies, %d key sets, %d keys, pepper loaded %t", len(c.policies), len(c.sets), n, c.hasher != nil)
}
