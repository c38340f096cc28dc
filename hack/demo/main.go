// Command demo tells apiwarden's story on a laptop with no cluster: it starts
// a real kube-apiserver and etcd on loopback (the envtest binaries that
// hack/envtest-assets.sh provides), installs the CRDs of apiwarden, Gateway
// API, Envoy Gateway and cert-manager, runs the apiwarden manager with its
// webhook registered in that apiserver, and walks through what apiwarden
// does, printing each step: a Deny baseline, unprotected APIs refused at
// admission, an API key set and a policy that make the route acceptable,
// the gateway configuration rendered for it, real requests to the authz
// service, a key rotation with its grace period, and the coverage summary.
//
// It is what `make demo` runs. It stops everything it started, unless
// --keep (make demo KEEP=1) leaves the control plane and the manager up
// until Ctrl-C, with the kubeconfig path printed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/authz"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

func main() {
	o := options{}
	flag.StringVar(&o.manager, "manager", "bin/manager", "Path of the apiwarden manager binary (make build).")
	flag.StringVar(&o.dir, "dir", ".demo", "Directory for the kubeconfig and the manager's log; emptied first.")
	flag.BoolVar(&o.keep, "keep", false, "Leave the control plane and the manager running at the end, until Ctrl-C.")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	manager string
	dir     string
	keep    bool
}

// The demo's objects.
const (
	ns         = "shop"
	route      = "shop-api"
	keySet     = "shop-keys"
	consumer   = "mobile-app"
	keyHeader  = "X-API-Key"
	baseline   = "demo"
	ownNS      = "apiwarden-system"
	deadline   = 60 * time.Second
	rotateMark = "mobile-app@demo"
	// grace is the rotation's grace period: the shortest apiwarden allows
	// (keys.MinGrace), so the demo waits as little as it can.
	grace = time.Minute
)

// keyPattern matches an apiwarden API key (prefix, 43 base62 characters of
// secret and 6 of checksum); the demo's output must never contain one.
var keyPattern = regexp.MustCompile(`[a-z][a-z0-9]{1,15}_[0-9A-Za-z]{49}`)

type demo struct {
	out      io.Writer
	k8s      client.Client
	authzURL string
	start    time.Time
	step     int
}

func run(ctx context.Context, o options, out io.Writer) error {
	start := time.Now()
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(o.manager); err != nil {
		return fmt.Errorf("the manager binary %s: %w (run `make build`, or `make demo`)", o.manager, err)
	}

	fmt.Fprintln(out, "apiwarden demo: starting a kube-apiserver and etcd on loopback, with the CRDs of apiwarden, Gateway API, Envoy Gateway and cert-manager")
	env, err := testenv.Start(testenv.WithWebhooks(), testenv.WithEnvoyGatewayCRDs())
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	k8s, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ownNS, Labels: map[string]string{"apiwarden.io/exclude": "true"}}}); err != nil {
		return err
	}

	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
			return err
		}
	}
	logPath := filepath.Join(dir, "manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	wh := env.WebhookInstallOptions
	probe := fmt.Sprintf("127.0.0.1:%d", ports[1])
	cmd := exec.Command(o.manager,
		"--roles=controllers,webhook,authz", "--namespace="+ownNS, "--leader-elect=false",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]), "--health-probe-bind-address="+probe,
		fmt.Sprintf("--webhook-port=%d", wh.LocalServingPort), "--webhook-cert-dir="+wh.LocalServingCertDir,
		fmt.Sprintf("--authz-grpc-bind-address=127.0.0.1:%d", ports[2]), fmt.Sprintf("--authz-http-bind-address=127.0.0.1:%d", ports[3]),
		"--shutdown-delay=0s",
	)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: Ctrl-C reaches the demo, which stops the
	// manager before the apiserver it talks to.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the manager: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	fmt.Fprintf(out, "demo: apiwarden manager started (controllers, webhook, authz); its log is %s\n", logPath)
	if err := poll(ctx, exited, "the manager to become ready", func(ctx context.Context) (bool, error) {
		return get(ctx, "http://"+probe+"/readyz", nil) == http.StatusOK, nil
	}); err != nil {
		return err
	}

	d := &demo{out: out, k8s: k8s, authzURL: fmt.Sprintf("http://127.0.0.1:%d", ports[3]), start: start}
	if err := d.story(ctx, exited); err != nil {
		return fmt.Errorf("%w (the manager's log: %s)", err, logPath)
	}
	fmt.Fprintf(out, "\nThe demo took %s.\n", time.Since(start).Round(time.Second))
	if !o.keep {
		fmt.Fprintln(out, "Stopping the manager, kube-apiserver and etcd. `make demo KEEP=1` leaves them running.")
		return nil
	}
	fmt.Fprintf(out, `
The control plane and apiwarden are still running. In another terminal:

  export KUBECONFIG=%s
  kubectl get apibaselines,apipolicies,apikeysets -A
  kubectl -n shop get httproutes,securitypolicies,backendtrafficpolicies,secrets

Press Ctrl-C to stop everything.
`, kubeconfig)
	select {
	case <-ctx.Done():
	case err := <-exited:
		exited <- err
		return fmt.Errorf("the manager stopped on its own (%v); its log is %s", err, logPath)
	}
	return nil
}

