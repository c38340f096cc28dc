// Command celparams measures how fast CEL-mode admission learns about new
// APIPolicies: a real kube-apiserver (envtest), -namespaces namespaces that
// one CEL-mode APIBaseline governs, the manager's admission controllers
// (params and compiled policies, configured as cmd/manager configures
// them), then -policies APIPolicies spread over the namespaces, created by
// -clients concurrent clients.
//
// A watch on the params ConfigMaps records when each policy first appears
// in its namespace's params (listed in its generations key). The command reports the
// time to create the policies (the floor), the time until every policy is
// in the params, after the first and after the last create, and the
// distribution of each policy's lag from its create to its params.
//
//	go run ./test/bench/celparams -policies 1000 -namespaces 100
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

func main() {
	policies := flag.Int("policies", 1000, "APIPolicies to create")
	namespaces := flag.Int("namespaces", 100, "governed namespaces they are spread over")
	clients := flag.Int("clients", 8, "concurrent clients creating policies")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(*policies, *namespaces, *clients, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(n, namespaces, clients int, timeout time.Duration) error {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel)))
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg := *env.Config
	cfg.QPS, cfg.Burst = 1000, 2000
	k8s, err := client.New(&cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		return err
	}
	ns := func(i int) string { return fmt.Sprintf("team-%03d", i%namespaces) }
	for i := 0; i < namespaces; i++ {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns(i), Labels: map[string]string{"governed": "yes"}}}); err != nil {
			return err
		}
	}
	if err := k8s.Create(ctx, &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: apiwardenv1alpha1.APIBaselineSpec{
		Admission: apiwardenv1alpha1.AdmissionModeCEL, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"governed": "yes"}},
	}}); err != nil {
		return err
	}

	mcfg := *env.Config
	mcfg.QPS, mcfg.Burst = 200, 400 // cmd/manager's defaults
	opts := ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}}
	opts.Cache = controllers.CacheOptions()
	mgr, err := ctrl.NewManager(&mcfg, opts)
	if err != nil {
		return err
	}
	if err := (&controllers.AdmissionPolicyReconciler{Client: mgr.GetClient(), Namespace: "apiwarden-system"}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&controllers.AdmissionParamsReconciler{Client: mgr.GetClient(), Namespace: "apiwarden-system"}).SetupWithManager(mgr); err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()

	// Every policy's first appearance in the params, from a watch.
	var mu sync.Mutex
	seen := map[string]time.Time{} // namespace/policy
	paramsReady := map[string]bool{}
	w, err := cs.CoreV1().ConfigMaps("").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + exposure.ParamsName})
	if err != nil {
		return err
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			at := time.Now()
			mu.Lock()
			paramsReady[cm.Namespace] = true
			for _, g := range strings.Split(cm.Data[exposure.GenerationsKey], ",") {
				if name, _, ok := strings.Cut(g, "="); ok {
					if _, had := seen[cm.Namespace+"/"+name]; !had {
						seen[cm.Namespace+"/"+name] = at
					}
				}
			}
			mu.Unlock()
		}
	}()
	for {
		mu.Lock()
		ready := len(paramsReady)
		mu.Unlock()
		if ready == namespaces {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("only %d of %d namespaces got params", ready, namespaces)
		}
		time.Sleep(50 * time.Millisecond)
	}

	created := make([]time.Time, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || firstErr.Load() != nil {
					return
				}
				name := fmt.Sprintf("api-%05d", i)
				p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns(i), Name: name}, Spec: apiwardenv1alpha1.APIPolicySpec{
					TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: name}},
					Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "partners"}}}},
					RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 100, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
				}}
				if err := k8s.Create(ctx, p); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				created[i] = time.Now()
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	lastCreate := time.Now()
	var done time.Time
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got == n {
			done = time.Now()
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("after %s only %d of %d policies are in the params", time.Since(start).Round(time.Millisecond), got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	lags := make([]time.Duration, n)
	mu.Lock()
	for i := range lags {
		lags[i] = seen[ns(i)+"/"+fmt.Sprintf("api-%05d", i)].Sub(created[i])
	}
	mu.Unlock()
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	pct := func(p float64) time.Duration { return lags[int(p*float64(n-1))].Round(time.Millisecond) }
	fmt.Printf("policies: %d in %d namespaces (one CEL-mode baseline), %d clients\n", n, namespaces, clients)
	fmt.Printf("create the policies (floor):       %s (%.0f policies/s)\n", lastCreate.Sub(start).Round(time.Millisecond), float64(n)/lastCreate.Sub(start).Seconds())
	fmt.Printf("all in the params, from the first create: %s\n", done.Sub(start).Round(time.Millisecond))
	fmt.Printf("all in the params, after the last create: %s\n", done.Sub(lastCreate).Round(time.Millisecond))
	fmt.Printf("per-policy lag, create to params:  p50 %s, p90 %s, p99 %s, max %s\n", pct(0.5), pct(0.9), pct(0.99), lags[n-1].Round(time.Millisecond))
	return nil
}
