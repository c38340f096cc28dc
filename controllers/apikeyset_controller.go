package controllers

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/keys"
)

// +kubebuilder:rbac:groups=apiwarden.io,resources=apikeysets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiwarden.io,resources=apikeysets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch

const (
	// PepperSecret is the Secret, in apiwarden's namespace, holding the pepper
	// every key hash is computed with.
	PepperSecret = "apiwarden-key-pepper"
	// LabelKeySet and LabelConsumer mark the Secrets apiwarden writes for an
	// APIKeySet, so workloads and tools (Reloader, say) can select them.
	LabelKeySet   = "apiwarden.io/apikeyset"
	LabelConsumer = "apiwarden.io/consumer"
	// LabelHashStore marks the Secret holding a key set's hashes.
	LabelHashStore = "apiwarden.io/hash-store"
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
	// HashesField is the data field of the hash store: JSON HashEntry list.
	HashesField = "hashes.json"
)

// HashEntry is one valid key in a hash store. It never holds a key.
type HashEntry struct {
	ID       string     `json:"id"`
	Hash     string     `json:"hash"`
	Consumer string     `json:"consumer"`
	Roles    []string   `json:"roles,omitempty"`
	NotAfter *time.Time `json:"notAfter,omitempty"`
}

// APIKeySetReconciler issues, delivers and rotates the keys of APIKeySets.
// Writes go in an order that survives a crash between any two of them: the
// hash store first (so a delivered key is always accepted), then delivery
// Secrets, then status; a key found delivered but missing from status is
// adopted on the next pass.
type APIKeySetReconciler struct {
	client.Client
	// Reader reads the apiserver directly (the manager's API reader). Key
	// state is read from it, never from the cache: a reconcile triggered by
	// our own Secret write must see the status written just after it, or it
	// would rotate twice. Secrets are not cached at all: apiwarden watches
	// their metadata only.
	Reader   client.Reader
	Recorder record.EventRecorder
	// Namespace is apiwarden's own namespace, where the pepper lives.
	Namespace string
	// Now returns the time; tests inject a clock.
	Now func() time.Time
}

