// Command convergence measures the APIPolicy controller at scale: a real
// kube-apiserver (envtest) with the Gateway API and Envoy Gateway CRDs, the
// controller in a manager configured as cmd/manager configures it (same
// cache transform), one Gateway, then -n HTTPRoutes and -n APIPolicies (API
// keys + a per-client rate limit: a SecurityPolicy and a BackendTrafficPolicy
// each) created by -clients concurrent clients.
//
// It reports, from the same run: the time to create the objects (the floor:
// what the apiserver takes anyway), the time until every policy reports
// Enforced=True, their ratio, objects/s, and the manager's heap: in use
// before the objects exist, at its peak, and after a GC at the end, per
// watched object (routes + policies).
//
//	go run ./test/bench/convergence -n 1000
//	go run ./test/bench/convergence -n 5000
//
// With -mtls-consumers N it measures instead one Gateway-level policy whose
// mTLS lists N consumers: the time until all N client Certificates exist
// and the policy is Enforced, and the manager's heap.
//
//	go run ./test/bench/convergence -mtls-consumers 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/envoygateway"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

func main() {
	n := flag.Int("n", 1000, "HTTPRoutes, and as many APIPolicies")
	clients := flag.Int("clients", 8, "concurrent clients creating objects")
	workers := flag.Int("workers", 8, "concurrent reconciles of the APIPolicy controller")
	qps := flag.Float64("qps", 200, "the manager's client-side QPS limit (cmd/manager's --kube-api-qps default)")
	burst := flag.Int("burst", 400, "the manager's client-side burst (cmd/manager's --kube-api-burst default)")
	mtlsConsumers := flag.Int("mtls-consumers", 0, "measure one mTLS policy with this many consumers instead")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.BoolVar(&precreate, "precreate", false, "create the routes and policies before the manager starts, and time the manager's start until all are Enforced")
	flag.StringVar(&heapProfile, "heapprofile", "", "write a heap profile of the steady state (after GC) to this file")
	flag.StringVar(&apiserverProfile, "apiserverprofile", "", "write a CPU profile of the kube-apiserver, taken from the first create for -apiserverprofile-seconds, to this file")
	flag.DurationVar(&apiserverProfileFor, "apiserverprofile-seconds", 20*time.Second, "how long -apiserverprofile samples")
	flag.Parse()
	if heapProfile != "" {
		// Finer than the default 512 KiB, so that per-object structures show.
		runtime.MemProfileRate = 4096
	}
	if precreate && *mtlsConsumers > 0 {
		fmt.Fprintln(os.Stderr, "-precreate and -mtls-consumers measure different things; give one")
		os.Exit(2)
	}
	if err := run(*n, *clients, *workers, float32(*qps), *burst, *timeout, *mtlsConsumers); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// heapProfile is the -heapprofile file; a profile of the heap before the
// creates goes beside it, with ".before" appended (for pprof -diff_base).
var heapProfile string

// precreate is -precreate: measure a cold start over existing objects.
var precreate bool

// apiserverProfile is the -apiserverprofile file, apiserverProfileFor how
// long it samples.
var (
	apiserverProfile    string
	apiserverProfileFor time.Duration
)

// profileAPIServer fetches a CPU profile of the kube-apiserver (its
// /debug/pprof, on by default) into apiserverProfile; the returned channel
// reports when it is written.
func profileAPIServer(ctx context.Context, cfg *rest.Config) <-chan error {
	done := make(chan error, 1)
	if apiserverProfile == "" {
		close(done)
		return done
	}
	go func() { done <- testenv.ProfileAPIServer(ctx, cfg, apiserverProfileFor, apiserverProfile) }()
	return done
}

// writeHeapProfile writes a heap profile to path when -heapprofile is set.
func writeHeapProfile(path string) error {
	if heapProfile == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		return err
	}
	return f.Close()
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// heapLive is the bytes of live objects (HeapAlloc, after a GC): HeapInuse
// less the free space of the spans in use.
func heapLive() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func run(n, clients, workers int, qps float32, burst int, timeout time.Duration, mtlsConsumers int) error {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel)))
	env, err := testenv.Start(testenv.WithEnvoyGatewayCRDs())
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel() // stops the manager before the control plane
	cfg := *env.Config
	cfg.QPS, cfg.Burst = 500, 1000 // the bench measures apiwarden, not client-side throttling
	k8s, err := client.NewWithWatch(&cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	const ns = "bench"
	for _, name := range []string{ns, "apiwarden-system"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			return err
		}
	}
	mcfg := cfg
	mcfg.QPS, mcfg.Burst = qps, burst
	requests := &requestCounter{}
	mcfg.WrapTransport = requests.wrap
	mgrOpts := ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}}
	mgrOpts.Cache = controllers.CacheOptions()
	mgrOpts.EventBroadcaster = controllers.EventBroadcaster() //nolint:staticcheck // see controllers.EventBroadcaster
	mgr, err := ctrl.NewManager(&mcfg, mgrOpts)
	if err != nil {
		return err
	}
	if err := (&controllers.APIPolicyReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"),
		Renderer: envoygateway.Renderer{}, Authz: render.DefaultAuthzService, Workers: workers}).SetupWithManager(mgr); err != nil {
		return err
	}
	gateway := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: "eg", Listeners: []gatewayv1.Listener{{Name: "https", Protocol: gatewayv1.HTTPSProtocolType, Port: 443,
			TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "edge-cert"}}}}},
	}}
	var precreated time.Duration
	if precreate {
		// Everything exists before the manager starts: what is measured
		// is the manager's cold start over n pairs (an upgrade, a new
		// leader), with the apiserver busy with nothing else.
		if err := k8s.Create(ctx, gateway); err != nil {
			return err
		}
		t := time.Now()
		if err := createObjects(ctx, k8s, ns, n, clients); err != nil {
			return err
		}
		precreated = time.Since(t)
	} else {
		go func() { _ = mgr.Start(ctx) }()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return fmt.Errorf("manager cache did not sync")
		}
		if err := k8s.Create(ctx, gateway); err != nil {
			return err
		}
		time.Sleep(2 * time.Second) // let the CRD watch start the route watches
	}
	runtime.GC()
	base, baseLive := heapInUse(), heapLive()
	if err := writeHeapProfile(heapProfile + ".before"); err != nil {
		return err
	}
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if h := heapInUse(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	if mtlsConsumers > 0 {
		return runMTLS(ctx, k8s, ns, mtlsConsumers, base, &peak, stopSampling, sampled)
	}
	profiled := profileAPIServer(ctx, &cfg)
	cpu0 := cpuTimes()
	start := time.Now()
	created := time.Duration(0)
	if precreate {
		go func() { _ = mgr.Start(ctx) }()
	} else {
		if err := createObjects(ctx, k8s, ns, n, clients); err != nil {
			return err
		}
		created = time.Since(start)
	}
	if err := waitEnforced(ctx, k8s, ns, n, start); err != nil {
		return err
	}
	converged := time.Since(start)
	cpu1 := cpuTimes()
	close(stopSampling)
	<-sampled
	// Steady state: let the Event broadcaster send what it queued.
	time.Sleep(5 * time.Second)
	runtime.GC()
	after, afterLive := heapInUse(), heapLive()
	if err := writeHeapProfile(heapProfile); err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		return err
	}
	watched := 2 * n
	fmt.Printf("policies: %d, routes: %d, rendered objects: %d, clients: %d, reconcile workers: %d, manager QPS/burst: %.0f/%d, GOMAXPROCS: %d\n", n, n, 2*n, clients, workers, qps, burst, runtime.GOMAXPROCS(0))
	if precreate {
		// The manager's writes: one server-side apply per rendered object
		// (2), a status and one Event per policy, at the rate the creates
		// reached before it started.
		writes := 2*n + n + n
		rate := float64(2*n) / precreated.Seconds()
		bound := time.Duration(float64(writes) / rate * float64(time.Second))
		fmt.Printf("routes+policies created before the manager started, in %s (%.0f creates/s)\n", precreated.Round(time.Millisecond), rate)
		fmt.Printf("manager start → all policies Enforced: %s (%.0f policies/s)\n", converged.Round(time.Millisecond), float64(n)/converged.Seconds())
		fmt.Printf("write-bound estimate:           %s (%d writes at the create rate); achieved %.2f× it\n", bound.Round(time.Millisecond), writes, converged.Seconds()/bound.Seconds())
	} else {
		fmt.Printf("create routes+policies (floor): %s\n", created.Round(time.Millisecond))
		fmt.Printf("all policies Enforced:          %s (%.2f× the floor, %.0f policies/s)\n", converged.Round(time.Millisecond), converged.Seconds()/created.Seconds(), float64(n)/converged.Seconds())
		// Every policy costs the apiserver writes beyond the two creates:
		// one server-side apply per rendered object (2), its status and
		// one Event. At the write rate the creates achieved, that many
		// writes take:
		writes := 2*n + 2*n + n + n
		bound := time.Duration(float64(writes) / (float64(2*n) / created.Seconds()) * float64(time.Second))
		fmt.Printf("write-bound estimate:           %s (%d writes at the create rate of %.0f/s); achieved %.2f× it\n", bound.Round(time.Millisecond), writes, float64(2*n)/created.Seconds(), converged.Seconds()/bound.Seconds())
	}
	fmt.Printf("manager requests: %s\n", requests)
	if len(cpu0) > 0 {
		var total time.Duration
		for k, v := range cpu1 {
			total += v - cpu0[k]
		}
		fmt.Printf("CPU from the start of the clock until all Enforced: %.1f s of %.1f s available;", total.Seconds(), converged.Seconds()*float64(runtime.NumCPU()))
		for _, k := range []string{"kube-apiserver", "etcd", "bench (manager + clients)"} {
			fmt.Printf(" %s %.1f s (%.0f%%),", k, (cpu1[k] - cpu0[k]).Seconds(), 100*(cpu1[k]-cpu0[k]).Seconds()/total.Seconds())
		}
		fmt.Println()
	}
	if precreate {
		fmt.Printf("(heap before: this process before the manager started, so the growth includes the manager's fixed costs)\n")
	}
	fmt.Printf("heap in use: before %.1f MiB, peak %.1f MiB, after GC %.1f MiB\n", mib(base), mib(peak.Load()), mib(after))
	fmt.Printf("heap growth per watched object (after GC − before) / %d: %.2f KiB\n", watched, float64(int64(after)-int64(base))/float64(watched)/1024)
	fmt.Printf("of which live objects (HeapAlloc):                  %.2f KiB (the rest is free space in spans still in use)\n", float64(int64(afterLive)-int64(baseLive))/float64(watched)/1024)
	return nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// createObjects creates n HTTPRoutes attached to the Gateway "edge" and n
