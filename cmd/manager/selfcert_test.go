package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/testenv"
	"github.com/apiwarden/apiwarden/internal/webhookcert"
)

// webhookConfiguration reads config/webhook/manifests.yaml and points every
// webhook at url (the apiserver calls it directly), without a CA bundle.
func webhookConfiguration(t *testing.T, name, url string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := yaml.Unmarshal(data, vwc); err != nil {
		t.Fatal(err)
	}
	vwc.ObjectMeta = metav1.ObjectMeta{Name: name}
	for i := range vwc.Webhooks {
		u := url + *vwc.Webhooks[i].ClientConfig.Service.Path
		vwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u}
	}
	return vwc
}

// roundRobin forwards loopback TCP connections to the backends in turn, as
// a Service spreads connections over replicas; TLS passes through.
func roundRobin(t *testing.T, backends []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var next atomic.Uint64
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", backends[next.Add(1)%uint64(len(backends))])
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

// TestSelfManagedCertificateRotatesUnderLoad runs two webhook replicas with
// --webhook-cert-mode=self-managed and lifetimes short enough that both the
// serving certificate and the CA rotate several times, behind a loopback
// round-robin proxy that the real kube-apiserver calls. A stream of dry-run
// Service creates (compliant ones admitted, exposed plain-HTTP ones denied
// by a Deny baseline, so every request is decided by the webhook) must see
// zero failed admissions; each replica, dialled directly with the bundle
// in the webhook configuration, must always present a certificate that
// bundle trusts, and must serve every rotation; both stay ready throughout,
// and no key reaches their logs.
func TestSelfManagedCertificateRotatesUnderLoad(t *testing.T) {
	cp := testenv.ForTest(t)
	kubeconfig, k8s := cp.Kubeconfig, cp.Client
	ctx := context.Background()
	for _, ns := range []string{"apiwarden-system", "load"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := k8s.Create(ctx, &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "load"}, Spec: apiwardenv1alpha1.APIBaselineSpec{
		EnforcementAction: apiwardenv1alpha1.EnforcementActionDeny,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "load"}},
	}}); err != nil {
		t.Fatal(err)
	}

	addrs := freeAddrs(t, 6) // webhook, probes, metrics for each replica
	lb := roundRobin(t, []string{addrs[0], addrs[3]})
	const vwcName = "apiwarden-validating-webhook-configuration"
	if err := k8s.Create(ctx, webhookConfiguration(t, vwcName, "https://"+lb)); err != nil {
		t.Fatal(err)
	}
	var replicas []*replica
	for i, name := range []string{"replica-a", "replica-b"} {
		port := addrs[3*i][strings.LastIndex(addrs[3*i], ":")+1:]
		replicas = append(replicas, startReplica(t, name, kubeconfig, addrs[3*i+1],
			"--roles=webhook", "--namespace=apiwarden-system",
			"--webhook-port="+port, "--metrics-bind-address="+addrs[3*i+2],
			"--webhook-cert-mode=self-managed", "--webhook-secret=webhook-cert",
			"--webhook-configuration="+vwcName, "--webhook-cert-hosts=127.0.0.1",
			"--webhook-cert-validity=6s", "--webhook-ca-validity=15s", "--webhook-ca-propagation=1s",
		))
	}
	for _, r := range replicas {
		r.waitReady(t, 90*time.Second)
	}

	secret := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "apiwarden-system", Name: "webhook-cert"}, secret); err != nil {
		t.Fatal(err)
	}
	if secret.Type != corev1.SecretTypeTLS || secret.Labels[webhookcert.LabelManagedBy] != "apiwarden" {
		t.Errorf("the Secret has type %s and labels %v, want kubernetes.io/tls labelled as apiwarden's", secret.Type, secret.Labels)
	}

	// Requests stop being sent at the end of the run; those in flight
	// finish with no deadline of the test's own.
	const run = 30 * time.Second
	end := time.Now().Add(run)
	running := func() bool { return time.Now().Before(end) }
	var wg sync.WaitGroup

	// The admission stream through the apiserver.
	var admitted, denied atomic.Int64
	var failMu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	for w := range 4 {
		wg.Go(func() {
			for i := 0; running(); i++ {
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "load", Name: fmt.Sprintf("svc-%d-%d", w, i)},
					Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
				exposed := i%2 == 1
				if exposed {
					svc.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}
				}
				err := k8s.Create(ctx, svc, client.DryRunAll)
				switch {
				case !exposed && err == nil:
					admitted.Add(1)
				case exposed && apierrors.IsForbidden(err) && strings.Contains(err.Error(), "apiwarden"):
					denied.Add(1)
				default:
					fail("%s (exposed=%v): %v", svc.Name, exposed, err)
				}
			}
		})
	}

	// Each replica dialled directly with the bundle the apiserver trusts.
	served := make([]map[string]bool, len(replicas))
	bundles := map[string]bool{}
	var notReady []string
	wg.Go(func() {
		for i := range served {
			served[i] = map[string]bool{}
		}
		for running() {
			vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := k8s.Get(ctx, client.ObjectKey{Name: vwcName}, vwc); err != nil {
				fail("reading the webhook configuration: %v", err)
				return
			}
			bundle := vwc.Webhooks[0].ClientConfig.CABundle
			bundles[string(bundle)] = true
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(bundle)
			for i, r := range replicas {
				conn, err := tls.Dial("tcp", addrs[3*i], &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
				if err != nil {
					// The bundle may have moved on since it was read:
					// only a certificate the current bundle rejects too
					// is a failure; any other error (no certificate
					// loaded, connection refused) always is.
					if !errors.As(err, new(*tls.CertificateVerificationError)) || stillRejected(ctx, k8s, vwcName, addrs[3*i]) {
						fail("%s: %v", r.name, err)
					}
					continue
				}
				served[i][conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)] = true
				conn.Close()
				if code := r.readyz(); code != http.StatusOK {
					notReady = append(notReady, fmt.Sprintf("%s: readyz %d", r.name, code))
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	wg.Wait()

	t.Logf("%d admitted and %d denied as expected in %s; serving certificates seen: %d on %s, %d on %s; CA bundles seen: %d",
		admitted.Load(), denied.Load(), run, len(served[0]), replicas[0].name, len(served[1]), replicas[1].name, len(bundles))
	for _, f := range failures {
		t.Error(f)
	}
	if admitted.Load() == 0 || denied.Load() == 0 {
		t.Error("the stream did not exercise both verdicts")
	}
	// 30 s of 6 s certificates renewed at 4 s, and a 15 s CA renewed at 10 s.
	for i, r := range replicas {
		if len(served[i]) < 5 {
			t.Errorf("%s served %d certificates in %s; want at least 5 rotations seen", r.name, len(served[i]), run)
		}
	}
	if len(bundles) < 3 {
		t.Errorf("%d CA bundles seen in %s; the CA did not rotate", len(bundles), run)
	}
	if len(notReady) > 0 {
		t.Errorf("replicas were not ready during rotation: %v", notReady)
	}

	// No key material in the logs.
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		logs := r.logs.String()
		if strings.Contains(logs, "PRIVATE KEY") {
			t.Errorf("%s logged a PEM private key", r.name)
		}
		for _, k := range []string{webhookcert.KeyCAKey, corev1.TLSPrivateKeyKey} {
			body := bytes.Split(secret.Data[k], []byte("\n"))[1]
			if strings.Contains(logs, string(body[:24])) {
				t.Errorf("%s logged part of %s", r.name, k)
			}
		}
	}
	if renewals := strings.Count(replicas[0].logs.String()+replicas[1].logs.String(), "Renewed the webhook certificate"); renewals < 5 {
		t.Errorf("the replicas logged %d renewals, want at least 5", renewals)
	}
}

// stillRejected dials addr again with the webhook configuration's current
// bundle and reports whether its certificate is still untrusted.
func stillRejected(ctx context.Context, k8s client.Client, vwcName, addr string) bool {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: vwcName}, vwc); err != nil {
		return false
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(vwc.Webhooks[0].ClientConfig.CABundle)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		return errors.As(err, new(*tls.CertificateVerificationError))
	}
	conn.Close()
	return false
}