// SetupWithManager registers the reconciler.
func (r *APIKeySetReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&apiwardenv1alpha1.APIKeySet{}).
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		Named("apikeyset").
		Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *APIKeySetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var ks apiwardenv1alpha1.APIKeySet
	if err := r.Reader.Get(ctx, req.NamespacedName, &ks); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ks.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owner references remove the Secrets
	}
	now := r.Now()
	pepper, err := r.pepper(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}

	store, err := r.readHashStore(ctx, &ks)
	if err != nil {
		return ctrl.Result{}, err
	}
	state := stateFromStatus(ks.Status)
	policy := policyOf(&ks)
	state, err = r.adoptDelivered(ctx, &ks, state, store, pepper, now, policy)
	if err != nil {
		return ctrl.Result{}, err
	}

	type issuedKey struct{ key, id string }
	issued := map[string]issuedKey{}
	var spec, refused []string
	roles := map[string][]string{}
	for _, c := range ks.Spec.Consumers {
		if c.SecretRef != nil && c.SecretRef.Namespace != "" && c.SecretRef.Namespace != ks.Namespace {
			// Delivery into another namespace needs a ReferenceGrant check
			// that this version does not implement: issue nothing rather
			// than a key that cannot be delivered.
			refused = append(refused, c.Name)
			continue
		}
		spec = append(spec, c.Name)
		roles[c.Name] = c.Roles
	}
	// A valid key whose hash is lost (the hash store was deleted) cannot be
	// verified any more: count it revoked, so its consumer gets a new one.
	for i := range state {
		for j := range state[i].Keys {
			k := &state[i].Keys[j]
			if k.State != apiwardenv1alpha1.KeyStateRevoked {
				if _, ok := store[k.ID]; !ok {
					k.State, k.Expires = apiwardenv1alpha1.KeyStateRevoked, now
				}
			}
		}
	}
	next, events, wait, err := keys.Next(now, policy, spec, state, keys.Requests{
		Rotate: ks.Annotations[apiwardenv1alpha1.RotateAnnotation],
		Revoke: ks.Annotations[apiwardenv1alpha1.RevokeAnnotation],
	}, func(consumer string) (string, error) {
		k, err := keys.Generate(prefixOf(&ks))
		if err != nil {
			return "", err
		}
		h := keys.HashKey(pepper, k)
		store[h.ID()] = HashEntry{ID: h.ID(), Hash: h.String(), Consumer: consumer}
		issued[consumer] = issuedKey{key: k, id: h.ID()}
		return h.ID(), nil
	})
	if err != nil {
		return ctrl.Result{}, err
	}

	// 1. Hashes of every valid key, before any key is handed out.
	if err := r.writeHashStore(ctx, &ks, next, store, roles, now); err != nil {
		return ctrl.Result{}, err
	}
	// 2. Delivery of new keys.
	for _, c := range ks.Spec.Consumers {
		if slices.Contains(refused, c.Name) {
			continue
		}
		if k, ok := issued[c.Name]; ok {
			var cs keys.Consumer
			for _, x := range next {
				if x.Name == c.Name {
					cs = x
				}
			}
			if err := r.deliver(ctx, &ks, c, k.key, k.id, now, cs); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	// 3. Status, written only when it changed.
	if err := r.writeStatus(ctx, &ks, next, policy, refused); err != nil {
		return ctrl.Result{}, err
	}
	for _, e := range events {
		eventType := corev1.EventTypeNormal
		if e.Reason == "Revoked" || e.Reason == "Removed" {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Event(&ks, eventType, e.Reason, e.Message)
		log.Info(e.Message, "apikeyset", klog.KObj(&ks), "consumer", e.Consumer, "keyID", e.KeyID)
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

func policyOf(ks *apiwardenv1alpha1.APIKeySet) keys.Policy {
	p := keys.Policy{Every: 2160 * time.Hour, Grace: 168 * time.Hour}
	if rot := ks.Spec.Rotation; rot != nil {
		if rot.Every != nil {
			p.Every = rot.Every.Duration
		}
		if rot.GracePeriod != nil {
			p.Grace = rot.GracePeriod.Duration
		}
	}
	return p
}

func prefixOf(ks *apiwardenv1alpha1.APIKeySet) string {
	if ks.Spec.KeyPrefix != "" {
		return ks.Spec.KeyPrefix
	}
	return "apiw"
}

// pepper returns the pepper, creating it on first use.
func (r *APIKeySetReconciler) pepper(ctx context.Context) ([]byte, error) {
	key := client.ObjectKey{Namespace: r.Namespace, Name: PepperSecret}
	var s corev1.Secret
	err := r.Reader.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		p := make([]byte, keys.MinPepperLen)
		if _, err := rand.Read(p); err != nil {
			return nil, err
		}
		s = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: PepperSecret}, Data: map[string][]byte{"pepper": p}}
		if err := r.Create(ctx, &s); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating the pepper Secret %s: %w", key, err)
		}
		err = r.Reader.Get(ctx, key, &s)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the pepper Secret %s: %w", key, err)
	}
	p := s.Data["pepper"]
	if len(p) < keys.MinPepperLen {
		return nil, fmt.Errorf("the pepper Secret %s is shorter than %d bytes", key, keys.MinPepperLen)
	}
	return p, nil
}

func hashStoreName(ks *apiwardenv1alpha1.APIKeySet) string { return ks.Name + "-apiwarden-hashes" }

func deliveryName(ks *apiwardenv1alpha1.APIKeySet, c apiwardenv1alpha1.Consumer) string {
	if c.SecretRef != nil && c.SecretRef.Name != "" {
		return c.SecretRef.Name
	}
	return ks.Name + "-" + c.Name
}

func (r *APIKeySetReconciler) readHashStore(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet) (map[string]HashEntry, error) {
	var s corev1.Secret
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: ks.Namespace, Name: hashStoreName(ks)}, &s)
	out := map[string]HashEntry{}
	if apierrors.IsNotFound(err) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the hash store: %w", err)
	}
	var entries []HashEntry
	if raw := s.Data[HashesField]; len(raw) > 0 {
		if err := json.Unmarshal(raw, &entries); err != nil {
			return nil, fmt.Errorf("the hash store %s/%s is corrupt: %w", s.Namespace, s.Name, err)
		}
	}
	for _, e := range entries {
		out[e.ID] = e
	}
	return out, nil
}

