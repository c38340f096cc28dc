package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/keys"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/envoygateway"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// clock is the reconciler's time, moved by the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var (
	// policyMetrics receives the APIPolicy controller's metrics.
	policyMetrics = prometheus.NewRegistry()
	env           *testenv.Environment
	k8s           client.Client
	fake          = &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	envNS         = "apiwarden-system"
	// ns is the namespace of the current run, new for every run so that
	// -count=N works (envtest has no garbage collector to clean up).
	ns   string
	runs int
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

// logs captures everything the manager and the reconciler log, so a test can
// prove no key reaches a log line.
var logs testenv.Buffer

func runMain(m *testing.M) int {
	// Debug level: the most the manager can be made to log.
	ctrl.SetLogger(zap.New(zap.WriteTo(&logs), zap.Level(zapcore.Level(-10))))
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	opts := ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}}
	opts.Cache = controllers.CacheOptions()
	mgr, err := ctrl.NewManager(env.Config, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := &controllers.APIKeySetReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"), Namespace: envNS, Now: fake.Now, Registerer: policyMetrics}
	if err := r.SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pr := &controllers.APIPolicyReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"),
		Renderer: envoygateway.Renderer{}, Authz: render.AuthzService{Namespace: envNS, Name: "apiwarden-authz", GRPCPort: 9001, HTTPPort: 9002},
		Registerer: policyMetrics}
	if err := pr.SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := (&controllers.APIBaselineReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"),
		Namespace: envNS, Now: fake.Now, Resync: time.Second, Registerer: policyMetrics}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := (&controllers.AdmissionPolicyReconciler{Client: mgr.GetClient(), Namespace: envNS, Now: fake.Now}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := (&controllers.AdmissionParamsReconciler{Client: mgr.GetClient(), Namespace: envNS}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The PolicyReport CRD is not installed in the environment: the
	// controller installs it.
	if err := (&controllers.PolicyReportReconciler{Client: mgr.GetClient(), Namespace: envNS, Now: fake.Now, Resync: time.Second,
		InstallCRD: true}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = mgr.Start(ctx) }()
	if k8s, err = client.New(env.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, ns := range []string{envNS} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// Generous: a healthy run waits well under a second, and the whole
	// suite runs beside other envtest packages on 2 cores.
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func secret(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		return nil
	}
	return &s
}

// hashStore is the hash store of the current run's shop-keys, in
// apiwarden's namespace (nil when there is none).
func hashStore(t *testing.T) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: envNS, Name: keystore.HashStoreName(ns, "shop-keys")}, &s); err != nil {
		return nil
	}
	return &s
}

// verifier builds a verifier from the hash store, as the authz service will.
func verifier(t *testing.T) *keys.Verifier {
	t.Helper()
	var pepper corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: envNS, Name: keystore.PepperSecret}, &pepper); err != nil {
		t.Fatal(err)
	}
	store := hashStore(t)
	if store == nil {
		t.Fatal("no hash store")
	}
	es, err := keystore.Entries(store)
	if err != nil {
		t.Fatal(err)
	}
	v, err := keys.NewVerifier(pepper.Data[keystore.PepperField], es)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// touch changes an annotation so the reconciler runs now, at the fake time.
func touch(t *testing.T, extra map[string]string) {
	t.Helper()
	update(t, func(ks *apiwardenv1alpha1.APIKeySet) {
		if ks.Annotations == nil {
			ks.Annotations = map[string]string{}
		}
		ks.Annotations["test/touch"] = fmt.Sprint(time.Now().UnixNano())
		for k, v := range extra {
			ks.Annotations[k] = v
		}
	})
}

// update changes the APIKeySet, retrying when the reconciler's status
// writes got there first.
func update(t *testing.T, mutate func(*apiwardenv1alpha1.APIKeySet)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var ks apiwardenv1alpha1.APIKeySet
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "shop-keys"}, &ks); err != nil {
			return err
		}
		mutate(&ks)
		return k8s.Update(context.Background(), &ks)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func keyOf(t *testing.T, consumer string) (key, id string) {
	s := secret(t, "shop-keys-"+consumer)
	if s == nil {
		return "", ""
	}
	return string(s.Data[keystore.KeyField]), s.Annotations[keystore.AnnotationKeyID]
}

