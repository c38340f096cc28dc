// Package keystore defines how apiwarden keeps API-key material in Secrets:
// the pepper Secret in apiwarden's namespace, one hash store per APIKeySet
// (the HMAC hashes of its valid keys, never a key) and one delivery Secret per
// consumer (the only place a plaintext key is written). The APIKeySet
// controller writes these Secrets and the authz service reads the hash
// stores; both use the names and the decoding here.
package keystore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apiwarden/apiwarden/internal/keys"
)

const (
	// PepperSecret is the Secret, in apiwarden's namespace, holding the pepper
	// every key hash is computed with.
	PepperSecret = "apiwarden-key-pepper"
	// PepperField is the data field of the pepper Secret.
	PepperField = "pepper"
	// LabelKeySet and LabelConsumer mark the Secrets apiwarden writes for an
	// APIKeySet, so workloads and tools (Reloader, say) can select them.
	LabelKeySet   = "apiwarden.io/apikeyset"
	LabelConsumer = "apiwarden.io/consumer"
	// LabelHashStore marks the Secret holding a key set's hashes; the authz
	// service caches only Secrets with this label, in apiwarden's namespace.
	LabelHashStore = "apiwarden.io/hash-store"
	// LabelKeySetNamespace names, on a hash store, the namespace of its
	// APIKeySet (LabelKeySet names the set).
	LabelKeySetNamespace = "apiwarden.io/apikeyset-namespace"
	// AnnotationOwner names, on a delivery Secret, the APIKeySet that wrote it
	// as "<namespace>/<name>/<uid>": Secrets delivered into another namespace
	// cannot carry an owner reference.
	AnnotationOwner = "apiwarden.io/owner"
	// AnnotationKeyID names, on a delivery Secret, the key it holds.
	AnnotationKeyID = "apiwarden.io/key-id"
	// AnnotationCreated, AnnotationRotateRequest and AnnotationRevokeRequest
	// record on a delivery Secret when its key was issued and which manual
	// requests had been acted on, so that a crash before the status write
	// neither loses the key's age nor repeats a manual rotation.
	AnnotationCreated       = "apiwarden.io/created-at"
	AnnotationRotateRequest = "apiwarden.io/rotate-request"
	AnnotationRevokeRequest = "apiwarden.io/revoke-request"
	// KeyField, KeyIDField are the data fields of a delivery Secret.
	KeyField   = "api-key"
	KeyIDField = "key-id"
	// HashesField is the data field of the hash store: a JSON HashEntry list.
	HashesField = "hashes.json"
)

// HashEntry is one valid key in a hash store. It never holds a key.
type HashEntry struct {
	// ID is the key's fingerprint (keys.Hash.ID).
	ID string `json:"id"`
	// Hash is the hex HMAC-SHA-256 of the key under the pepper.
	Hash string `json:"hash"`
	// Consumer is the consumer the key belongs to.
	Consumer string `json:"consumer"`
	// Roles are the consumer's roles.
	Roles []string `json:"roles,omitempty"`
	// NotAfter, when set, is the end of the key's grace period.
	NotAfter *time.Time `json:"notAfter,omitempty"`
}

// HashStoreName is the name of the hash store of APIKeySet namespace/keySet.
// Hash stores live in apiwarden's own namespace, so that the authz service
// reads Secrets there only; a namespace name has no dot, so the name is
// unambiguous.
func HashStoreName(namespace, keySet string) string { return namespace + "." + keySet + ".hashes" }

// HashStoreLabels are the labels of the hash store of namespace/keySet.
func HashStoreLabels(namespace, keySet string) map[string]string {
	return map[string]string{LabelKeySet: keySet, LabelKeySetNamespace: namespace, LabelHashStore: "true"}
}