// adoptDelivered finds keys that were delivered but never recorded in status
// (a crash between the delivery and the status write) and records them as
// the consumer's Active key, demoting the one status knew.
func (r *APIKeySetReconciler) adoptDelivered(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, state []keys.Consumer, store map[string]HashEntry, pepper []byte, now time.Time, p keys.Policy) ([]keys.Consumer, error) {
	byName := map[string]int{}
	for i, c := range state {
		byName[c.Name] = i
	}
	for _, c := range ks.Spec.Consumers {
		var s corev1.Secret
		err := r.Reader.Get(ctx, client.ObjectKey{Namespace: ks.Namespace, Name: deliveryName(ks, c)}, &s)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the delivery Secret of consumer %s: %w", c.Name, err)
		}
		key := string(s.Data[KeyField])
		if _, err := keys.Parse(key); err != nil {
			continue // not a key of ours; it will be overwritten
		}
		h := keys.HashKey(pepper, key)
		i, known := byName[c.Name]
		if known && hasKey(state[i], h.ID()) {
			// Status has it; make sure the hash store does too (it may
			// have been deleted), from the delivered plaintext.
			if _, ok := store[h.ID()]; !ok {
				store[h.ID()] = HashEntry{ID: h.ID(), Hash: h.String(), Consumer: c.Name}
			}
			continue
		}
		if !known {
			state = append(state, keys.Consumer{Name: c.Name})
			i = len(state) - 1
			byName[c.Name] = i
		}
		for j := range state[i].Keys {
			if state[i].Keys[j].State == apiwardenv1alpha1.KeyStateActive {
				state[i].Keys[j].State = apiwardenv1alpha1.KeyStateGrace
				state[i].Keys[j].Expires = now.Add(max(p.Grace, keys.MinGrace))
			}
		}
		created := now
		if t, err := time.Parse(time.RFC3339, s.Annotations[AnnotationCreated]); err == nil && !t.After(now) {
			created = t
		}
		state[i].Keys = append([]keys.Key{{ID: h.ID(), State: apiwardenv1alpha1.KeyStateActive, Created: created}}, state[i].Keys...)
		// The manual requests acted on when the key was issued.
		if v, ok := s.Annotations[AnnotationRotateRequest]; ok {
			state[i].LastRotate = v
		}
		if v, ok := s.Annotations[AnnotationRevokeRequest]; ok {
			state[i].LastRevoke = v
		}
		store[h.ID()] = HashEntry{ID: h.ID(), Hash: h.String(), Consumer: c.Name}
	}
	return state, nil
}

func hasKey(c keys.Consumer, id string) bool {
	for _, k := range c.Keys {
		if k.ID == id {
			return true
		}
	}
	return false
}

func (r *APIKeySetReconciler) writeHashStore(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, state []keys.Consumer, store map[string]HashEntry, roles map[string][]string, now time.Time) error {
	var entries []HashEntry
	for _, c := range state {
		for _, k := range c.Valid(now) {
			e, ok := store[k.ID]
			if !ok {
				return fmt.Errorf("the hash of key %s of consumer %s is missing from the hash store", k.ID, c.Name)
			}
			e.Consumer, e.Roles, e.NotAfter = c.Name, roles[c.Name], nil
			if k.State == apiwardenv1alpha1.KeyStateGrace {
				t := k.Expires.UTC()
				e.NotAfter = &t
			}
			entries = append(entries, e)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].ID < entries[j].ID })
	raw, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ks.Namespace, Name: hashStoreName(ks)}}
	err = r.upsert(ctx, s, func() error {
		s.Labels = map[string]string{LabelKeySet: ks.Name, LabelHashStore: "true"}
		s.Data = map[string][]byte{HashesField: raw}
		return controllerutil.SetControllerReference(ks, s, r.Scheme())
	})
	if err != nil {
		return fmt.Errorf("writing the hash store: %w", err)
	}
	return nil
}