// story is the walk-through, step by step.
func (d *demo) story(ctx context.Context, exited chan error) error {
	d.header("An APIBaseline in Deny mode governs the namespace shop")
	d.say("Every API exposed in a namespace labelled apiwarden.io/governed=true must have TLS 1.2+, authentication and a rate limit of at most 100 requests per second; anything else is refused at admission.")
	if err := d.apply(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"apiwarden.io/governed": "true"}}}); err != nil {
		return err
	}
	if err := d.apply(ctx, &apiwardenv1alpha1.APIBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: baseline},
		Spec: apiwardenv1alpha1.APIBaselineSpec{
			EnforcementAction: apiwardenv1alpha1.EnforcementActionDeny,
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"apiwarden.io/governed": "true"}},
			Require: &apiwardenv1alpha1.BaselineRequirements{
				TLS:            &apiwardenv1alpha1.TLSRequirement{MinVersion: apiwardenv1alpha1.TLSVersion12},
				Authentication: &apiwardenv1alpha1.AuthenticationRequirement{Methods: []apiwardenv1alpha1.AuthenticationMethod{apiwardenv1alpha1.AuthenticationMethodAPIKey, apiwardenv1alpha1.AuthenticationMethodJWT}},
				RateLimit:      &apiwardenv1alpha1.RateLimitRequirement{Ceiling: &apiwardenv1alpha1.RequestRate{Requests: 100, Unit: apiwardenv1alpha1.RateLimitUnitSecond}},
			},
		},
	}); err != nil {
		return err
	}
	ingress := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-legacy"},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "shop.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "shop", Port: networkingv1.ServiceBackendPort{Number: 8080}}}}}}}}}},
	}
	// The webhook reads baselines from its own informer: wait until it has
	// this one (a dry run, not shown) so the next step shows its verdict.
	if err := poll(ctx, exited, "the webhook to see the baseline", func(ctx context.Context) (bool, error) {
		err := d.k8s.Create(ctx, ingress.DeepCopy(), client.DryRunAll)
		return apierrors.IsForbidden(err), nil
	}); err != nil {
		return err
	}

	d.header("Unprotected APIs are refused at admission")
	d.say("A Gateway with an HTTPS listener is fine on its own; an Ingress without TLS, and an HTTPRoute that no APIPolicy protects, are not.")
	if err := d.apply(ctx, &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "public"},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "eg", Listeners: []gatewayv1.Listener{{
			Name: "https", Protocol: gatewayv1.HTTPSProtocolType, Port: 443, Hostname: ptr.To(gatewayv1.Hostname("api.shop.example.com")),
			TLS: &gatewayv1.ListenerTLSConfig{Mode: ptr.To(gatewayv1.TLSModeTerminate), CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "shop-tls"}}},
		}}},
	}); err != nil {
		return err
	}
	if err := d.expectDenied(ctx, ingress); err != nil {
		return err
	}
	httpRoute := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: route},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "public"}}},
			Hostnames:       []gatewayv1.Hostname{"api.shop.example.com"},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "shop", Port: ptr.To(gatewayv1.PortNumber(8080))}}}}}},
		},
	}
	if err := d.expectDenied(ctx, httpRoute.DeepCopy()); err != nil {
		return err
	}

	d.header("An APIKeySet and an APIPolicy; the same HTTPRoute is accepted")
	d.say("The key set issues a key for the consumer mobile-app, keeps only its hash, and delivers it in a Secret. The policy asks for API keys from that set in the X-API-Key header and 50 requests per second per consumer; TLS comes from the Gateway's HTTPS listener.")
	if err := d.apply(ctx, &apiwardenv1alpha1.APIKeySet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: keySet},
		Spec: apiwardenv1alpha1.APIKeySetSpec{
			KeyPrefix: "shop",
			Rotation:  &apiwardenv1alpha1.Rotation{Every: &metav1.Duration{Duration: 720 * time.Hour}, GracePeriod: &metav1.Duration{Duration: grace}},
			Consumers: []apiwardenv1alpha1.Consumer{{Name: consumer, Roles: []string{"reader"}}},
		},
	}); err != nil {
		return err
	}
	policy := &apiwardenv1alpha1.APIPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: route},
		Spec: apiwardenv1alpha1.APIPolicySpec{
			TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{{Group: gatewayv1.GroupName, Kind: "HTTPRoute", Name: route}},
			Mode:       apiwardenv1alpha1.PolicyModeEnforce,
			Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{
				KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: keySet}}, Header: keyHeader}},
			RateLimit: &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyConsumer, Requests: 50, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
		},
	}
	if err := d.apply(ctx, policy); err != nil {
		return err
	}
	// As with the baseline: wait (dry runs, not shown) until the webhook's
	// informer has the policy.
	if err := poll(ctx, exited, "the webhook to see the policy", func(ctx context.Context) (bool, error) {
		return d.k8s.Create(ctx, httpRoute.DeepCopy(), client.DryRunAll) == nil, nil
	}); err != nil {
		return err
	}
	if err := d.apply(ctx, httpRoute.DeepCopy()); err != nil {
		return err
	}
	if err := poll(ctx, exited, "the APIPolicy to report Enforced=True", func(ctx context.Context) (bool, error) {
		if err := d.k8s.Get(ctx, client.ObjectKeyFromObject(policy), policy); err != nil {
			return false, nil
		}
		c := meta.FindStatusCondition(policy.Status.Conditions, apiwardenv1alpha1.ConditionEnforced)
		return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == policy.Generation, nil
	}); err != nil {
		return err
	}
	c := meta.FindStatusCondition(policy.Status.Conditions, apiwardenv1alpha1.ConditionEnforced)
	d.say(fmt.Sprintf("APIPolicy %s/%s: Enforced=True (%s): %s", ns, route, c.Reason, c.Message))
	if err := d.rendered(ctx); err != nil {
		return err
	}
	key, keyID, err := d.deliveredKey(ctx, "")
	if err != nil {
		return err
	}
	d.say(fmt.Sprintf("Secret %s/%s-%s delivers the key with id %s (the key itself is never printed; read it with kubectl get secret).", ns, keySet, consumer, keyID))

	d.header("Real requests to apiwarden's forward-auth endpoint")
	d.say("This is the request a gateway (Traefik's ForwardAuth, ingress-nginx's auth-url) sends for each client request; Envoy Gateway uses the gRPC ext_authz server with the same decisions. $KEY is the delivered key.")
	if err := poll(ctx, exited, "the authz service to load the key set", func(ctx context.Context) (bool, error) {
		code, _ := d.forwardAuth(ctx, "/v1/orders", key)
		return code == http.StatusOK, nil
	}); err != nil {
		return err
	}
	if err := d.request(ctx, "no key", "/v1/orders", "", http.StatusUnauthorized); err != nil {
		return err
	}
	if err := d.request(ctx, "the key in the query string, where logs and caches keep it", "/v1/orders?api_key="+key, "", http.StatusBadRequest); err != nil {
		return err
	}
	if err := d.request(ctx, "the key in X-API-Key", "/v1/orders", key, http.StatusOK); err != nil {
		return err
	}

	d.header("A key rotation: the old key works during its grace period, then is refused")
	d.say(fmt.Sprintf("Rotation runs every 720h; the annotation %s=%s asks for one now, as the schedule would. The old key stays valid for the %s grace period.", apiwardenv1alpha1.RotateAnnotation, rotateMark, grace))
	ks := &apiwardenv1alpha1.APIKeySet{}
	if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: keySet}, ks); err != nil {
		return err
	}
	patch := client.MergeFrom(ks.DeepCopy())
	metav1.SetMetaDataAnnotation(&ks.ObjectMeta, apiwardenv1alpha1.RotateAnnotation, rotateMark)
	fmt.Fprintf(d.out, "$ kubectl -n %s annotate apikeyset %s %s=%s\n", ns, keySet, apiwardenv1alpha1.RotateAnnotation, rotateMark)
	if err := d.k8s.Patch(ctx, ks, patch); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "apikeyset.apiwarden.io/%s annotated\n", keySet)
	rotated := time.Now()
	var newKey, newID string
	if err := poll(ctx, exited, "the new key to be delivered", func(ctx context.Context) (bool, error) {
		var err error
		newKey, newID, err = d.deliveredKey(ctx, keyID)
		return err == nil, nil
	}); err != nil {
		return err
	}
	d.say(fmt.Sprintf("The Secret now delivers key %s; key %s is in grace.", newID, keyID))
	if err := poll(ctx, exited, "the authz service to load the new key", func(ctx context.Context) (bool, error) {
		code, _ := d.forwardAuth(ctx, "/v1/orders", newKey)
		return code == http.StatusOK, nil
	}); err != nil {
		return err
	}
	if err := d.request(ctx, "the new key", "/v1/orders", newKey, http.StatusOK); err != nil {
		return err
	}
	if err := d.request(ctx, fmt.Sprintf("the old key, %s after the rotation", time.Since(rotated).Round(time.Second)), "/v1/orders", key, http.StatusOK); err != nil {
		return err
	}
	d.say(fmt.Sprintf("Waiting for the %s grace period to end (the shortest apiwarden allows: a delivered key needs time to reach its consumers)…", grace))
	if err := poll(ctx, exited, "the old key to be refused", func(ctx context.Context) (bool, error) {
		code, _ := d.forwardAuth(ctx, "/v1/orders", key)
		return code == http.StatusUnauthorized, nil
	}); err != nil {
		return err
	}
	if err := d.request(ctx, fmt.Sprintf("the old key, %s after the rotation", time.Since(rotated).Round(time.Second)), "/v1/orders", key, http.StatusUnauthorized); err != nil {
		return err
	}
	if err := d.k8s.Get(ctx, client.ObjectKeyFromObject(ks), ks); err != nil {
		return err
	}
	d.yaml("APIKeySet status (key ids and states only; no key, no hash)", ks.Status)

	d.header("Coverage: the APIBaseline's status")
	b := &apiwardenv1alpha1.APIBaseline{}
	if err := poll(ctx, exited, "the coverage scan to count the protected route", func(ctx context.Context) (bool, error) {
		if err := d.k8s.Get(ctx, client.ObjectKey{Name: baseline}, b); err != nil {
			return false, nil
		}
		return b.Status.Counts != nil && b.Status.Counts.Protected >= 1, nil
	}); err != nil {
		return err
	}
	d.yaml(fmt.Sprintf("$ kubectl get apibaseline %s -o jsonpath='{.status}'", baseline), b.Status)
	return nil
}