// newNamespace gives the test a namespace of its own, in ns.
func newNamespace(t *testing.T) {
	t.Helper()
	runs++
	ns = fmt.Sprintf("shop-%d", runs)
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
}

func TestAPIKeySetLifecycle(t *testing.T) {
	ctx := context.Background()
	newNamespace(t)
	ks := &apiwardenv1alpha1.APIKeySet{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-keys", Namespace: ns},
		Spec: apiwardenv1alpha1.APIKeySetSpec{
			KeyPrefix: "shop",
			Consumers: []apiwardenv1alpha1.Consumer{{Name: "app", Roles: []string{"reader"}}, {Name: "partner"}},
			Rotation: &apiwardenv1alpha1.Rotation{
				Every: &metav1.Duration{Duration: 24 * time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Hour},
			},
		},
	}
	if err := k8s.Create(ctx, ks); err != nil {
		t.Fatal(err)
	}
	var seen []string // every plaintext key, to prove none leaks

	// Issue and deliver.
	eventually(t, "both keys delivered", func() bool {
		a, _ := keyOf(t, "app")
		p, _ := keyOf(t, "partner")
		return a != "" && p != ""
	})
	app1, app1ID := keyOf(t, "app")
	partner1, _ := keyOf(t, "partner")
	seen = append(seen, app1, partner1)
	now := fake.Now()
	if e, err := verifier(t).Verify(app1, now); err != nil || e.Consumer != "app" || len(e.Roles) != 1 {
		t.Fatalf("the delivered key does not verify against the hash store: %+v %v", e, err)
	}
	eventually(t, "status records the key", func() bool {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks)
		return len(ks.Status.Consumers) == 2 && len(ks.Status.Consumers[0].Keys) == 1 && ks.Status.Consumers[0].Keys[0].ID == app1ID
	})

	// Scheduled rotation: a new key, the old one valid during grace.
	fake.Advance(25 * time.Hour)
	touch(t, nil)
	eventually(t, "rotated keys delivered", func() bool {
		k, _ := keyOf(t, "app")
		return k != app1
	})
	app2, _ := keyOf(t, "app")
	seen = append(seen, app2)
	v := verifier(t)
	if _, err := v.Verify(app1, fake.Now()); err != nil {
		t.Fatalf("the old key must stay valid during grace: %v", err)
	}
	if _, err := v.Verify(app2, fake.Now()); err != nil {
		t.Fatalf("the new key does not verify: %v", err)
	}

	// Grace ends: the old key is gone from the hash store.
	fake.Advance(2 * time.Hour)
	touch(t, nil)
	eventually(t, "old key revoked", func() bool {
		_, err := verifier(t).Verify(app1, fake.Now())
		return err == keys.ErrUnknownKey
	})

	// Manual rotation of one consumer, idempotent on re-apply.
	partnerBefore, _ := keyOf(t, "partner")
	seen = append(seen, partnerBefore)
	touch(t, map[string]string{apiwardenv1alpha1.RotateAnnotation: "partner@ticket-1"})
	eventually(t, "partner rotated", func() bool {
		k, _ := keyOf(t, "partner")
		return k != partnerBefore
	})
	partner2, _ := keyOf(t, "partner")
	seen = append(seen, partner2)
	touch(t, nil)
	time.Sleep(500 * time.Millisecond) // give a wrong second rotation the chance to happen
	if k, _ := keyOf(t, "partner"); k != partner2 {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks)
		st, _ := json.MarshalIndent(ks.Status.Consumers, "", " ")
		var events corev1.EventList
		_ = k8s.List(ctx, &events, client.InNamespace(ns))
		for _, e := range events.Items {
			t.Logf("event %s: %s", e.Reason, e.Message)
		}
		t.Fatalf("re-applying the same rotate annotation rotated again; status %s", st)
	}
	if k, _ := keyOf(t, "app"); k != app2 {
		t.Fatal("rotating partner rotated app too")
	}
	// The metrics endpoint counts what happened, and says when each
	// consumer's next rotation is due.
	if issued, rotated := metricValue(t, "apiwarden_apikey_lifecycle_events_total", map[string]string{"event": "issued"}), metricValue(t, "apiwarden_apikey_lifecycle_events_total", map[string]string{"event": "rotated"}); issued < 2 || rotated < 2 {
		t.Errorf("lifecycle counters: issued %v, rotated %v", issued, rotated)
	}
	if due := metricValue(t, "apiwarden_apikey_rotation_due_seconds", map[string]string{"namespace": ns, "apikeyset": "shop-keys", "consumer": "app"}); due <= 0 {
		t.Errorf("apiwarden_apikey_rotation_due_seconds for app = %v, want the time to its next rotation", due)
	}

	// Crash between delivery and status: a key delivered but unknown to
	// status is adopted, not replaced.
	var pepper corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: envNS, Name: keystore.PepperSecret}, &pepper); err != nil {
		t.Fatal(err)
	}
	orphan, _ := keys.Generate("shop")
	seen = append(seen, orphan)
	// As the reconciler does before delivering: the hash goes in first.
	oh := keys.HashKey(pepper.Data[keystore.PepperField], orphan)
	hs := hashStore(t)
	var entries []keystore.HashEntry
	if err := json.Unmarshal(hs.Data[keystore.HashesField], &entries); err != nil {
		t.Fatal(err)
	}
	entries = append(entries, keystore.HashEntry{ID: oh.ID(), Hash: oh.String(), Consumer: "app"})
	hs.Data[keystore.HashesField], _ = json.Marshal(entries)
	if err := k8s.Update(ctx, hs); err != nil {
		t.Fatal(err)
	}
	s := secret(t, "shop-keys-app")
	s.Data[keystore.KeyField] = []byte(orphan)
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	orphanID := keys.HashKey(pepper.Data[keystore.PepperField], orphan).ID()
	touch(t, nil)
	eventually(t, "the delivered key adopted", func() bool {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks)
		return len(ks.Status.Consumers) > 0 && ks.Status.Consumers[0].Keys[0].ID == orphanID &&
			ks.Status.Consumers[0].Keys[0].State == apiwardenv1alpha1.KeyStateActive
	})
	if _, err := verifier(t).Verify(orphan, fake.Now()); err != nil {
		t.Fatalf("the adopted key does not verify: %v", err)
	}

	// A key that apiwarden did not issue last (no hash in the store) is not
	// adopted: the consumer gets a fresh key instead.
	stranger, _ := keys.Generate("shop")
	seen = append(seen, stranger)
	s = secret(t, "shop-keys-app")
	s.Data[keystore.KeyField] = []byte(stranger)
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	touch(t, nil)
	eventually(t, "a stranger key replaced", func() bool {
		k, _ := keyOf(t, "app")
		return k != stranger && k != orphan
	})
	if _, err := verifier(t).Verify(stranger, fake.Now()); err == nil {
		t.Fatal("a key apiwarden did not issue verifies")
	}
	orphan, _ = keyOf(t, "app") // the current key, for the checks below
	seen = append(seen, orphan)

	// A deleted hash store is rebuilt from the delivered keys.
	if err := k8s.Delete(ctx, hashStore(t)); err != nil {
		t.Fatal(err)
	}
	touch(t, nil)
	eventually(t, "the hash store rebuilt", func() bool {
		if hashStore(t) == nil {
			return false
		}
		_, err := verifier(t).Verify(orphan, fake.Now())
		return err == nil
	})
	if k, _ := keyOf(t, "app"); k != orphan {
		t.Fatal("rebuilding the hash store replaced a delivered key")
	}

	// Removing a consumer revokes its keys.
	update(t, func(ks *apiwardenv1alpha1.APIKeySet) { ks.Spec.Consumers = ks.Spec.Consumers[:1] })
	eventually(t, "partner's keys revoked", func() bool {
		_, err := verifier(t).Verify(partner2, fake.Now())
		return err == keys.ErrUnknownKey
	})

	// No key appears in status, the hash store or Events.
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks); err != nil {
		t.Fatal(err)
	}
	status, _ := json.Marshal(ks.Status)
	store := hashStore(t)
	var events corev1.EventList
	if err := k8s.List(ctx, &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var messages strings.Builder
	for _, e := range events.Items {
		messages.WriteString(e.Message + "\n")
	}
	if !strings.Contains(messages.String(), "has new key") {
		t.Fatalf("no issue Events were recorded:\n%s", messages.String())
	}
	if !strings.Contains(logs.String(), "has new key") {
		t.Fatalf("the reconciler's log lines were not captured")
	}
	for _, k := range seen {
		secretPart := k[len("shop_"):]
		for where, text := range map[string]string{"status": string(status), "hash store": string(store.Data[keystore.HashesField]), "events": messages.String(), "logs": logs.String()} {
			if strings.Contains(text, secretPart) {
				t.Errorf("a key appears in %s", where)
			}
		}
	}
}

