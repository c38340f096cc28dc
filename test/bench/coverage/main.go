// Command coverage measures the coverage scan at scale: a real
// kube-apiserver (envtest), -namespaces governed namespaces holding, spread
// evenly, -services Services (half LoadBalancer, exposed; half ClusterIP),
// -ingresses Ingresses (half with TLS), -routes HTTPRoutes attached to one
// HTTPS Gateway per namespace and -policies APIPolicies covering the first
// routes (API keys + a rate limit), and one APIBaseline (Audit) over them.
//
// Everything exists before the manager starts (as when apiwarden is
// installed into a running cluster). The manager runs the APIBaseline and
// PolicyReport controllers as cmd/manager configures them (same cache
// transform). The command reports, from the same run:
//   - the time to create the objects (the apiserver's floor);
//   - the first scan: from the manager's start until the APIBaseline counts
//     every exposed object and every namespace's PolicyReport is written;
//   - the wall time of one full scan of the cluster from the cache (what
//     one APIBaseline reconcile costs), and of one namespace's report;
//   - the manager's heap before it starts and after a GC once converged,
//     per watched object;
//   - the writes the manager sends to the apiserver during a steady-state
//     window that holds at least one resync of every namespace and of the
//     baseline (target: 0), counted on its HTTP transport.
//
// Run it with:
//
//	go run ./test/bench/coverage
//	go run ./test/bench/coverage -services 1000 -ingresses 500 -routes 500 -policies 200 -namespaces 10
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/coverage"
	"github.com/apiwarden/apiwarden/internal/policyreport"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

type sizes struct{ services, ingresses, routes, policies, namespaces int }

func main() {
	var s sizes
	flag.IntVar(&s.services, "services", 10000, "Services (half LoadBalancer)")
	flag.IntVar(&s.ingresses, "ingresses", 5000, "Ingresses (half with TLS)")
	flag.IntVar(&s.routes, "routes", 5000, "HTTPRoutes")
	flag.IntVar(&s.policies, "policies", 2000, "APIPolicies, each covering one route")
	flag.IntVar(&s.namespaces, "namespaces", 100, "governed namespaces the objects are spread over")
	clients := flag.Int("clients", 8, "concurrent clients creating objects")
	resync := flag.Duration("resync", 20*time.Second, "the controllers' resync period (cmd/manager: 5m)")
	timeout := flag.Duration("timeout", 20*time.Minute, "give up after this long")
	flag.Parse()
	if s.namespaces < 1 || s.policies > s.routes {
		fmt.Fprintln(os.Stderr, "need -namespaces >= 1 and -policies <= -routes")
		os.Exit(2)
	}
	if err := run(s, *clients, *resync, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// writeCounter counts the requests a client sends that change something.
type writeCounter struct {
	next   http.RoundTripper
	writes atomic.Int64
	byVerb sync.Map // verb -> *atomic.Int64
}

func (w *writeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.writes.Add(1)
		c, _ := w.byVerb.LoadOrStore(req.Method, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
	}
	return w.next.RoundTrip(req)
}

func ns(i int) string { return fmt.Sprintf("team-%03d", i) }

// objects returns what the benchmark creates, spread over the namespaces.
func objects(s sizes) []client.Object {
	var out []client.Object
	for i := 0; i < s.namespaces; i++ {
		out = append(out, &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns(i), Name: "edge"}, Spec: gatewayv1.GatewaySpec{
			GatewayClassName: "eg", Listeners: []gatewayv1.Listener{{Name: "https", Protocol: gatewayv1.HTTPSProtocolType, Port: 443,
				TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "edge-cert"}}}}}}})
	}
	for i := 0; i < s.services; i++ {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns(i % s.namespaces), Name: fmt.Sprintf("svc-%05d", i)},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
		if i%2 == 0 {
			// No NodePorts: the range holds fewer than 3,000.
			svc.Spec.Type, svc.Spec.AllocateLoadBalancerNodePorts = corev1.ServiceTypeLoadBalancer, ptr.To(false)
		}
		out = append(out, svc)
	}
	for i := 0; i < s.ingresses; i++ {
		out = append(out, testenv.Ingress(ns(i%s.namespaces), fmt.Sprintf("ing-%05d", i), i%2 == 0))
	}
	for i := 0; i < s.routes; i++ {
		name := fmt.Sprintf("route-%05d", i)
		out = append(out, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns(i % s.namespaces), Name: name}, Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
			Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(name + ".example.com")},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: ptr.To(gatewayv1.PortNumber(8080))}}}}}},
		}})
	}
	for i := 0; i < s.policies; i++ {
		name := fmt.Sprintf("route-%05d", i)
		out = append(out, &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns(i % s.namespaces), Name: name}, Spec: apiwardenv1alpha1.APIPolicySpec{
			TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: name}},
			Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "partners"}}}},
			RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 100, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
		}})
	}
	return out
}