func (d *demo) header(title string) {
	d.step++
	fmt.Fprintf(d.out, "\n== %d. %s ==\n\n", d.step, title)
}

func (d *demo) say(text string) { fmt.Fprintln(d.out, text) }

func (d *demo) yaml(title string, v any) {
	data, err := yaml.Marshal(v)
	if err != nil {
		data = []byte(err.Error())
	}
	fmt.Fprintf(d.out, "%s\n%s", title, indent(string(data)))
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "  " + strings.Join(lines, "\n  ") + "\n"
}

// show prints obj as the manifest kubectl would apply.
func (d *demo) show(obj client.Object) error {
	gvk, err := apiutil.GVKForObject(obj, d.k8s.Scheme())
	if err != nil {
		return err
	}
	u, err := toUnstructured(obj)
	if err != nil {
		return err
	}
	u.SetGroupVersionKind(gvk)
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	data, err := yaml.Marshal(u.Object)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "$ kubectl apply -f - <<EOF\n%sEOF\n", data)
	return nil
}

// apply creates obj and prints what kubectl would.
func (d *demo) apply(ctx context.Context, obj client.Object) error {
	if err := d.show(obj); err != nil {
		return err
	}
	if err := d.k8s.Create(ctx, obj); err != nil {
		return fmt.Errorf("creating %s: %w", obj.GetName(), err)
	}
	fmt.Fprintf(d.out, "%s/%s created\n", resourceName(d.k8s, obj), obj.GetName())
	return nil
}