func (r *APIKeySetReconciler) deliver(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, c apiwardenv1alpha1.Consumer, key, id string, now time.Time, state keys.Consumer) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ks.Namespace, Name: deliveryName(ks, c)}}
	err := r.upsert(ctx, s, func() error {
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[LabelKeySet], s.Labels[LabelConsumer] = ks.Name, c.Name
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[AnnotationKeyID] = id
		s.Annotations[AnnotationCreated] = now.UTC().Format(time.RFC3339)
		s.Annotations[AnnotationRotateRequest] = state.LastRotate
		s.Annotations[AnnotationRevokeRequest] = state.LastRevoke
		s.Type = corev1.SecretTypeOpaque
		s.Data = map[string][]byte{KeyField: []byte(key), KeyIDField: []byte(id)}
		return controllerutil.SetControllerReference(ks, s, r.Scheme())
	})
	if err != nil {
		// Never wrap anything that could carry the key.
		return fmt.Errorf("delivering key %s to Secret %s/%s: %s", id, s.Namespace, s.Name, apierrors.ReasonForError(err))
	}
	return nil
}

// upsert reads s through the API reader, applies mutate, and creates or
// updates it: controllerutil.CreateOrUpdate would read the (uncached)
// Secret through the cache.
func (r *APIKeySetReconciler) upsert(ctx context.Context, s *corev1.Secret, mutate func() error) error {
	err := r.Reader.Get(ctx, client.ObjectKeyFromObject(s), s)
	switch {
	case apierrors.IsNotFound(err):
		if err := mutate(); err != nil {
			return err
		}
		return r.Create(ctx, s)
	case err != nil:
		return err
	}
	if err := mutate(); err != nil {
		return err
	}
	return r.Update(ctx, s)
}

func stateFromStatus(st apiwardenv1alpha1.APIKeySetStatus) []keys.Consumer {
	var out []keys.Consumer
	for _, c := range st.Consumers {
		kc := keys.Consumer{Name: c.Name, LastRotate: c.LastRotateRequest, LastRevoke: c.LastRevokeRequest}
		for _, k := range c.Keys {
			key := keys.Key{ID: k.ID, State: k.State, Created: k.CreatedAt.Time}
			if k.ExpiresAt != nil {
				key.Expires = k.ExpiresAt.Time
			}
			kc.Keys = append(kc.Keys, key)
		}
		out = append(out, kc)
	}
	return out
}

func (r *APIKeySetReconciler) writeStatus(ctx context.Context, ks *apiwardenv1alpha1.APIKeySet, state []keys.Consumer, p keys.Policy, refused []string) error {
	st := ks.Status.DeepCopy()
	st.ObservedGeneration = ks.Generation
	st.Consumers = nil
	for _, c := range state {
		cs := apiwardenv1alpha1.ConsumerStatus{Name: c.Name, LastRotateRequest: c.LastRotate, LastRevokeRequest: c.LastRevoke}
		for _, k := range c.Keys {
			ks := apiwardenv1alpha1.KeyStatus{ID: k.ID, State: k.State, CreatedAt: metav1.NewTime(k.Created.UTC().Truncate(time.Second))}
			if !k.Expires.IsZero() {
				t := metav1.NewTime(k.Expires.UTC().Truncate(time.Second))
				ks.ExpiresAt = &t
			}
			if k.State == apiwardenv1alpha1.KeyStateActive {
				t := metav1.NewTime(k.Created.Add(p.Every).UTC().Truncate(time.Second))
				cs.NextRotation = &t
			}
			cs.Keys = append(cs.Keys, ks)
		}
		st.Consumers = append(st.Consumers, cs)
	}
	ready := metav1.Condition{
		Type: apiwardenv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: apiwardenv1alpha1.ReasonReconciled,
		Message: fmt.Sprintf("%d consumers have a delivered key.", len(state)), ObservedGeneration: ks.Generation,
	}
	if len(refused) > 0 {
		ready.Status, ready.Reason = metav1.ConditionFalse, apiwardenv1alpha1.ReasonInvalid
		ready.Message = fmt.Sprintf("Consumers %s ask for delivery into another namespace, which this version of apiwarden does not support yet; they have no key.", strings.Join(refused, ", "))
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	if equality.Semantic.DeepEqual(st, &ks.Status) {
		return nil
	}
	// A merge patch, not an update: a concurrent edit of the spec or
	// annotations must not make the status write fail after keys went out.
	orig := ks.DeepCopy()
	ks.Status = *st
	if err := r.Status().Patch(ctx, ks, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("writing status: %w", err)
	}
	return nil
}
