// Package keycrash proves that the APIKeySet controller's order of writes
// survives a crash between any two of them: the reconciler is stopped dead
// (a panic from the client, so nothing after that write runs) at every write
// of an issue and of a rotation in turn, against a real kube-apiserver, and
// after every crash each key ever delivered still verifies against the hash
// store, every consumer that had a key still has one, and the next reconcile
// converges.
package keycrash_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/keys"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

const envNS = "apiwarden-system"

var k8s client.Client

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	env, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if k8s, err = client.New(env.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: envNS}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// crash is what the client panics with at the chosen write.
type crash struct{ write int }

// crashingClient counts writes and panics at write number at (1-based);
// at <= 0 never crashes.
type crashingClient struct {
	client.Client
	at, n int
	log   []string
}

func (c *crashingClient) write(what string, obj client.Object) {
	c.n++
	c.log = append(c.log, fmt.Sprintf("%s %T %s", what, obj, obj.GetName()))
	if c.n == c.at {
		panic(crash{c.n})
	}
}

func (c *crashingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.write("create", obj)
	return c.Client.Create(ctx, obj, opts...)
}

func (c *crashingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.write("update", obj)
	return c.Client.Update(ctx, obj, opts...)
}

func (c *crashingClient) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	c.write("patch", obj)
	return c.Client.Patch(ctx, obj, p, opts...)
}

func (c *crashingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.write("delete", obj)
	return c.Client.Delete(ctx, obj, opts...)
}

func (c *crashingClient) Status() client.SubResourceWriter {
	return &crashingStatus{SubResourceWriter: c.Client.Status(), c: c}
}

type crashingStatus struct {
	client.SubResourceWriter
	c *crashingClient
}

func (s *crashingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.c.write("status update", obj)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s *crashingStatus) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	s.c.write("status patch", obj)
	return s.SubResourceWriter.Patch(ctx, obj, p, opts...)
}

// reconcile runs one pass, crashing at write at; it reports whether it
// crashed and how many writes it made.
func reconcile(t *testing.T, ns string, now time.Time, at int) (crashed bool, writes int, log []string) {
	t.Helper()
	cc := &crashingClient{Client: k8s, at: at}
	r := &controllers.APIKeySetReconciler{Client: cc, Reader: k8s, Recorder: record.NewFakeRecorder(1000), Namespace: envNS, Now: func() time.Time { return now }, DeliveryWorkers: 1}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(crash); !ok {
				panic(v)
			}
			crashed, writes, log = true, cc.n, cc.log
		}
	}()
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "set"}}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	return false, cc.n, cc.log
}

var consumers = []string{"a", "b"}

// delivered returns each consumer's delivered key.
func delivered(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range consumers {
		var s corev1.Secret
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "set-" + c}, &s); err == nil {
			out[c] = string(s.Data[keystore.KeyField])
		}
	}
	return out
}

// verifier is what the authz service would accept at now.
func verifier(t *testing.T, ns string) *keys.Verifier {
	t.Helper()
	var pepper, store corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: envNS, Name: keystore.PepperSecret}, &pepper); err != nil {
		return nil // no pepper yet: nothing verifies
	}
	var entries []keys.Entry
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: envNS, Name: keystore.HashStoreName(ns, "set")}, &store); err == nil {
		var err error
		if entries, err = keystore.Entries(&store); err != nil {
			t.Fatal(err)
		}
	}
	v, err := keys.NewVerifier(pepper.Data[keystore.PepperField], entries)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkKeys asserts that every key in seen (consumer -> keys ever delivered
// in this scenario, all within their grace at now) verifies, and that each
// consumer that ever had a key has one delivered now.
func checkKeys(t *testing.T, ns string, now time.Time, seen map[string][]string, where string) {
	t.Helper()
	cur := delivered(t, ns)
	for c, k := range cur {
		if k != "" && (len(seen[c]) == 0 || seen[c][len(seen[c])-1] != k) {
			seen[c] = append(seen[c], k)
		}
	}
	v := verifier(t, ns)
	for c, ks := range seen {
		if v == nil {
			t.Fatalf("%s: consumer %s has a key but there is no pepper", where, c)
		}
		if cur[c] == "" {
			t.Fatalf("%s: consumer %s had a key and has none delivered now", where, c)
		}
		for i, k := range ks {
			e, err := v.Verify(k, now)
			if err != nil || e.Consumer != c {
				t.Fatalf("%s: key %d of consumer %s (of %d ever delivered) is refused: %v", where, i+1, c, len(ks), err)
			}
		}
	}
}

// checkConverged asserts the state after a clean pass: Ready, not due, and
// each consumer's Active key in status is the delivered one.
func checkConverged(t *testing.T, ns string, where string) {
	t.Helper()
	var ks apiwardenv1alpha1.APIKeySet
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "set"}, &ks); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(ks.Status.Conditions, apiwardenv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("%s: not Ready after recovery: %+v", where, c)
	}
	if c := meta.FindStatusCondition(ks.Status.Conditions, apiwardenv1alpha1.ConditionRotationDue); c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("%s: RotationDue after recovery: %+v", where, c)
	}
	for _, c := range consumers {
		var s corev1.Secret
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "set-" + c}, &s); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		active := ""
		for _, cs := range ks.Status.Consumers {
			if cs.Name == c {
				for _, k := range cs.Keys {
					if k.State == apiwardenv1alpha1.KeyStateActive {
						active = k.ID
					}
				}
			}
		}
		if active == "" || active != s.Annotations[keystore.AnnotationKeyID] {
			t.Fatalf("%s: consumer %s: active key in status %q, delivered %q", where, c, active, s.Annotations[keystore.AnnotationKeyID])
		}
	}
}