func TestDeliveryRefusals(t *testing.T) {
	ctx := context.Background()
	newNamespace(t)
	// apiwarden's namespace grants this namespace's key sets every Secret
	// name: the hash store's must still be refused.
	grant := &gatewayv1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: envNS, Name: "keys-from-" + ns},
		Spec: gatewayv1.ReferenceGrantSpec{
			From: []gatewayv1.ReferenceGrantFrom{{Group: "apiwarden.io", Kind: "APIKeySet", Namespace: gatewayv1.Namespace(ns)}},
			To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Secret"}},
		},
	}
	if err := k8s.Create(ctx, grant); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), grant) })
	store := keystore.HashStoreName(ns, "shop-keys")
	ks := &apiwardenv1alpha1.APIKeySet{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-keys", Namespace: ns},
		Spec: apiwardenv1alpha1.APIKeySetSpec{Consumers: []apiwardenv1alpha1.Consumer{
			{Name: "local"},
			{Name: "remote", SecretRef: &apiwardenv1alpha1.SecretDelivery{Namespace: "elsewhere"}},
			{Name: "hashes", SecretRef: &apiwardenv1alpha1.SecretDelivery{Namespace: envNS, Name: store}},                 // the hash store
			{Name: "squatter", SecretRef: &apiwardenv1alpha1.SecretDelivery{Namespace: envNS, Name: "other.keys.hashes"}}, // another set's, before it exists
			{Name: "twin", SecretRef: &apiwardenv1alpha1.SecretDelivery{Name: "shop-keys-local"}},
		}},
	}
	if err := k8s.Create(ctx, ks); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Ready condition", func() bool {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks)
		c := meta.FindStatusCondition(ks.Status.Conditions, apiwardenv1alpha1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "consumer remote gets no new key: namespace elsewhere does not grant it: create a ReferenceGrant there from APIKeySet (group apiwarden.io) in namespace "+ns+" to Secret shop-keys-remote") &&
			strings.Contains(c.Message, `consumer hashes gets no new key: its Secret "`+envNS+`/`+store+`" is already the hash store`) &&
			strings.Contains(c.Message, `consumer squatter gets no new key: its Secret "`+envNS+`/other.keys.hashes" would take a name kept for hash stores`) &&
			strings.Contains(c.Message, `consumer twin gets no new key: its Secret "shop-keys-local" is already consumer local's`)
	})
	if k, _ := keyOf(t, "local"); k == "" {
		t.Fatal("the local consumer got no key")
	}
	if len(ks.Status.Consumers) != 1 || ks.Status.Consumers[0].Name != "local" {
		t.Fatalf("a key was issued for the refused consumer: %+v", ks.Status.Consumers)
	}
}

