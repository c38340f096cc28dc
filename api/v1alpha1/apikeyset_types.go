package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// RotateAnnotation asks for an immediate rotation of one consumer's key.
	// Its value is "<consumer>" or "<consumer>@<token>"; apiwarden records the
	// last value it acted on in status, so re-applying the same value from Git
	// does not rotate again. Change the token to rotate once more.
	RotateAnnotation = "apiwarden.io/rotate"

	// RevokeAnnotation asks for the immediate revocation of every key of one
	// consumer, with no grace period. Its value follows RotateAnnotation's form.
	RevokeAnnotation = "apiwarden.io/revoke"
)

// KeyState is the lifecycle state of one key.
// +kubebuilder:validation:Enum=Active;Grace;Revoked
type KeyState string

const (
	// KeyStateActive is the consumer's current key; it is delivered and valid.
	KeyStateActive KeyState = "Active"
	// KeyStateGrace is a replaced key that stays valid until the grace period
	// ends, so clients can pick up the new key without failing.
	KeyStateGrace KeyState = "Grace"
	// KeyStateRevoked is a key that is no longer accepted.
	KeyStateRevoked KeyState = "Revoked"
)

// SecretDelivery says where a consumer's key is delivered.
type SecretDelivery struct {
	// name of the Secret that receives the plaintext key. It defaults to
	// "<apikeyset>-<consumer>".
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name,omitempty"`

	// namespace of the Secret. It defaults to the APIKeySet's namespace. Another
	// namespace is used only when it grants it, with a Gateway API
	// ReferenceGrant from APIKeySet in this namespace to Secret in that one.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
}

// Consumer is one client of the API, with its own key.
type Consumer struct {
	// name identifies the consumer. The authz service forwards it to the
	// backend, and authorization rules and per-consumer rate limits use it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// roles are granted to the consumer, for authorization rules.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9:._]*[a-z0-9])?$`
	Roles []string `json:"roles,omitempty"`

	// rateLimit, when set, gives this consumer its own budget instead of the
	// APIPolicy's per-consumer limit.
	// +optional
	RateLimit *RequestRate `json:"rateLimit,omitempty"`

	// secretRef says where the key is delivered.
	// +optional
	SecretRef *SecretDelivery `json:"secretRef,omitempty"`
}

// Rotation says how often keys are replaced and how long a replaced key stays valid.
// +kubebuilder:validation:XValidation:rule="!has(self.every) || !has(self.gracePeriod) || duration(self.gracePeriod) < duration(self.every)",message="gracePeriod must be shorter than every, so that at most two keys per consumer are valid at once"
type Rotation struct {
	// every is the lifetime of a key before it is replaced, as a duration
	// such as "2160h" (90 days). At least one minute.
	// +optional
	// +kubebuilder:default="2160h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="every must be at least 1m"
	Every *metav1.Duration `json:"every,omitempty"`

	// gracePeriod is how long a replaced key stays valid after its successor
	// is delivered, such as "168h" (7 days). It may be "0s"; a replaced key
	// always stays valid for at least one minute, so that its successor is
	// delivered before it stops working.
	// +optional
	// +kubebuilder:default="168h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="gracePeriod must not be negative"
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// APIKeySetSpec lists the consumers of an API and how their keys are managed.
type APIKeySetSpec struct {
	// keyPrefix starts every key of this set, followed by "_", so leaked keys
	// are recognisable by secret scanners, for example "shop" gives "shop_...".
	// +optional
	// +kubebuilder:default=apiw
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9]*$`
	KeyPrefix string `json:"keyPrefix,omitempty"`

	// consumers lists the clients that get keys.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Consumers []Consumer `json:"consumers,omitempty"`

	// rotation says how often keys are replaced.
	// +optional
	// +kubebuilder:default={every:"2160h",gracePeriod:"168h"}
	Rotation *Rotation `json:"rotation,omitempty"`
}

// KeyStatus describes one key without revealing it.
type KeyStatus struct {
	// id is a short fingerprint of the key's hash; it identifies the key in
	// logs and status without revealing it.
	// +required
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`

	// state is Active, Grace or Revoked.
	// +required
	State KeyState `json:"state"`

	// createdAt is when the key was generated.
	// +required
	CreatedAt metav1.Time `json:"createdAt"`

	// expiresAt is when the key stops being accepted.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// lastUsed is, to the minute, when the authz service last accepted the
	// key. It is written at most once a minute per key set, so a key in
	// Grace that is still in use shows it before it is revoked.
	// +optional
	LastUsed *metav1.Time `json:"lastUsed,omitempty"`
}

// ConsumerStatus is the state of one consumer's keys.
type ConsumerStatus struct {
	// name of the consumer.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// keys lists the consumer's keys, newest first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4
	Keys []KeyStatus `json:"keys,omitempty"`

	// secretRef is where the active key is delivered.
	// +optional
	SecretRef *SecretDelivery `json:"secretRef,omitempty"`

	// nextRotation is when the active key will be replaced.
	// +optional
	NextRotation *metav1.Time `json:"nextRotation,omitempty"`

	// lastRotateRequest is the last value of the apiwarden.io/rotate
	// annotation acted on for this consumer.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	LastRotateRequest string `json:"lastRotateRequest,omitempty"`

	// lastRevokeRequest is the last value of the apiwarden.io/revoke
	// annotation acted on for this consumer.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	LastRevokeRequest string `json:"lastRevokeRequest,omitempty"`
}

// APIKeySetStatus is the observed state of an APIKeySet. It never holds a key.
type APIKeySetStatus struct {
	// observedGeneration is the metadata.generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions describe the set's state: Ready (every consumer has a
	// delivered key) and RotationDue (a consumer's key is past its rotation
	// time and could not be replaced).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// consumers holds the state of each consumer's keys.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Consumers []ConsumerStatus `json:"consumers,omitempty"`
}

// APIKeySet lists the consumers of an API and manages their API keys: keys are
// generated from crypto/rand, stored for verification only as hashes,
// delivered in plaintext only in each consumer's Secret, and rotated with an
// overlap window so no client breaks.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=aks,categories=apiwarden
// +kubebuilder:printcolumn:name="Prefix",type=string,JSONPath=`.spec.keyPrefix`
// +kubebuilder:printcolumn:name="Rotate Every",type=string,JSONPath=`.spec.rotation.every`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="an APIKeySet's name must be at most 63 characters: it is the value of the apiwarden.io/apikeyset label on every Secret apiwarden writes for it"
type APIKeySet struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec lists the consumers and the rotation schedule.
	// +required
	Spec APIKeySetSpec `json:"spec"`

	// status is the observed state, written by apiwarden.
	// +optional
	Status APIKeySetStatus `json:"status,omitempty"`
}

// APIKeySetList is a list of APIKeySets.
// +kubebuilder:object:root=true
type APIKeySetList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the APIKeySets.
	Items []APIKeySet `json:"items"`
}
