// Command admission measures apiwarden's admission webhook against a floor —
// a webhook that only decodes the AdmissionReview and allows — in one run, so
// results are ratios that survive a noisy machine:
//
//  1. over HTTPS on loopback with keep-alive, reviews per second and p50/p99
//     latency at several client concurrencies;
//  2. through a real kube-apiserver (envtest): the wall time of creating N
//     Ingresses with no webhook, with the floor, with apiwarden's webhook,
//     with apiwarden in CEL mode (the ValidatingAdmissionPolicy compiled
//     from a CEL-mode baseline and its namespace's params, no webhook), and
//     with the floor of that design (a policy with the same params and
//     binding whose one validation costs next to nothing), one client and
//     eight.
//
// apiwarden's handler reads a real informer cache holding the APIPolicies, as
// in the manager. All traffic stays on 127.0.0.1; every loop is bounded.
//
//	go run ./test/bench/admission -policies 1000 -creates 1000 -requests 20000
//	go run ./test/bench/admission -skip-https   # the apiserver table only
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/testenv"
	"github.com/apiwarden/apiwarden/test/bench/load"
	"github.com/apiwarden/apiwarden/webhooks"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	policies, creates, requests, hosts, runs int
	concurrency                              []int
	duration                                 time.Duration
}

func run() error {
	var cfg config
	conc := flag.String("concurrency", "1,8,64", "HTTPS client concurrencies.")
	flag.IntVar(&cfg.policies, "policies", 1000, "APIPolicies in the cache.")
	flag.IntVar(&cfg.creates, "creates", 1000, "Ingresses created through the apiserver per mode.")
	flag.IntVar(&cfg.requests, "requests", 20000, "HTTPS reviews per handler and concurrency (upper bound).")
	flag.IntVar(&cfg.hosts, "hosts", 20, "Hosts per Ingress.")
	flag.IntVar(&cfg.runs, "runs", 3, "Runs per mode through the apiserver (the median is reported).")
	flag.DurationVar(&cfg.duration, "max-duration", 20*time.Second, "Upper bound on each HTTPS measurement.")
	cpuProfile := flag.String("cpuprofile", "", "Write a CPU profile of the whole run to this file.")
	skipHTTPS := flag.Bool("skip-https", false, "Measure only through the apiserver.")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for _, c := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || n > 256 {
			return fmt.Errorf("-concurrency: %q is not between 1 and 256", c)
		}
		cfg.concurrency = append(cfg.concurrency, n)
	}

	if cfg.creates > cfg.policies {
		return fmt.Errorf("-creates (%d) must not exceed -policies (%d): each created Ingress needs its APIPolicy", cfg.creates, cfg.policies)
	}
	ctrl.SetLogger(logr.Discard())
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	k8s, cache, store, err := startCache(ctx, env.Config)
	if err != nil {
		return err
	}
	if err := seed(ctx, k8s, store, cfg); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "apiwarden-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	caPEM, err := testenv.WriteSelfSignedCert(dir)
	if err != nil {
		return err
	}
	floorCalls, apiwardenCalls := &atomic.Int64{}, &atomic.Int64{}
	// The floor shares apiwarden's review decoding (webhooks.Serve) and then
	// allows: the difference is exactly apiwarden's decision.
	floor := counting(floorCalls, webhooks.Serve(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})))
	aw := counting(apiwardenCalls, webhooks.Handlers(cache, store, webhooks.Options{})[webhooks.IngressPath])
	floorURL, stopFloor, err := serveTLS(floor, dir)
	if err != nil {
		return err
	}
	defer stopFloor()
	awURL, stopAW, err := serveTLS(aw, dir)
	if err != nil {
		return err
	}
	defer stopAW()

	fmt.Printf("# apiwarden admission benchmark\n\n%d APIPolicies in the cache, Ingresses with %d hosts, GOMAXPROCS=%d\n\n",
		cfg.policies, cfg.hosts, goruntime.GOMAXPROCS(0))
	if !*skipHTTPS {
		if err := benchHTTPS(cfg, caPEM, floorURL, awURL); err != nil {
			return err
		}
	}
	return benchAPIServer(ctx, cfg, env.Config, k8s, caPEM, floorURL, awURL, floorCalls, apiwardenCalls)
}

