package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name        string
		args        []string
		wantRoles   []string
		wantErr     string
		wantMetrics string
	}{
		{name: "defaults run every role", args: nil, wantRoles: []string{"controllers", "webhook", "authz"}},
		{name: "one role", args: []string{"--roles=webhook"}, wantRoles: []string{"webhook"}},
		{name: "roles with spaces and duplicates", args: []string{"--roles= authz, controllers ,authz"}, wantRoles: []string{"authz", "controllers"}},
		{name: "unknown role", args: []string{"--roles=controllers,proxy"}, wantErr: `unknown role "proxy"`},
		{name: "no role", args: []string{"--roles=,"}, wantErr: "at least one of"},
		{name: "bad webhook port", args: []string{"--webhook-port=70000"}, wantErr: "is not a TCP port"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "unknown flag", args: []string{"--no-such-flag"}, wantErr: "flag provided but not defined"},
		{name: "self-managed certificate", args: []string{"--webhook-cert-mode=self-managed"}, wantRoles: []string{"controllers", "webhook", "authz"}},
		{name: "unknown certificate mode", args: []string{"--webhook-cert-mode=vault"}, wantErr: `"vault" is neither files nor self-managed`},
		{name: "CA shorter than two certificates", args: []string{"--webhook-cert-mode=self-managed", "--webhook-cert-validity=720h", "--webhook-ca-validity=1000h"}, wantErr: "shorter than twice the certificate validity"},
		{name: "propagation longer than a sixth", args: []string{"--webhook-cert-mode=self-managed", "--webhook-cert-validity=1h", "--webhook-ca-propagation=20m"}, wantErr: "at most a sixth"},
		{name: "secure metrics on 8443", args: nil, wantRoles: []string{"controllers", "webhook", "authz"}, wantMetrics: ":8443"},
		{name: "plain metrics on 8080", args: []string{"--metrics-secure=false"}, wantRoles: []string{"controllers", "webhook", "authz"}, wantMetrics: ":8080"},
		{name: "metrics address given", args: []string{"--metrics-secure=false", "--metrics-bind-address=127.0.0.1:9090"}, wantRoles: []string{"controllers", "webhook", "authz"}, wantMetrics: "127.0.0.1:9090"},
		{name: "metrics certificate without TLS", args: []string{"--metrics-secure=false", "--metrics-cert-dir=/certs"}, wantErr: "--metrics-cert-dir needs --metrics-secure"},
		{name: "negative shutdown delay", args: []string{"--shutdown-delay=-1s"}, wantErr: "cannot be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(o.roles) != fmt.Sprint(tc.wantRoles) {
				t.Fatalf("roles = %v, want %v", o.roles, tc.wantRoles)
			}
			if tc.wantMetrics != "" && o.metricsAddr != tc.wantMetrics {
				t.Fatalf("metrics address = %q, want %q", o.metricsAddr, tc.wantMetrics)
			}
		})
	}
}