// TestCrossNamespaceDelivery: a key goes into another namespace only while a
// ReferenceGrant there allows it; the Secret is found again by its owner
// annotation, moved when the consumer's secretRef moves, and deleted with
// the consumer and with the APIKeySet (through the finalizer).
func TestCrossNamespaceDelivery(t *testing.T) {
	ctx := context.Background()
	newNamespace(t)
	team := ns + "-team"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}}); err != nil {
		t.Fatal(err)
	}
	remoteSecret := func(name string) *corev1.Secret {
		var s corev1.Secret
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: team, Name: name}, &s); err != nil {
			return nil
		}
		return &s
	}
	wrong := gatewayv1.ObjectName("other")
	grant := &gatewayv1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "keys-from-shop"},
		Spec: gatewayv1.ReferenceGrantSpec{
			From: []gatewayv1.ReferenceGrantFrom{{Group: "apiwarden.io", Kind: "APIKeySet", Namespace: gatewayv1.Namespace(ns)}},
			To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Secret", Name: &wrong}},
		},
	}
	if err := k8s.Create(ctx, grant); err != nil {
		t.Fatal(err)
	}
	ks := &apiwardenv1alpha1.APIKeySet{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-keys", Namespace: ns},
		Spec: apiwardenv1alpha1.APIKeySetSpec{Consumers: []apiwardenv1alpha1.Consumer{
			{Name: "remote", SecretRef: &apiwardenv1alpha1.SecretDelivery{Namespace: team, Name: "orders-api-key"}},
		}},
	}
	if err := k8s.Create(ctx, ks); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a refusal naming the missing grant", func() bool {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks)
		c := meta.FindStatusCondition(ks.Status.Conditions, apiwardenv1alpha1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "namespace "+team+" does not grant it")
	})
	if remoteSecret("orders-api-key") != nil {
		t.Fatal("a key was delivered under a grant for another Secret name")
	}
	// Widen the grant to every Secret: the watch on ReferenceGrants delivers at once.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(grant), grant); err != nil {
			return err
		}
		grant.Spec.To[0].Name = nil
		return k8s.Update(ctx, grant)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery into the granted namespace", func() bool { return remoteSecret("orders-api-key") != nil })
	s := remoteSecret("orders-api-key")
	if len(s.OwnerReferences) != 0 || s.Annotations[keystore.AnnotationOwner] == "" || s.Labels[keystore.LabelConsumer] != "remote" || len(s.Data[keystore.KeyField]) == 0 {
		t.Fatalf("delivered Secret: ownerRefs=%v annotations=%v labels=%v", s.OwnerReferences, s.Annotations, s.Labels)
	}
	eventually(t, "the finalizer and Ready", func() bool {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks)
		c := meta.FindStatusCondition(ks.Status.Conditions, apiwardenv1alpha1.ConditionReady)
		return slices.Contains(ks.Finalizers, controllers.Finalizer) && c != nil && c.Status == metav1.ConditionTrue
	})
	key := string(s.Data[keystore.KeyField])
	// Deleting the remote Secret brings a new key back (found by annotation).
	if err := k8s.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, "redelivery", func() bool {
		s := remoteSecret("orders-api-key")
		return s != nil && string(s.Data[keystore.KeyField]) != key
	})
	// Moving the consumer's secretRef deletes the old Secret.
	update(t, func(ks *apiwardenv1alpha1.APIKeySet) { ks.Spec.Consumers[0].SecretRef.Name = "orders-key" })
	eventually(t, "the move", func() bool { return remoteSecret("orders-key") != nil && remoteSecret("orders-api-key") == nil })
	// Deleting the APIKeySet deletes the remote Secret, then the APIKeySet goes.
	if err := k8s.Delete(ctx, ks); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cleanup across namespaces", func() bool {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(ks), &apiwardenv1alpha1.APIKeySet{})
		return remoteSecret("orders-key") == nil && apierrors.IsNotFound(err)
	})
}