// APIPolicies (API keys + a per-client rate limit), one for each, from
// clients concurrent clients.
func createObjects(ctx context.Context, k8s client.Client, ns string, n, clients int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				name := fmt.Sprintf("api-%05d", i)
				route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: gatewayv1.HTTPRouteSpec{
					CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
					Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(name + ".example.com")},
					Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
						BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(8080))}}}}}},
				}}
				policy := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: apiwardenv1alpha1.APIPolicySpec{
					TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: name}},
					Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "partners"}}}},
					RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 100, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
				}}
				for _, o := range []client.Object{route, policy} {
					if err := k8s.Create(ctx, o); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// waitEnforced returns once n policies in ns report Enforced=True for their
// current generation. It lists once and then follows a watch (listing every
// policy on a poll would load the apiserver it measures), listing again when
// the watch ends.
func waitEnforced(ctx context.Context, k8s client.WithWatch, ns string, n int, start time.Time) error {
	done := map[string]bool{}
	isEnforced := func(p *apiwardenv1alpha1.APIPolicy) bool {
		c := meta.FindStatusCondition(p.Status.Conditions, apiwardenv1alpha1.ConditionEnforced)
		return c != nil && c.Status == metav1.ConditionTrue && p.Status.ObservedGeneration == p.Generation
	}
	count := func() int {
		k := 0
		for _, ok := range done {
			if ok {
				k++
			}
		}
		return k
	}
	for {
		var list apiwardenv1alpha1.APIPolicyList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for i := range list.Items {
			done[list.Items[i].Name] = isEnforced(&list.Items[i])
		}
		if count() == n {
			return nil
		}
		w, err := k8s.Watch(ctx, &apiwardenv1alpha1.APIPolicyList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		if err != nil {
			return err
		}
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*apiwardenv1alpha1.APIPolicy); ok {
				done[p.Name] = isEnforced(p)
				if count() == n {
					w.Stop()
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("after %s only %d of %d policies are Enforced", time.Since(start).Round(time.Millisecond), count(), n)
		}
	}
}

// cpuTimes returns the CPU time (user + system) used so far by this
// process and by its child processes, the kube-apiserver and etcd, read
// from /proc; nil where /proc is not there.
func cpuTimes() map[string]time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return nil
	}
	out := map[string]time.Duration{"bench (manager + clients)": time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime stime: fields 14 and 15, counted
		// after the comm, which may hold spaces.
		open, closing := strings.IndexByte(string(data), '('), strings.LastIndexByte(string(data), ')')
		if open < 0 || closing < open {
			continue
		}
		comm, rest := string(data[open+1:closing]), strings.Fields(string(data[closing+1:]))
		if len(rest) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(rest[1])
		if ppid != self || (comm != "kube-apiserver" && comm != "etcd") {
			continue
		}
		utime, _ := strconv.ParseInt(rest[11], 10, 64)
		stime, _ := strconv.ParseInt(rest[12], 10, 64)
		out[comm] += time.Duration(utime+stime) * (time.Second / clockTicks)
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// requestCounter counts the manager's requests by method and resource
// (watches apart), on its HTTP transports.
type requestCounter struct{ counts sync.Map } // "METHOD resource[/subresource]" -> *atomic.Int64

func (r *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Query().Get("watch") != "true" {
			c, _ := r.counts.LoadOrStore(req.Method+" "+resourceOf(req.URL.Path), new(atomic.Int64))
			c.(*atomic.Int64).Add(1)
		}
		return rt.RoundTrip(req)
	})
}

