// Command rotation measures API-key issue and rotation end to end at scale:
// a real kube-apiserver (envtest), the APIKeySet controller and the authz
// service in one manager, -sets APIKeySets of -consumers consumers each (an
// APIKeySet holds at most 256). It reports the wall time until every consumer
// has a delivered key that the authz service accepts, then the same for a
// rotation of every key, and the manager process's peak heap.
//
//	go run ./test/bench/rotation -sets 40 -consumers 250
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/apiwarden/apiwarden/test/bench/load"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/authz"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

const envNS = "apiwarden-system"

func main() {
	sets := flag.Int("sets", 40, "APIKeySets")
	consumers := flag.Int("consumers", 250, "consumers per APIKeySet (at most 256)")
	workers := flag.Int("workers", 4, "concurrent reconciles of the APIKeySet controller")
	flag.Parse()
	if err := run(*sets, *consumers, *workers); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func run(sets, consumers, workers int) error {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel)))
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // stops the manager before the control plane
	k8s, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: envNS}}); err != nil {
		return err
	}
	fake := &clock{}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{GroupKindConcurrency: map[string]int{"APIKeySet.apiwarden.io": workers}}})
	if err != nil {
		return err
	}
	if err := (&controllers.APIKeySetReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"), Namespace: envNS, Now: fake.Now}).SetupWithManager(mgr); err != nil {
		return err
	}
	svc, err := authz.Setup(ctx, mgr, authz.Options{Namespace: envNS, GRPCAddr: "0", HTTPAddr: "0", Now: fake.Now})
	if err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()
	var peak atomic.Uint64
	go func() {
		var ms runtime.MemStats
		for ctx.Err() == nil {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	ns := "bench"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	for s := range sets {
		if err := k8s.Create(ctx, &apiwardenv1alpha1.APIPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", s)},
			Spec: apiwardenv1alpha1.APIPolicySpec{
				TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "r"}},
				Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: fmt.Sprintf("s%d", s)}}}},
			},
		}); err != nil {
			return err
		}
	}
	total := sets * consumers
	fmt.Printf("%d APIKeySets x %d consumers = %d keys; %d concurrent reconciles; GOMAXPROCS %d\n\n", sets, consumers, total, workers, runtime.GOMAXPROCS(0))

	// The floor: the same number of Secrets written straight to the
	// apiserver, create then update, 32 at a time (4 reconciles x 8
	// deliveries), with nothing else going on.
	floorCreate, floorUpdate, err := floor(ctx, k8s, total, 32)
	if err != nil {
		return err
	}
	fmt.Printf("floor:    %d Secrets created in %.1f s, updated in %.1f s by a plain client, 32 in flight\n", total, floorCreate.Seconds(), floorUpdate.Seconds())

	start := time.Now()
	for s := range sets {
		var cs []apiwardenv1alpha1.Consumer
		for c := range consumers {
			cs = append(cs, apiwardenv1alpha1.Consumer{Name: fmt.Sprintf("c%d", c)})
		}
		if err := k8s.Create(ctx, &apiwardenv1alpha1.APIKeySet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s%d", s)},
			Spec: apiwardenv1alpha1.APIKeySetSpec{Consumers: cs, KeyPrefix: "bench", Rotation: &apiwardenv1alpha1.Rotation{
				Every: &metav1.Duration{Duration: 24 * time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Hour}}},
		}); err != nil {
			return err
		}
	}
	first, err := waitAccepted(ctx, k8s, svc.Store(), fake, ns, sets, total, nil)
	if err != nil {
		return err
	}
	issue := time.Since(start)
	fmt.Printf("issue:    %d keys delivered and accepted by the authz service in %.1f s (%.0f keys/s; %.2fx the floor's creates)\n", total, issue.Seconds(), float64(total)/issue.Seconds(), issue.Seconds()/floorCreate.Seconds())

	// Every key is due: move the clock and wake each set.
	fake.offset.Add(int64(24*time.Hour + time.Second))
	start = time.Now()
	for s := range sets {
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var ks apiwardenv1alpha1.APIKeySet
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("s%d", s)}, &ks); err != nil {
				return err
			}
			if ks.Annotations == nil {
				ks.Annotations = map[string]string{}
			}
			ks.Annotations["bench/wake"] = "1"
			return k8s.Update(ctx, &ks)
		}); err != nil {
			return err
		}
	}
	if _, err := waitAccepted(ctx, k8s, svc.Store(), fake, ns, sets, total, first); err != nil {
		return err
	}
	rot := time.Since(start)
	fmt.Printf("rotation: %d keys replaced, delivered and accepted in %.1f s (%.0f keys/s; %.2fx the floor's updates); old keys still accepted (grace)\n", total, rot.Seconds(), float64(total)/rot.Seconds(), rot.Seconds()/floorUpdate.Seconds())
	// The old keys are in grace.
	refused := 0
	for i, k := range first {
		if i%97 != 0 {
			continue
		}
		if r := svc.Store().Check(input(k.set, k.key), fake.Now()); r.Code != authz.Allowed {
			refused++
		}
	}
	if refused > 0 {
		return fmt.Errorf("%d old keys in grace were refused", refused)
	}
	fmt.Printf("peak heap in use (manager, controller, authz, client): %.0f MiB\n", float64(peak.Load())/(1<<20))
	return nil
}