func newSet(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	var cs []apiwardenv1alpha1.Consumer
	for _, c := range consumers {
		cs = append(cs, apiwardenv1alpha1.Consumer{Name: c})
	}
	ks := &apiwardenv1alpha1.APIKeySet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "set"},
		Spec: apiwardenv1alpha1.APIKeySetSpec{Consumers: cs, Rotation: &apiwardenv1alpha1.Rotation{
			Every: &metav1.Duration{Duration: 24 * time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Hour},
		}},
	}
	if err := k8s.Create(ctx, ks); err != nil {
		t.Fatal(err)
	}
}

// TestCrashBetweenEveryPairOfWrites crashes the first issue and then a
// scheduled rotation at each of their writes in turn.
func TestCrashBetweenEveryPairOfWrites(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(24*time.Hour + time.Second) // the keys are due

	// A clean run of each phase counts its writes. The very first issue also
	// creates the pepper; crash that one too, then count on a later set.
	newSet(t, "first")
	if crashed, _, _ := reconcile(t, "first", t0, 1); !crashed {
		t.Fatal("the first issue did not crash at the pepper's creation")
	}
	checkKeys(t, "first", t0, map[string][]string{}, "first issue, crash at the pepper")
	reconcile(t, "first", t0, 0)
	checkConverged(t, "first", "first issue, crash at the pepper")
	newSet(t, "count")
	_, issueWrites, issueLog := reconcile(t, "count", t0, 0)
	_, rotateWrites, rotateLog := reconcile(t, "count", t1, 0)
	t.Logf("issue: %d writes %v", issueWrites, issueLog)
	t.Logf("rotation: %d writes %v", rotateWrites, rotateLog)
	if issueWrites < 4 || rotateWrites < 4 {
		t.Fatalf("too few writes to be a real issue (%d) or rotation (%d)", issueWrites, rotateWrites)
	}

	for at := 1; at <= issueWrites; at++ {
		ns := fmt.Sprintf("issue-%d", at)
		newSet(t, ns)
		seen := map[string][]string{}
		if crashed, _, _ := reconcile(t, ns, t0, at); !crashed {
			t.Fatalf("%s: did not crash at write %d", ns, at)
		}
		checkKeys(t, ns, t0, seen, fmt.Sprintf("issue, crash at write %d", at))
		reconcile(t, ns, t0, 0)
		checkKeys(t, ns, t0, seen, fmt.Sprintf("issue, after recovery from write %d", at))
		checkConverged(t, ns, fmt.Sprintf("issue, crash at write %d", at))
	}
	for at := 1; at <= rotateWrites; at++ {
		ns := fmt.Sprintf("rotate-%d", at)
		newSet(t, ns)
		reconcile(t, ns, t0, 0)
		seen := map[string][]string{}
		checkKeys(t, ns, t0, seen, "before rotation")
		before := delivered(t, ns)
		if crashed, _, _ := reconcile(t, ns, t1, at); !crashed {
			t.Fatalf("%s: did not crash at write %d", ns, at)
		}
		checkKeys(t, ns, t1, seen, fmt.Sprintf("rotation, crash at write %d", at))
		reconcile(t, ns, t1, 0)
		checkKeys(t, ns, t1, seen, fmt.Sprintf("rotation, after recovery from write %d", at))
		checkConverged(t, ns, fmt.Sprintf("rotation, crash at write %d", at))
		after := delivered(t, ns)
		for _, c := range consumers {
			if after[c] == before[c] {
				t.Fatalf("rotation, crash at write %d: consumer %s was not rotated after recovery", at, c)
			}
		}
		// The old keys stay valid through grace and stop after it.
		v := verifier(t, ns)
		for _, c := range consumers {
			if _, err := v.Verify(before[c], t1.Add(59*time.Minute)); err != nil {
				t.Fatalf("rotation, crash at write %d: old key of %s refused within grace: %v", at, c, err)
			}
			if _, err := v.Verify(before[c], t1.Add(61*time.Minute)); err == nil {
				t.Fatalf("rotation, crash at write %d: old key of %s accepted after grace", at, c)
			}
		}
	}
}