// TestKeyUsageWritesDoNotReconcile: the authz service records key usage in
// an APIKeySet's status every minute or so; that must not run the key
// lifecycle (two Secret lists and the hash store) each time. A rotate
// annotation still does.
func TestKeyUsageWritesDoNotReconcile(t *testing.T) {
	ctx := context.Background()
	newNamespace(t)
	ks := &apiwardenv1alpha1.APIKeySet{ObjectMeta: metav1.ObjectMeta{Name: "usage-keys", Namespace: ns},
		Spec: apiwardenv1alpha1.APIKeySetSpec{KeyPrefix: "usage", Consumers: []apiwardenv1alpha1.Consumer{{Name: "app"}}}}
	if err := k8s.Create(ctx, ks); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the key in status", func() bool {
		return k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks) == nil && len(ks.Status.Consumers) == 1 && len(ks.Status.Consumers[0].Keys) == 1
	})
	// Let the reconciles of the creation finish.
	for last, quiet := reconciles(t, "apikeyset"), time.Now(); time.Since(quiet) < 2*time.Second; time.Sleep(100 * time.Millisecond) {
		if n := reconciles(t, "apikeyset"); n != last {
			last, quiet = n, time.Now()
		}
	}
	before := reconciles(t, "apikeyset")
	used := metav1.NewTime(time.Now().Truncate(time.Minute))
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks); err != nil {
			return err
		}
		ks.Status.Consumers[0].Keys[0].LastUsed = &used
		return k8s.Status().Update(ctx, ks)
	}); err != nil {
		t.Fatal(err)
	}
	// The positive control: an annotation change after it is reconciled,
	// so the count is read once the informer has seen both writes.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks); err != nil {
			return err
		}
		metav1.SetMetaDataAnnotation(&ks.ObjectMeta, "example.com/touched", "yes")
		return k8s.Update(ctx, ks)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reconcile of the annotation change", func() bool { return reconciles(t, "apikeyset") > before })
	time.Sleep(time.Second)
	if got := reconciles(t, "apikeyset") - before; got != 1 {
		t.Errorf("%v reconciles after a key-usage status write and an annotation change, want 1 (the annotation's)", got)
	}
}