// Decode returns the entries of a hash store Secret. Every entry is checked:
// a hash that is not 64 hex digits, an ID that is not the hash's fingerprint
// or an empty consumer makes the whole store corrupt, so a damaged Secret is
// reported rather than half-used.
func Decode(s *corev1.Secret) ([]HashEntry, error) {
	raw := s.Data[HashesField]
	if len(raw) == 0 {
		return nil, nil
	}
	var entries []HashEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("the hash store %s/%s is corrupt: %w", s.Namespace, s.Name, err)
	}
	for i, e := range entries {
		h, err := keys.ParseHash(e.Hash)
		if err != nil {
			return nil, fmt.Errorf("the hash store %s/%s is corrupt: entry %d: %w", s.Namespace, s.Name, i, err)
		}
		if h.ID() != e.ID || e.Consumer == "" {
			return nil, fmt.Errorf("the hash store %s/%s is corrupt: entry %d has a wrong id or no consumer", s.Namespace, s.Name, i)
		}
	}
	return entries, nil
}

// Entries decodes a hash store into the entries of a keys.Verifier.
func Entries(s *corev1.Secret) ([]keys.Entry, error) {
	hs, err := Decode(s)
	if err != nil {
		return nil, err
	}
	out := make([]keys.Entry, 0, len(hs))
	for _, e := range hs {
		h, _ := keys.ParseHash(e.Hash) // Decode checked it
		en := keys.Entry{Hash: h, Consumer: e.Consumer, Roles: e.Roles}
		if e.NotAfter != nil {
			en.NotAfter = *e.NotAfter
		}
		out = append(out, en)
	}
	return out, nil
}

// IsHashStoreOf reports whether s is the hash store that the APIKeySet
// controller wrote for a key set: the labels, and the name they imply. It
// returns the key set's namespace and name. The authz service reads Secrets
// in apiwarden's namespace only, where no one but apiwarden and the
// cluster's administrators may write: a Secret elsewhere is never asked.
func IsHashStoreOf(s metav1.Object) (namespace, keySet string, ok bool) {
	l := s.GetLabels()
	namespace, keySet = l[LabelKeySetNamespace], l[LabelKeySet]
	if namespace == "" || keySet == "" || l[LabelHashStore] != "true" || s.GetName() != HashStoreName(namespace, keySet) {
		return "", "", false
	}
	return namespace, keySet, true
}

// EnsurePepper returns the pepper, creating its Secret in namespace on first
// use. Only the controllers role calls it (at start, and before issuing
// keys); the create is idempotent (AlreadyExists means another replica won,
// and its pepper is read back).
func EnsurePepper(ctx context.Context, w client.Writer, r client.Reader, namespace string) ([]byte, error) {
	p, err := LoadPepper(ctx, r, namespace)
	if apierrors.IsNotFound(err) {
		fresh := make([]byte, keys.MinPepperLen)
		if _, err := rand.Read(fresh); err != nil {
			return nil, err
		}
		s := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: PepperSecret}, Data: map[string][]byte{PepperField: fresh}}
		if err := w.Create(ctx, &s); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating the pepper Secret %s/%s: %w", namespace, PepperSecret, err)
		}
		return LoadPepper(ctx, r, namespace)
	}
	return p, err
}

// LoadPepper reads the pepper without ever creating it: the authz service,
// whose account may not create Secrets, waits for the controllers to. A
// missing Secret is a NotFound error (apierrors.IsNotFound).
func LoadPepper(ctx context.Context, r client.Reader, namespace string) ([]byte, error) {
	key := client.ObjectKey{Namespace: namespace, Name: PepperSecret}
	var s corev1.Secret
	if err := r.Get(ctx, key, &s); err != nil {
		return nil, fmt.Errorf("reading the pepper Secret %s: %w", key, err)
	}
	p := s.Data[PepperField]
	if len(p) < keys.MinPepperLen {
		return nil, fmt.Errorf("the pepper Secret %s is shorter than %d bytes", key, keys.MinPepperLen)
	}
	return p, nil
}