type deliveredKey struct{ set, key, id string }

type hdr struct{ k string }

func (h hdr) Get(string, string) (string, int) { return h.k, 1 }

func input(set, key string) *authz.Input {
	return &authz.Input{Policy: "bench/p" + set[1:], Method: "GET", Path: "/", Headers: hdr{key}}
}

// waitAccepted waits until every delivery Secret holds a key not in prev and
// the authz store accepts each of them; it returns the keys.
func waitAccepted(ctx context.Context, k8s client.Client, store *authz.Store, fake *clock, ns string, sets, total int, prev []deliveredKey) ([]deliveredKey, error) {
	old := map[string]bool{}
	for _, p := range prev {
		old[p.id] = true
	}
	deadline := time.Now().Add(10 * time.Minute)
	// Poll the 40-odd APIKeySets' status, not the 10,000 Secrets: listing
	// those every few hundred milliseconds would load the apiserver more than
	// the controller does.
	for {
		var sets apiwardenv1alpha1.APIKeySetList
		if err := k8s.List(ctx, &sets, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		active := 0
		for _, ks := range sets.Items {
			for _, c := range ks.Status.Consumers {
				for _, k := range c.Keys {
					if k.State == apiwardenv1alpha1.KeyStateActive && !old[k.ID] {
						active++
					}
				}
			}
		}
		if active == total {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out: %d of %d new active keys in status", active, total)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for {
		var list corev1.SecretList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		var keysNow []deliveredKey
		for _, s := range list.Items {
			id := s.Annotations[keystore.AnnotationKeyID]
			if s.Labels[keystore.LabelConsumer] == "" || id == "" || old[id] {
				continue
			}
			keysNow = append(keysNow, deliveredKey{set: s.Labels[keystore.LabelKeySet], key: string(s.Data[keystore.KeyField]), id: id})
		}
		if len(keysNow) == total {
			var bad atomic.Int64
			var wg sync.WaitGroup
			for w := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < len(keysNow); i += 2 {
						if r := store.Check(input(keysNow[i].set, keysNow[i].key), fake.Now()); r.Code != authz.Allowed {
							bad.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if bad.Load() == 0 {
				return keysNow, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out: %d of %d keys delivered", len(keysNow), total)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// floor writes n Secrets like delivery Secrets, then updates each, with c
// writers, and deletes the namespace's Secrets afterwards.
func floor(ctx context.Context, k8s client.Client, n, c int) (create, update time.Duration, err error) {
	ns := "floor"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return 0, 0, err
	}
	secret := func(i int, v string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s-%d", i), Labels: map[string]string{keystore.LabelKeySet: "x", keystore.LabelConsumer: "c"},
				Annotations: map[string]string{keystore.AnnotationKeyID: "k0123456789ab", keystore.AnnotationCreated: time.Now().UTC().Format(time.RFC3339)}},
			Data: map[string][]byte{keystore.KeyField: []byte("bench_" + v), keystore.KeyIDField: []byte("k0123456789ab")},
		}
	}
	do := func(f func(i int) error) (time.Duration, error) {
		r, err := load.Run(load.Options{Requests: n, Clients: c}, func(_, i int) error { return f(i) })
		return r.Elapsed, err
	}
	if create, err = do(func(i int) error { return k8s.Create(ctx, secret(i, "a")) }); err != nil {
		return 0, 0, err
	}
	update, err = do(func(i int) error {
		var s corev1.Secret
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("s-%d", i)}, &s); err != nil {
			return err
		}
		s.Data = secret(i, "b").Data
		return k8s.Update(ctx, &s)
	})
	if err != nil {
		return 0, 0, err
	}
	return create, update, k8s.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns))
}