// TestManagerStartsAndStopsOnSIGTERM runs the real manager binary against a
// real kube-apiserver with the controllers and webhook roles: it must become
// ready, serve metrics and the webhook's TLS port, hold the leader Lease, and
// on SIGTERM exit 0 and release the Lease.
func TestManagerStartsAndStopsOnSIGTERM(t *testing.T) {
	cp := testenv.ForTest(t)
	kubeconfig, k8s := cp.Kubeconfig, cp.Client
	certDir, caPEM := testenv.CertDir(t)
	bin := managerBinary(t)
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apiwarden-system"}}); err != nil {
		t.Fatal(err)
	}

	var ports [3]int
	for i := range ports {
		var err error
		if ports[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	probeAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	cmd := exec.Command(bin,
		"--roles=controllers,webhook",
		"--leader-election-namespace=apiwarden-system",
		"--metrics-bind-address="+metricsAddr,
		"--metrics-cert-dir="+certDir,
		"--health-probe-bind-address="+probeAddr,
		fmt.Sprintf("--webhook-port=%d", ports[2]),
		"--webhook-cert-dir="+certDir,
	)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	var logs testenv.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("manager output:\n%s", logs.String())
		}
	})

	// Ready means caches synced and the webhook server listening.
	waitFor(t, exited, 60*time.Second, "readyz to answer 200", func() bool {
		resp, err := http.Get("http://" + probeAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// The endpoint answers only tokens allowed to get /metrics: none is
	// 401, an account without the metrics-reader role 403, one bound to
	// the role config/rbac ships gets the metrics.
	reader := testenv.ConfigClusterRoles(t, "metrics_reader_role.yaml")[0]
	if err := k8s.Create(ctx, reader); err != nil {
		t.Fatal(err)
	}
	if code, body, err := testenv.Scrape(metricsAddr, ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("a scrape without a token: %d %v, want 401\n%.300s", code, err, body)
	}
	stranger := testenv.ServiceAccountToken(t, k8s, "monitoring", "stranger", "")
	if code, body, err := testenv.Scrape(metricsAddr, stranger); err != nil || code != http.StatusForbidden {
		t.Errorf("a scrape with a token not allowed /metrics: %d %v, want 403\n%.300s", code, err, body)
	}
	token := testenv.ServiceAccountToken(t, k8s, "monitoring", "prometheus", reader.Name)
	var body string
	waitFor(t, exited, 30*time.Second, "an authorised scrape to answer 200", func() bool {
		// The apiserver's RBAC authorizer sees a new binding through
		// its informer, a moment after the create.
		code, b, err := testenv.Scrape(metricsAddr, token)
		body = b
		return err == nil && code == http.StatusOK
	})
	if !strings.Contains(body, "leader_election_master_status") {
		t.Errorf("metrics do not report leader election:\n%.2000s", body)
	}
	// --metrics-cert-dir: the endpoint serves the given certificate, over
	// HTTP/1.1 only.
	metricsPool := x509.NewCertPool()
	metricsPool.AppendCertsFromPEM(caPEM)
	mconn, err := tls.Dial("tcp", metricsAddr, &tls.Config{RootCAs: metricsPool, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Errorf("the metrics endpoint does not serve the certificate of --metrics-cert-dir: %v", err)
	} else {
		if p := mconn.ConnectionState().NegotiatedProtocol; p == "h2" {
			t.Error("the metrics endpoint negotiated HTTP/2")
		}
		mconn.Close()
	}

	// The coverage metrics, scraped from the endpoint after a known
	// sequence: one exposed Service with plain HTTP under an Audit
	// baseline is one violating object; adding a second makes two.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "scrape"}}); err != nil {
		t.Fatal(err)
	}
	lb := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "scrape", Name: name}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	}
	if err := k8s.Create(ctx, lb("api")); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "scrape"}, Spec: apiwardenv1alpha1.APIBaselineSpec{
		EnforcementAction: apiwardenv1alpha1.EnforcementActionAudit,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "scrape"}},
	}}); err != nil {
		t.Fatal(err)
	}
	scrape := func() string {
		_, b, _ := testenv.Scrape(metricsAddr, token)
		return b
	}
	series := func(n int) string {
		return fmt.Sprintf(`apiwarden_exposed_objects{baseline="scrape",state="violating"} %d`, n)
	}
	waitFor(t, exited, 30*time.Second, "the endpoint to report one violating object", func() bool { return strings.Contains(scrape(), series(1)) })
	if err := k8s.Create(ctx, lb("admin")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, exited, 30*time.Second, "the endpoint to report two violating objects", func() bool { return strings.Contains(scrape(), series(2)) })
	if m := scrape(); !strings.Contains(m, `apiwarden_exposed_objects{baseline="scrape",state="protected"} 0`) {
		t.Errorf("no protected=0 series for the baseline:\n%.3000s", m)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[2]), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("the webhook server does not serve TLS with the given certificate: %v", err)
	}
	conn.Close()

	lease := &coordinationv1.Lease{}
	leaseKey := client.ObjectKey{Namespace: "apiwarden-system", Name: "apiwarden.io"}
	waitFor(t, exited, 30*time.Second, "the leader Lease to be held", func() bool {
		return k8s.Get(ctx, leaseKey, lease) == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != ""
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the manager exited with %v after SIGTERM", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the manager did not exit within 45s of SIGTERM")
	}
	if !strings.Contains(logs.String(), "Manager stopped") {
		t.Errorf("the manager did not log a clean stop")
	}
	if err := k8s.Get(ctx, leaseKey, lease); err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("the Lease is still held by %q after shutdown; the next leader would wait for it to expire", *h)
	}
}

func TestManagerFailsClearlyWithoutACluster(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(managerBinary(t), "--roles=controllers")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "missing"), "KUBERNETES_SERVICE_HOST=", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the manager started without a cluster:\n%s", out)
	}
	if !strings.Contains(string(out), "loading kubeconfig") {
		t.Errorf("the error does not say the kubeconfig could not be loaded:\n%s", out)
	}
}

// waitFor polls cond until it holds, the process exits, or the timeout passes.
func waitFor(t *testing.T, exited <-chan error, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case err := <-exited:
			t.Fatalf("the manager exited (%v) while waiting for %s", err, what)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}

// TestMetricsCertDirMissing: a certificate directory without the files is
// refused at start, not replaced by a self-signed certificate.
func TestMetricsCertDirMissing(t *testing.T) {
	err := run(context.Background(), []string{"--metrics-cert-dir=" + t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "--metrics-cert-dir") || !strings.Contains(err.Error(), "tls.crt") {
		t.Fatalf("run = %v, want an error naming --metrics-cert-dir and tls.crt", err)
	}
}
