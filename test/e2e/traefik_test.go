// Package e2e sends real HTTP traffic through a real gateway that enforces
// what apiwarden rendered: Traefik Proxy, built from its Go module (pinned
// in hack/traefik/go.mod), run out of cluster against an envtest
// kube-apiserver with its Kubernetes Ingress and CRD providers, in front of
// a backend on loopback, with the apiwarden manager (controllers and authz,
// --gateway=traefik) programming it.
package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// traefikCRDs is the file of Traefik's CRDs in its module, at the version
// hack/traefik/go.mod pins.
func traefikCRDs(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/traefik/traefik/v3")
	cmd.Dir = filepath.Join(root, "hack", "traefik")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("locating the Traefik module: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("locating the Traefik module: %v (%s)", err, out)
	}
	return filepath.Join(mod.Dir, "docs", "content", "reference", "dynamic-configuration", "kubernetes-crd-definition-v1.yml")
}

// pki makes a CA and certificates it signs.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &pki{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for dnsNames (a server) or, with
// none, a client certificate named cn.
func (ca *pki) issue(t *testing.T, cn string, dnsNames ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageClientAuth
	if len(dnsNames) > 0 {
		usage = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: dnsNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// backend is the API behind the gateway: it records the headers of the last
// request it served.
type backend struct {
	mu   sync.Mutex
	last http.Header
	hits int
	port int
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.last = r.Header.Clone()
		b.hits++
		b.mu.Unlock()
		_, _ = io.WriteString(w, "orders\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

func (b *backend) lastHeaders() http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func (b *backend) hitCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// process runs a binary until the test ends, its output in a file printed
// when the test fails.
func process(t *testing.T, name, path string, env []string, args ...string) chan error {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		f.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			if len(data) > 40000 {
				data = data[len(data)-40000:]
			}
			t.Logf("%s output (last 40 kB):\n%s", name, data)
		}
	})
	return exited
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func until(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// TestTraefikEnforcesWhatApiwardenRendered: the apiwarden manager renders
// two APIPolicies for Traefik (--gateway=traefik), and requests through
// Traefik to a backend on loopback show each protection at work: plain HTTP
// redirected to HTTPS, no key refused with 401, a valid key let through
// with the consumer header reaching the backend and the key not, requests
// over the limit refused with 429, the old key accepted during its grace
// period after a rotation and refused after it, a TLS version below the
// policy's minimum refused, and a client without a certificate refused at
// the handshake where mTLS is required.
func TestTraefikEnforcesWhatApiwardenRendered(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	traefik, err := testenv.Tool("traefik")
	if err != nil {
		t.Fatal(err)
	}
	crds := traefikCRDs(t, root)
	cp := testenv.ForTest(t, func(e *envtest.Environment, _ string) {
		e.CRDInstallOptions.Paths = append(e.CRDInstallOptions.Paths, crds)
	})
	kubeconfig, k8s, dir := cp.Kubeconfig, cp.Client, t.TempDir()
	ctx := context.Background()
	create := func(o client.Object) {
		t.Helper()
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}

	// The backend, as an ExternalName Service for localhost: EndpointSlices
	// may not hold loopback addresses, and envtest runs no endpoints
	// controller anyway. Traefik proxies to localhost at the Service port.
	be := startBackend(t)
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apiwarden-system"}})
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	create(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
		Ports: []corev1.ServicePort{{Name: "http", Port: int32(be.port)}}}})

	// Certificates: the gateway's, and a CA for client certificates.
	serverCA, clientCA := newCA(t, "e2e-server-ca"), newCA(t, "e2e-client-ca")
	crt, crtKey := serverCA.issue(t, "shop", "shop.example.com", "partners.example.com", "dry.example.com", "enforce.example.com")
	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: crtKey}})
	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "partners-ca"}, Data: map[string][]byte{"ca.crt": clientCA.pem}})

	ingress := func(name, host string) *networkingv1.Ingress {
		return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: networkingv1.IngressSpec{
			TLS: []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: "shop-tls"}},
			Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: "orders", Port: networkingv1.ServiceBackendPort{Number: int32(be.port)}}}}}}}}}}}
	}
	create(ingress("orders", "shop.example.com"))
	create(ingress("partners", "partners.example.com"))
	create(&apiwardenv1alpha1.APIKeySet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop-keys"}, Spec: apiwardenv1alpha1.APIKeySetSpec{
		KeyPrefix: "shop",
		Rotation:  &apiwardenv1alpha1.Rotation{Every: &metav1.Duration{Duration: 720 * time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Minute}},
		Consumers: []apiwardenv1alpha1.Consumer{{Name: "mobile-app"}},
	}})
	const limit = 5
	orders := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders-api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{{Group: networkingv1.GroupName, Kind: "Ingress", Name: "orders"}},
		TLS:        &apiwardenv1alpha1.TLSPolicy{MinVersion: apiwardenv1alpha1.TLSVersion12, HTTPRedirect: apiwardenv1alpha1.FeatureEnabled},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{
			KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "shop-keys"}}, Header: "X-API-Key"}},
		RateLimit: &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyConsumer, Requests: limit, Unit: apiwardenv1alpha1.RateLimitUnitMinute}}},
	}}
	create(orders)
	partners := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "partners-api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{{Group: networkingv1.GroupName, Kind: "Ingress", Name: "partners"}},
		TLS:        &apiwardenv1alpha1.TLSPolicy{MinVersion: apiwardenv1alpha1.TLSVersion13},
		Authentication: &apiwardenv1alpha1.Authentication{MTLS: &apiwardenv1alpha1.MTLSAuthentication{
			IssuerRef:      apiwardenv1alpha1.IssuerReference{Name: "partners", Kind: "Issuer"},
			TrustBundleRef: &apiwardenv1alpha1.TrustBundleReference{Kind: "Secret", Name: "partners-ca"},
		}},
	}}
	create(partners)

	// The apiwarden manager, programming Traefik.
	authzHTTP := freePort(t)
	managerBin, err := testenv.BuildBinary("./cmd/manager", dir)
	if err != nil {
		t.Fatal(err)
	}
	probe := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mgrExited := process(t, "manager", managerBin, []string{"KUBECONFIG=" + kubeconfig},
		"--roles=controllers,authz", "--namespace=apiwarden-system", "--leader-elect=false", "--gateway=traefik",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", freePort(t)), "--health-probe-bind-address="+probe,
		fmt.Sprintf("--authz-grpc-bind-address=127.0.0.1:%d", freePort(t)), fmt.Sprintf("--authz-http-bind-address=127.0.0.1:%d", authzHTTP),
		fmt.Sprintf("--authz-forward-auth-url=http://127.0.0.1:%d", authzHTTP),
	)
	for _, p := range []*apiwardenv1alpha1.APIPolicy{orders, partners} {
		until(t, "APIPolicy "+p.Name+" to be enforced", 60*time.Second, func() bool {
			select {
			case err := <-mgrExited:
				mgrExited <- err // for the cleanup, which waits on it
				t.Fatalf("the manager exited: %v", err)
			default:
			}
			got := &apiwardenv1alpha1.APIPolicy{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
				return false
			}
			c := meta.FindStatusCondition(got.Status.Conditions, apiwardenv1alpha1.ConditionEnforced)
			return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == got.Generation
		})
	}

	// Traefik, with its Kubernetes providers reading the envtest apiserver.
	web, websecure, ping := freePort(t), freePort(t), freePort(t)
	trExited := process(t, "traefik", traefik, []string{"KUBECONFIG=" + kubeconfig},
		fmt.Sprintf("--entryPoints.web.address=127.0.0.1:%d", web),
		fmt.Sprintf("--entryPoints.websecure.address=127.0.0.1:%d", websecure),
		fmt.Sprintf("--entryPoints.traefik.address=127.0.0.1:%d", ping),
		"--ping=true", "--providers.kubernetesingress=true", "--providers.kubernetesingress.allowExternalNameServices=true", "--providers.kubernetescrd=true",
		"--global.checkNewVersion=false", "--global.sendAnonymousUsage=false", "--log.level=DEBUG",
	)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(serverCA.pem)
	httpsClient := func(host string, conf func(*tls.Config)) *http.Client {
		c := &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
		if conf != nil {
			conf(c)
		}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: c, DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", websecure))
			},
		}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	shop := httpsClient("shop.example.com", nil)
	get := func(c *http.Client, method, url, key string) (*http.Response, error) {
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			return nil, err
		}
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, nil
	}
	status := func(c *http.Client, method, url, key string) int {
		resp, err := get(c, method, url, key)
		if err != nil {
			return 0
		}
		return resp.StatusCode
	}
	secretKey := func() (string, string) {
		s := &corev1.Secret{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "shop-keys-mobile-app"}, s); err != nil {
			return "", ""
		}
		return string(s.Data[keystore.KeyField]), string(s.Data[keystore.KeyIDField])
	}
	key, keyID := secretKey()
	if key == "" {
		t.Fatal("no key delivered")
	}
	// Traefik has read the configuration once the route answers 401
	// without a key (404 before).
	until(t, "Traefik to serve the orders Ingress", 60*time.Second, func() bool {
		select {
		case err := <-trExited:
			trExited <- err // for the cleanup, which waits on it
			t.Fatalf("Traefik exited: %v", err)
		default:
		}
		return status(shop, http.MethodGet, "https://shop.example.com/v1/orders", "") == http.StatusUnauthorized
	})

	// A forward-auth Middleware written by hand for a policy the authz
	// service does not know: refused (403) as it is, let through when its
	// URL says the policy is a DryRun one, as the renderer writes it for
	// DryRun policies. Traefik passes the URL's query on.
	for _, probe := range []struct{ name, query string }{{"enforce", ""}, {"dry", "?mode=DryRun"}} {
		mw := &unstructured.Unstructured{}
		mw.SetAPIVersion("traefik.io/v1alpha1")
		mw.SetKind("Middleware")
		mw.SetNamespace("shop")
		mw.SetName("probe-" + probe.name)
		if err := unstructured.SetNestedField(mw.Object, fmt.Sprintf("http://127.0.0.1:%d/v1/forward-auth/shop/no-such-policy%s", authzHTTP, probe.query), "spec", "forwardAuth", "address"); err != nil {
			t.Fatal(err)
		}
		create(mw)
		in := ingress("probe-"+probe.name, probe.name+".example.com")
		in.Annotations = map[string]string{"traefik.ingress.kubernetes.io/router.middlewares": "shop-probe-" + probe.name + "@kubernetescrd",
			"traefik.ingress.kubernetes.io/router.tls": "true", "traefik.ingress.kubernetes.io/router.entrypoints": "websecure"}
		create(in)
	}
	lastProbe := 0
	t.Cleanup(func() { t.Logf("last probe answer: %d", lastProbe) })
	until(t, "Traefik to serve the probe Ingresses", 60*time.Second, func() bool {
		lastProbe = status(httpsClient("enforce.example.com", nil), http.MethodGet, "https://enforce.example.com/", "")
		return lastProbe == http.StatusForbidden
	})
	if code := status(httpsClient("dry.example.com", nil), http.MethodGet, "https://dry.example.com/", ""); code != http.StatusOK {
		t.Errorf("forward-auth with mode=DryRun for a policy the service does not know: %d, want 200", code)
	}

	// Plain HTTP is redirected to HTTPS.
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for method, want := range map[string]int{http.MethodGet: http.StatusMovedPermanently, http.MethodPost: http.StatusPermanentRedirect} {
		req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d/v1/orders", web), nil)
		req.Host = "shop.example.com"
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || !strings.HasPrefix(resp.Header.Get("Location"), "https://shop.example.com") {
			t.Errorf("plain-HTTP %s: %d to %q, want %d to https://shop.example.com", method, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}

	// A valid key reaches the backend, which sees the consumer and not the key.
	resp, err := get(shop, http.MethodGet, "https://shop.example.com/v1/orders", key)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a valid key: %v %v, want 200", resp, err)
	}
	h := be.lastHeaders()
	if h.Get("X-Apiwarden-Consumer") != "mobile-app" || h.Get("X-Apiwarden-Key-Id") != keyID {
		t.Errorf("the backend saw consumer %q, key id %q; want mobile-app, %s", h.Get("X-Apiwarden-Consumer"), h.Get("X-Apiwarden-Key-Id"), keyID)
	}
	if v := h.Get("X-API-Key"); v != "" {
		t.Error("the API key reached the backend")
	}
	// A forged consumer header is replaced by the authz service's answer.
	req, _ := http.NewRequest(http.MethodGet, "https://shop.example.com/v1/orders", nil)
	req.Header.Set("X-API-Key", key)
	req.Header.Set("X-Apiwarden-Consumer", "admin")
	hits := be.hitCount()
	forged, err := shop.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	forged.Body.Close()
	if forged.StatusCode != http.StatusOK || be.hitCount() != hits+1 {
		t.Fatalf("the request with a forged consumer header got %d and reached the backend %d times, want 200 once", forged.StatusCode, be.hitCount()-hits)
	}
	if got := be.lastHeaders().Get("X-Apiwarden-Consumer"); got != "mobile-app" {
		t.Errorf("a client-sent consumer header reached the backend as %q", got)
	}

	// Over the limit: 429. Two requests were made with the key already.
	var codes []int
	for range limit + 2 {
		codes = append(codes, status(shop, http.MethodGet, "https://shop.example.com/v1/orders", key))
	}
	if codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Errorf("%d requests with one key within a minute of a %d/minute limit got %v; want the last refused with 429", limit+4, limit, codes)
	}

	// Rotation: the old key keeps working during the grace period, then 401.
	ks := &apiwardenv1alpha1.APIKeySet{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "shop-keys"}, ks); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(ks.DeepCopy())
	metav1.SetMetaDataAnnotation(&ks.ObjectMeta, apiwardenv1alpha1.RotateAnnotation, "mobile-app@e2e")
	if err := k8s.Patch(ctx, ks, patch); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	var newKey string
	until(t, "the rotated key", 30*time.Second, func() bool {
		k, id := secretKey()
		newKey = k
		return id != "" && id != keyID
	})
	// The rate limit counts per consumer: wait for the one-minute window
	// to pass before counting on 200s again (it has passed by the end of
	// the grace period).
	until(t, "the new key to be accepted", 75*time.Second, func() bool {
		return status(shop, http.MethodGet, "https://shop.example.com/v1/orders", newKey) == http.StatusOK
	})
	if since := time.Since(rotated); since < 55*time.Second {
		if code := status(shop, http.MethodGet, "https://shop.example.com/v1/orders", key); code != http.StatusOK && code != http.StatusTooManyRequests {
			t.Errorf("the old key %s after the rotation, within its one-minute grace period: %d", since.Round(time.Second), code)
		}
	}
	until(t, "the old key to be refused after its grace period", 90*time.Second, func() bool {
		return status(shop, http.MethodGet, "https://shop.example.com/v1/orders", key) == http.StatusUnauthorized
	})
	// The grace period ends a minute after the new key's creation time,
	// which the status records to the second.
	if since := time.Since(rotated); since < time.Minute-2*time.Second {
		t.Errorf("the old key was refused %s after the rotation, before its one-minute grace period ended", since.Round(time.Second))
	}

	// TLS below the minimum, and no client certificate where one is required.
	tls12 := httpsClient("partners.example.com", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
	if _, err := get(tls12, http.MethodGet, "https://partners.example.com/", ""); err == nil {
		t.Error("a TLS 1.2 client was served by an Ingress whose policy asks for TLS 1.3")
	}
	if _, err := get(httpsClient("partners.example.com", nil), http.MethodGet, "https://partners.example.com/", ""); err == nil {
		t.Error("a client without a certificate was served where mTLS is required")
	}
	clientCrt, clientKey := clientCA.issue(t, "partner-acme")
	pair, err := tls.X509KeyPair(clientCrt, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	withCert := httpsClient("partners.example.com", func(c *tls.Config) { c.Certificates = []tls.Certificate{pair} })
	if code := status(withCert, http.MethodGet, "https://partners.example.com/", ""); code != http.StatusOK {
		t.Errorf("a client with a certificate from the policy's CA got %d, want 200", code)
	}

	// Deleting the policy removes its annotations from the Ingress.
	if err := k8s.Delete(ctx, orders); err != nil {
		t.Fatal(err)
	}
	until(t, "the orders Ingress to lose apiwarden's annotations", 30*time.Second, func() bool {
		ing := &networkingv1.Ingress{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "orders"}, ing); err != nil {
			return false
		}
		for k := range ing.Annotations {
			if strings.HasPrefix(k, "traefik.ingress.kubernetes.io/") {
				return false
			}
		}
		return true
	})
}