// expectDenied creates obj, which apiwarden must refuse, and prints the
// refusal as kubectl would.
func (d *demo) expectDenied(ctx context.Context, obj client.Object) error {
	if err := d.show(obj); err != nil {
		return err
	}
	err := d.k8s.Create(ctx, obj)
	if err == nil {
		return fmt.Errorf("%s %s was admitted; apiwarden should have refused it", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName())
	}
	if !apierrors.IsForbidden(err) {
		return fmt.Errorf("creating %s: %w", obj.GetName(), err)
	}
	fmt.Fprintf(d.out, "Error from server (Forbidden): error when creating \"STDIN\": %s\n", err.Error())
	return nil
}

func resourceName(k8s client.Client, obj client.Object) string {
	gvk, err := apiutil.GVKForObject(obj, k8s.Scheme())
	if err != nil {
		return obj.GetName()
	}
	m, err := k8s.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return strings.ToLower(gvk.Kind)
	}
	if gvk.Group == "" {
		return m.Resource.Resource
	}
	return m.Resource.Resource + "." + gvk.Group
}

// rendered prints the gateway configuration apiwarden applied for the
// policy: the Envoy Gateway policies owned by it.
func (d *demo) rendered(ctx context.Context) error {
	d.say("What apiwarden applied for it (Envoy Gateway, server-side apply, owned by the APIPolicy):")
	for _, kind := range []string{"SecurityPolicy", "BackendTrafficPolicy", "ClientTrafficPolicy"} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(schema.GroupVersionKind{Group: "gateway.envoyproxy.io", Version: "v1alpha1", Kind: kind + "List"})
		if err := d.k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			return fmt.Errorf("listing %ss: %w", kind, err)
		}
		for _, item := range list.Items {
			spec, _, _ := unstructured.NestedMap(item.Object, "spec")
			d.yaml(fmt.Sprintf("%s %s/%s:", kind, ns, item.GetName()), map[string]any{"spec": spec})
		}
	}
	return nil
}