// TestHashStoreMigration: a hash store an earlier build kept in the key
// set's namespace is moved into apiwarden's namespace, so a key in its grace
// period (no longer delivered, so not rebuilt from the delivered keys)
// still verifies after the upgrade.
func TestHashStoreMigration(t *testing.T) {
	ctx := context.Background()
	newNamespace(t)
	ks := &apiwardenv1alpha1.APIKeySet{ObjectMeta: metav1.ObjectMeta{Name: "shop-keys", Namespace: ns},
		Spec: apiwardenv1alpha1.APIKeySetSpec{Consumers: []apiwardenv1alpha1.Consumer{{Name: "app"}}}}
	if err := k8s.Create(ctx, ks); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a key", func() bool { k, _ := keyOf(t, "app"); return k != "" && hashStore(t) != nil })
	old, _ := keyOf(t, "app")
	touch(t, map[string]string{apiwardenv1alpha1.RotateAnnotation: "app@migration"})
	eventually(t, "the rotated key", func() bool { k, _ := keyOf(t, "app"); return k != "" && k != old })
	eventually(t, "the old key in grace, in the store", func() bool {
		_, err := verifier(t).Verify(old, fake.Now())
		return err == nil
	})
	// As an earlier build left it: the same store, in the key set's
	// namespace, controlled by the key set; and none in apiwarden's.
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks); err != nil {
		t.Fatal(err)
	}
	current := hashStore(t)
	yes := true
	legacy := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-keys-apiwarden-hashes",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: apiwardenv1alpha1.GroupVersion.String(), Kind: "APIKeySet", Name: ks.Name, UID: ks.UID, Controller: &yes}}},
		Data: map[string][]byte{keystore.HashesField: current.Data[keystore.HashesField]}}
	if err := k8s.Create(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, current); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the store moved and the old one deleted", func() bool {
		return hashStore(t) != nil && secret(t, "shop-keys-apiwarden-hashes") == nil
	})
	if _, err := verifier(t).Verify(old, fake.Now()); err != nil {
		t.Errorf("the key in grace does not verify after the move: %v", err)
	}
}