func startCache(ctx context.Context, cfg *rest.Config) (client.Client, client.Reader, *webhooks.Store, error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, nil, nil, err
	}
	if err := webhooks.SetupIndexes(ctx, mgr.GetFieldIndexer(), true); err != nil {
		return nil, nil, nil, err
	}
	store := webhooks.NewStore(mgr.GetAPIReader())
	if err := store.Watch(ctx, mgr.GetCache()); err != nil {
		return nil, nil, nil, err
	}
	go func() { _ = mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return nil, nil, nil, errors.New("cache did not sync")
	}
	k8s, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	return k8s, mgr.GetCache(), store, err
}

// seed creates the governed namespace, a Deny baseline and one APIPolicy per
// Ingress name, and waits until the admission store holds them all.
func seed(ctx context.Context, k8s client.Client, store *webhooks.Store, cfg config) error {
	for _, ns := range []string{"bench", "bench-none", "bench-floor", "bench-cel", "bench-vap"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	if err := k8s.Create(ctx, &apiwardenv1alpha1.APIBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: apiwardenv1alpha1.APIBaselineSpec{
			EnforcementAction: apiwardenv1alpha1.EnforcementActionDeny,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "bench"}},
		},
	}); err != nil {
		return err
	}
	for i := range 2 * cfg.policies {
		ns := "bench"
		if i >= cfg.policies {
			ns = "bench-cel"
		}
		p := &apiwardenv1alpha1.APIPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ing-%d", i%cfg.policies), Namespace: ns},
			Spec: apiwardenv1alpha1.APIPolicySpec{
				TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: "networking.k8s.io", Kind: "Ingress", Name: fmt.Sprintf("ing-%d", i%cfg.policies)}},
				Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}}},
				RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 50, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
			},
		}
		if err := k8s.Create(ctx, p); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	last := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ing-%d", cfg.policies-1), Namespace: "bench"}}
	baseline := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}
	for !store.Synced() || !store.Has(last, true) || !store.Has(baseline, true) {
		if time.Now().After(deadline) {
			return errors.New("the admission store did not receive the policies within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return seedCEL(ctx, k8s, cfg.policies)
}

// seedCEL installs what the manager keeps for a CEL-mode baseline over
// namespace bench-cel: its compiled policy and binding for Ingresses, and
// the namespace's params, computed from its policies as the admission
// params controller computes them.
func seedCEL(ctx context.Context, k8s client.Client, policies int) error {
	b := &apiwardenv1alpha1.APIBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-cel"},
		Spec: apiwardenv1alpha1.APIBaselineSpec{
			Admission:         apiwardenv1alpha1.AdmissionModeCEL,
			EnforcementAction: apiwardenv1alpha1.EnforcementActionDeny,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "bench-cel"}},
		},
	}
	if err := k8s.Create(ctx, b); err != nil {
		return err
	}
	// The client reads a cache: wait until it holds every policy.
	var list apiwardenv1alpha1.APIPolicyList
	for deadline := time.Now().Add(time.Minute); ; {
		if err := k8s.List(ctx, &list, client.InNamespace("bench-cel")); err != nil {
			return err
		}
		if len(list.Items) == policies {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cache holds %d of the %d policies of bench-cel", len(list.Items), policies)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ps := make([]*apiwardenv1alpha1.APIPolicy, len(list.Items))
	for i := range list.Items {
		ps[i] = &list.Items[i]
	}
	snap := exposure.NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{b}, ps, nil)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "bench-cel", Name: exposure.ParamsName}, Data: exposure.Params(snap, ps, "bench-cel")}
	vap, binding, err := exposure.AdmissionPolicy(b, "Ingress", time.Now(), "apiwarden-system")
	if err != nil {
		return err
	}
	// The floor of any policy built this way: the same params, bound the
	// same way, over namespace bench-vap, with one validation that costs
	// next to nothing (it denies only an Ingress named uncovered, so
	// waitCEL can see it enforced).
	floorCM := cm.DeepCopy()
	floorCM.Namespace = "bench-vap"
	floor := vap.DeepCopy()
	floor.Name = "bench-floor-vap"
	floor.Spec.MatchConditions, floor.Spec.Variables = nil, nil
	floor.Spec.Validations = []admissionregistrationv1.Validation{{Expression: "object.metadata.name != 'uncovered'", Message: "floor"}}
	floorBinding := binding.DeepCopy()
	floorBinding.Name, floorBinding.Spec.PolicyName = floor.Name, floor.Name
	floorBinding.Spec.MatchResources.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "bench-vap"}}
	for _, o := range []client.Object{cm, vap, binding, floorCM, floor, floorBinding} {
		if err := k8s.Create(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// waitCEL waits until the apiserver enforces the compiled policy in
// bench-cel and the floor policy in bench-vap: an Ingress named uncovered
// is denied.
func waitCEL(ctx context.Context, cs kubernetes.Interface) error {
	for _, ns := range []string{"bench-cel", "bench-vap"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := cs.NetworkingV1().Ingresses(ns).Create(ctx, ingress(ns, "uncovered", 1), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the apiserver did not enforce the policy of %s within 30s (last answer: %v)", ns, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func ingress(ns, name string, hosts int) *networkingv1.Ingress {
	in := &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
	}
	for h := range hosts {
		host := fmt.Sprintf("h%d.%s.example.com", h, name)
		in.Spec.Rules = append(in.Spec.Rules, networkingv1.IngressRule{Host: host})
		in.Spec.TLS = append(in.Spec.TLS, networkingv1.IngressTLS{Hosts: []string{host}, SecretName: "tls"})
	}
	return in
}

func counting(n *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

func serveTLS(h http.Handler, certDir string) (string, func(), error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return "https://" + l.Addr().String() + webhooks.IngressPath, func() { _ = srv.Close() }, nil
}

func reviewBody(obj runtime.Object) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("bench"), Operation: admissionv1.Create, Namespace: "bench",
			Kind:   metav1.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
			Object: runtime.RawExtension{Raw: raw},
		},
	})
}