// deliveredKey reads the delivery Secret, waiting for a key id other than
// notID when set.
func (d *demo) deliveredKey(ctx context.Context, notID string) (key, id string, err error) {
	s := &corev1.Secret{}
	if err := d.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: keySet + "-" + consumer}, s); err != nil {
		return "", "", err
	}
	key, id = string(s.Data[keystore.KeyField]), string(s.Data[keystore.KeyIDField])
	if key == "" || id == "" || id == notID {
		return "", "", errors.New("no new key delivered yet")
	}
	return key, id, nil
}

// forwardAuth sends the request a gateway sends for a client request to
// uri, with key in X-API-Key when set.
func (d *demo) forwardAuth(ctx context.Context, uri, key string) (int, http.Header) {
	h := http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {uri}, "X-Forwarded-For": {"192.0.2.10"}}
	if key != "" {
		h.Set(keyHeader, key)
	}
	var got http.Header
	code := get(ctx, d.authzURL+authz.ForwardAuthPrefix+ns+"/"+route, h, &got)
	return code, got
}

// request makes one forward-auth request, prints it (with $KEY for the
// key) and its answer, and checks the status.
func (d *demo) request(ctx context.Context, what, uri, key string, want int) error {
	// Keys are shown as $KEY, wherever they travel.
	shown, header := keyPattern.ReplaceAllString(uri, "$$KEY"), ""
	if key != "" {
		header = fmt.Sprintf(" -H '%s: $KEY'", keyHeader)
	}
	fmt.Fprintf(d.out, "\n# %s\n$ curl -i %s%s%s/%s -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Uri: %s'%s\n",
		what, d.authzURL, authz.ForwardAuthPrefix, ns, route, shown, header)
	code, h := d.forwardAuth(ctx, uri, key)
	fmt.Fprintf(d.out, "HTTP %d %s\n", code, http.StatusText(code))
	for _, name := range []string{authz.ConsumerHeader, authz.KeyIDHeader, "Www-Authenticate"} {
		if v := h.Get(name); v != "" {
			fmt.Fprintf(d.out, "%s: %s\n", name, v)
		}
	}
	if code != want {
		return fmt.Errorf("%s: got HTTP %d, want %d", what, code, want)
	}
	return nil
}

// get sends a GET with headers and returns the status, 0 when no answer
// came; the response headers go to *got when given.
func get(ctx context.Context, url string, h http.Header, got ...*http.Header) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	for _, g := range got {
		*g = resp.Header
	}
	return resp.StatusCode
}

// poll waits for cond, giving up after a minute or when the manager exits.
func poll(ctx context.Context, exited chan error, what string, cond wait.ConditionWithContextFunc) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, deadline, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			exited <- err
			return false, fmt.Errorf("the manager exited: %v", err)
		default:
		}
		return cond(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

func toUnstructured(obj client.Object) (*unstructured.Unstructured, error) {
	data, err := yaml.Marshal(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		return nil, err
	}
	return u, nil
}