// String lists the counts, sorted.
func (r *requestCounter) String() string {
	var out []string
	r.counts.Range(func(k, v any) bool {
		out = append(out, fmt.Sprintf("%s: %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// resourceOf reduces an API path to its resource and subresource:
// /apis/g/v/namespaces/ns/r/name/status -> r/status.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) > 2 && parts[0] == "api":
		parts = parts[2:] // api, v1
	case len(parts) > 3 && parts[0] == "apis":
		parts = parts[3:] // apis, group, version
	default:
		return path // discovery
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	switch {
	case len(parts) >= 3:
		return parts[0] + "/" + parts[2]
	case len(parts) >= 1:
		return parts[0]
	}
	return path
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// runMTLS measures one Gateway-level policy asking for client certificates
// for consumers consumers.
func runMTLS(ctx context.Context, k8s client.Client, ns string, consumers int, base uint64, peak *atomic.Uint64, stopSampling, sampled chan struct{}) error {
	names := make([]string, consumers)
	for i := range names {
		names[i] = fmt.Sprintf("consumer-%05d", i)
	}
	start := time.Now()
	p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "partners"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "Gateway", Name: "edge"}},
		Authentication: &apiwardenv1alpha1.Authentication{MTLS: &apiwardenv1alpha1.MTLSAuthentication{
			IssuerRef: apiwardenv1alpha1.IssuerReference{Name: "partners-ca", Kind: "ClusterIssuer"},
			Clients:   &apiwardenv1alpha1.MTLSClients{Consumers: names},
		}},
	}}
	if err := k8s.Create(ctx, p); err != nil {
		return err
	}
	var certsAt, enforcedAt time.Duration
	for certsAt == 0 || enforcedAt == 0 {
		if certsAt == 0 {
			var list cmv1.CertificateList
			if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return err
			}
			if len(list.Items) == consumers {
				certsAt = time.Since(start)
			}
		}
		if enforcedAt == 0 {
			var got apiwardenv1alpha1.APIPolicy
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
				return err
			}
			if c := meta.FindStatusCondition(got.Status.Conditions, apiwardenv1alpha1.ConditionEnforced); c != nil && c.Status == metav1.ConditionTrue && got.Status.ObservedGeneration == got.Generation && len(got.Status.Certificates) == consumers {
				enforcedAt = time.Since(start)
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("timed out: Certificates after %s, Enforced after %s", certsAt, enforcedAt)
		}
		time.Sleep(250 * time.Millisecond)
	}
	close(stopSampling)
	<-sampled
	time.Sleep(5 * time.Second)
	runtime.GC()
	after := heapInUse()
	fmt.Printf("mTLS consumers: %d (one Gateway-level APIPolicy), GOMAXPROCS: %d\n", consumers, runtime.GOMAXPROCS(0))
	fmt.Printf("all %d Certificates exist:      %s (%.0f Certificates/s)\n", consumers, certsAt.Round(time.Millisecond), float64(consumers)/certsAt.Seconds())
	fmt.Printf("policy Enforced, status listing them: %s\n", enforcedAt.Round(time.Millisecond))
	if precreate {
		fmt.Printf("(heap before: this process before the manager started, so the growth includes the manager's fixed costs)\n")
	}
	fmt.Printf("heap in use: before %.1f MiB, peak %.1f MiB, after GC %.1f MiB (%.2f KiB per consumer)\n", mib(base), mib(peak.Load()), mib(after), float64(int64(after)-int64(base))/float64(consumers)/1024)
	return nil
}