// send posts reviews from cfg.clients workers, each with its own keep-alive
// connection, at most cfg.requests of them for at most cfg.duration, and
// checks each answer allows.
func send(cfg config, caPEM []byte, url string, body []byte, c int) (load.Result, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	clients := make([]*http.Client, c)
	for w := range clients {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		clients[w] = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	return load.Run(load.Options{Requests: cfg.requests, Clients: c, Duration: cfg.duration}, func(w, _ int) error {
		resp, err := clients[w].Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return err
		}
		if out.Response == nil || !out.Response.Allowed {
			return fmt.Errorf("review not allowed: %+v", out.Response)
		}
		return nil
	})
}

func benchHTTPS(cfg config, caPEM []byte, floorURL, awURL string) error {
	// An Ingress in the middle of the policy set, protected by its policy:
	// apiwarden runs the whole decision and admits.
	body, err := reviewBody(ingress("bench", fmt.Sprintf("ing-%d", cfg.policies/2), cfg.hosts))
	if err != nil {
		return err
	}
	fmt.Println("## Webhook over HTTPS on loopback (keep-alive)")
	fmt.Println()
	fmt.Println("| clients | floor reviews/s | floor p50 | floor p99 | apiwarden reviews/s | apiwarden p50 | apiwarden p99 | apiwarden / floor throughput |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range cfg.concurrency {
		// Warm both handlers and their connections, then measure them
		// back to back so both see the same machine.
		for _, u := range []string{floorURL, awURL} {
			if _, err := send(config{requests: 200, duration: cfg.duration}, caPEM, u, body, c); err != nil {
				return err
			}
		}
		// Three alternating rounds; each handler reports its median round.
		var fs, as []load.Result
		for range 3 {
			f, err := send(cfg, caPEM, floorURL, body, c)
			if err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			a, err := send(cfg, caPEM, awURL, body, c)
			if err != nil {
				return fmt.Errorf("apiwarden: %w", err)
			}
			fs, as = append(fs, f), append(as, a)
		}
		f, a := load.Median(fs), load.Median(as)
		fmt.Printf("| %d | %.0f | %s | %s | %.0f | %s | %s | %.2f |\n", c, f.Rate(), load.Micros(f.P50), load.Micros(f.P99), a.Rate(), load.Micros(a.P50), load.Micros(a.P99), a.Rate()/f.Rate())
	}
	fmt.Println()
	return nil
}