func create(ctx context.Context, k8s client.Client, objs []client.Object, clients int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Value
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(objs) || first.Load() != nil {
					return
				}
				if err := k8s.Create(ctx, objs[i]); err != nil {
					first.CompareAndSwap(nil, fmt.Errorf("creating %T %s: %w", objs[i], client.ObjectKeyFromObject(objs[i]), err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

// reconciles returns controller-runtime's count of reconciles per controller.
func reconciles() map[string]float64 {
	out := map[string]float64{}
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[label(m, "controller")] += m.GetCounter().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func run(s sizes, clients int, resync, timeout time.Duration) error {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel)))
	env, err := testenv.Start(testenv.WithServiceIPRange("10.96.0.0/12"))
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel() // stops the manager before the control plane
	cfg := *env.Config
	cfg.QPS, cfg.Burst = 1000, 2000 // the bench measures apiwarden, not client-side throttling
	k8s, err := client.New(&cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	for i := 0; i < s.namespaces; i++ {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns(i), Labels: map[string]string{"governed": "yes"}}}); err != nil {
			return err
		}
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apiwarden-system"}}); err != nil {
		return err
	}
	objs := objects(s)
	start := time.Now()
	if err := create(ctx, k8s, objs, clients); err != nil {
		return err
	}
	created := time.Since(start)
	baseline := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: apiwardenv1alpha1.APIBaselineSpec{
		EnforcementAction: apiwardenv1alpha1.EnforcementActionAudit,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"governed": "yes"}},
	}}
	if err := k8s.Create(ctx, baseline); err != nil {
		return err
	}

	runtime.GC()
	base := heapInUse()
	counter := &writeCounter{}
	mcfg := cfg
	mcfg.QPS, mcfg.Burst = 200, 400 // cmd/manager's defaults
	mcfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter }
	mgrOpts := ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}}
	mgrOpts.Cache = controllers.CacheOptions()
	mgr, err := ctrl.NewManager(&mcfg, mgrOpts)
	if err != nil {
		return err
	}
	if err := (&controllers.APIBaselineReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"),
		Namespace: "apiwarden-system", Resync: resync}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&controllers.PolicyReportReconciler{Client: mgr.GetClient(), Namespace: "apiwarden-system", Resync: resync,
		InstallCRD: true}).SetupWithManager(mgr); err != nil {
		return err
	}
	started := time.Now()
	go func() { _ = mgr.Start(ctx) }()

	// What the first scan must find: one Gateway per namespace, the
	// LoadBalancer Services, every Ingress and every route.
	exposed := int32(s.namespaces + (s.services+1)/2 + s.ingresses + s.routes)
	var statusAt, reportsAt time.Duration
	var counts apiwardenv1alpha1.ExposureCounts
	var total policyreport.Summary
	for statusAt == 0 || reportsAt == 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("first scan incomplete after %s: counts %+v (want %d exposed), reports %+v", time.Since(started).Round(time.Second), counts, exposed, total)
		}
		time.Sleep(500 * time.Millisecond)
		if statusAt == 0 {
			var b apiwardenv1alpha1.APIBaseline
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(baseline), &b); err != nil {
				return err
			}
			if b.Status.Counts != nil && b.Status.Counts.Exposed == exposed {
				counts, statusAt = *b.Status.Counts, time.Since(started)
			}
		}
		if reportsAt == 0 {
			list := &unstructured.UnstructuredList{}
			list.SetGroupVersionKind(policyreport.GVK.GroupVersion().WithKind("PolicyReportList"))
			if err := k8s.List(ctx, list); err != nil {
				continue // the CRD is being installed
			}
			total = policyreport.Summary{}
			for i := range list.Items {
				rep, err := policyreport.FromUnstructured(&list.Items[i])
				if err != nil {
					return err
				}
				total.Pass += rep.Summary.Pass
				total.Fail += rep.Summary.Fail
				total.Skip += rep.Summary.Skip
			}
			// Three requirements (the default baseline) per exposed object.
			if len(list.Items) == s.namespaces && total.Pass+total.Fail+total.Skip == 3*int(exposed) {
				reportsAt = time.Since(started)
			}
		}
	}

	// One full scan, from the manager's cache, as an APIBaseline reconcile
	// does it; then one namespace's, as a PolicyReport reconcile does it.
	opts := coverage.ScanOptions{OwnNamespace: "apiwarden-system", GatewayAPI: true}
	var full, one []time.Duration
	for i := 0; i < 5; i++ {
		t := time.Now()
		scanned, _, err := coverage.Scan(ctx, mgr.GetClient(), time.Now(), opts)
		if err != nil {
			return err
		}
		_ = coverage.Summarize("default", scanned, time.Now())
		full = append(full, time.Since(t))
		opts1 := opts
		opts1.Namespace = ns(i % s.namespaces)
		t = time.Now()
		if _, _, err := coverage.Scan(ctx, mgr.GetClient(), time.Now(), opts1); err != nil {
			return err
		}
		one = append(one, time.Since(t))
	}

	// Steady state: wait until the manager's writes stop (the Events of the
	// first scan go out 100 per scan, a scan every 2 s while some are
	// left), then count its writes over a window holding at least one
	// resync of every namespace and of the baseline.
	eventsFrom := time.Now()
	for last, quiet := counter.writes.Load(), time.Now(); time.Since(quiet) < 10*time.Second; {
		time.Sleep(250 * time.Millisecond)
		if n := counter.writes.Load(); n != last {
			last, quiet = n, time.Now()
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the manager never stopped writing")
		}
	}
	eventsDone := time.Since(eventsFrom) - 10*time.Second
	runtime.GC()
	after := heapInUse()
	before, rec0 := counter.writes.Load(), reconciles()
	window := resync + resync/2
	time.Sleep(window)
	writes, rec1 := counter.writes.Load()-before, reconciles()

	watched := len(objs) + s.namespaces
	fmt.Printf("objects: %d Services, %d Ingresses, %d HTTPRoutes, %d APIPolicies, %d Gateways in %d namespaces (%d exposed); GOMAXPROCS %d\n",
		s.services, s.ingresses, s.routes, s.policies, s.namespaces, s.namespaces, exposed, runtime.GOMAXPROCS(0))
	fmt.Printf("create them (floor, %d clients):   %s (%.0f objects/s)\n", clients, created.Round(time.Millisecond), float64(len(objs))/created.Seconds())
	fmt.Printf("first scan, APIBaseline status:    %s after the manager's start (counts %+v)\n", statusAt.Round(time.Millisecond), counts)
	fmt.Printf("first scan, all %d PolicyReports: %s (pass %d, fail %d, skip %d)\n", s.namespaces, reportsAt.Round(time.Millisecond), total.Pass, total.Fail, total.Skip)
	fmt.Printf("first-scan Events all recorded:    %s later\n", eventsDone.Round(time.Second))
	fmt.Printf("one full scan from the cache:      median %s, min %s (%d objects evaluated)\n", median(full), minimum(full), int(exposed)+s.services/2)
	fmt.Printf("one namespace's scan:              median %s, min %s\n", median(one), minimum(one))
	fmt.Printf("heap in use: before the manager %.1f MiB, converged after GC %.1f MiB: %.2f KiB per watched object (%d)\n",
		mib(base), mib(after), float64(int64(after)-int64(base))/float64(watched)/1024, watched)
	fmt.Printf("steady state over %s (resync %s): %d writes; reconciles: apibaseline %.0f, policyreport %.0f\n",
		window, resync, writes, rec1["apibaseline"]-rec0["apibaseline"], rec1["policyreport"]-rec0["policyreport"])
	var verbs []string
	counter.byVerb.Range(func(k, v any) bool {
		verbs = append(verbs, fmt.Sprintf("%s %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(verbs)
	fmt.Printf("manager writes over the whole run by method: %v\n", verbs)
	if rec1["policyreport"]-rec0["policyreport"] < float64(s.namespaces) || rec1["apibaseline"]-rec0["apibaseline"] < 1 {
		return fmt.Errorf("the window held no full resync; make -resync shorter than the window")
	}
	if writes != 0 {
		return fmt.Errorf("%d writes in a steady-state resync, want 0", writes)
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(time.Microsecond)
}

func minimum(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		m = min(m, x)
	}
	return m.Round(time.Microsecond)
}