func benchAPIServer(ctx context.Context, cfg config, restCfg *rest.Config, k8s client.Client, caPEM []byte, floorURL, awURL string, floorCalls, awCalls *atomic.Int64) error {
	rc := rest.CopyConfig(restCfg)
	rc.QPS, rc.Burst = 10000, 10000 // measure the apiserver, not client-side throttling
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	type mode struct {
		name, ns, url string
		calls         *atomic.Int64
	}
	modes := []mode{{"no webhook", "bench-none", "", nil}, {"floor webhook", "bench-floor", floorURL, floorCalls}, {"apiwarden webhook", "bench", awURL, awCalls},
		{"apiwarden CEL", "bench-cel", "", nil}, {"floor VAP", "bench-vap", "", nil}}
	if err := waitCEL(ctx, cs); err != nil {
		return err
	}

	fmt.Printf("## %d Ingress creates through kube-apiserver (envtest), median of %d runs per mode\n\n", cfg.creates, cfg.runs)
	fmt.Println("| clients | no admission | floor webhook | apiwarden webhook | apiwarden CEL | floor VAP | floor / none | webhook / none | CEL / none | CEL / webhook | floor VAP / none | CEL / floor VAP |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, clients := range []int{1, 8} {
		// Each mode runs -runs times, in the order A B C D D C B A A B …,
		// and reports its median run, so neither warm-up nor drift
		// favours one.
		runs := map[string][]time.Duration{}
		var order []mode
		for r := range cfg.runs {
			ms := slices.Clone(modes)
			if r%2 == 1 {
				slices.Reverse(ms)
			}
			order = append(order, ms...)
		}
		for _, m := range order {
			if err := installWebhook(ctx, k8s, cs, m.ns, m.url, caPEM, m.calls); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			d, err := createAll(ctx, cs, m.ns, cfg, clients)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			runs[m.name] = append(runs[m.name], d)
			if err := cs.NetworkingV1().Ingresses(m.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				return err
			}
			if err := waitEmpty(ctx, cs, m.ns); err != nil {
				return err
			}
		}
		median := func(ds []time.Duration) time.Duration {
			slices.Sort(ds)
			return ds[len(ds)/2]
		}
		none, fl, aw, cel, fv := median(runs["no webhook"]), median(runs["floor webhook"]), median(runs["apiwarden webhook"]), median(runs["apiwarden CEL"]), median(runs["floor VAP"])
		fmt.Printf("| %d | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× | %.2f× |\n", clients, none.Seconds(), fl.Seconds(), aw.Seconds(), cel.Seconds(), fv.Seconds(),
			fl.Seconds()/none.Seconds(), aw.Seconds()/none.Seconds(), cel.Seconds()/none.Seconds(), cel.Seconds()/aw.Seconds(), fv.Seconds()/none.Seconds(), cel.Seconds()/fv.Seconds())
	}
	fmt.Println()
	return nil
}

// installWebhook points one ValidatingWebhookConfiguration at url for
// Ingresses in namespace ns (none when url is empty), and waits until the
// apiserver calls it.
func installWebhook(ctx context.Context, k8s client.Client, cs kubernetes.Interface, ns, url string, caPEM []byte, calls *atomic.Int64) error {
	const name = "bench"
	_ = k8s.Delete(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if url == "" {
		return nil
	}
	fail, none := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone
	timeout := int32(5)
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "ingresses.bench.apiwarden.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{"networking.k8s.io"}, APIVersions: []string{"v1"}, Resources: []string{"ingresses"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if err := k8s.Create(ctx, vwc); err != nil {
		return err
	}
	// The apiserver picks configurations up asynchronously: dry-run creates
	// until the webhook sees one.
	before := calls.Load()
	deadline := time.Now().Add(30 * time.Second)
	for calls.Load() == before {
		if time.Now().After(deadline) {
			return errors.New("the apiserver did not call the webhook within 30s")
		}
		probe := ingress(ns, "ing-0", 1)
		_, _ = cs.NetworkingV1().Ingresses(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// waitEmpty waits until a namespace holds no Ingress, so the next run can
// create the same names.
func waitEmpty(ctx context.Context, cs kubernetes.Interface, ns string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		list, err := cs.NetworkingV1().Ingresses(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ingresses in %s were not deleted within a minute", ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createAll(ctx context.Context, cs kubernetes.Interface, ns string, cfg config, clients int) (time.Duration, error) {
	objs := make([]*networkingv1.Ingress, cfg.creates)
	for i := range objs {
		objs[i] = ingress(ns, fmt.Sprintf("ing-%d", i), cfg.hosts)
	}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(objs) {
					return
				}
				if _, err := cs.NetworkingV1().Ingresses(ns).Create(ctx, objs[i], metav1.CreateOptions{}); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return time.Since(start), nil
}
