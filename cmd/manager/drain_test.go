package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// admissionReview is an AdmissionReview asking whether a ClusterIP Service
// may be created.
func admissionReview(t *testing.T, uid string) []byte {
	t.Helper()
	svc, err := json.Marshal(&corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "internal"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID(uid), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Service"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "services"},
			Namespace: "default", Name: "internal", Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: svc},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// allowedReview reads an HTTP response carrying an AdmissionReview and
// checks it allows the request uid.
func allowedReview(resp *http.Response, uid string) error {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	review := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(resp.Body).Decode(review); err != nil {
		return err
	}
	if review.Response == nil || string(review.Response.UID) != uid || !review.Response.Allowed {
		return fmt.Errorf("the review does not allow %s: %+v", uid, review.Response)
	}
	return nil
}

// TestShutdownDrainsInFlightRequests: on SIGTERM a replica reports not
// ready at once, keeps serving new admission and forward-auth requests
// (on new and on pooled connections) for --shutdown-delay, then stops
// accepting connections, answers the admission request in flight (its body
// half sent when the signal came), closes idle connections between
// requests, and exits 0. (Go's HTTP server answers a request once its
// headers are in; the forward-auth handler answers as soon as they are, so
// a forward-auth request cannot be caught mid-flight from outside.)
func TestShutdownDrainsInFlightRequests(t *testing.T) {
	cp := testenv.ForTest(t)
	kubeconfig, k8s := cp.Kubeconfig, cp.Client
	certDir, caPEM := testenv.CertDir(t)
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apiwarden-system"}}); err != nil {
		t.Fatal(err)
	}
	// The authz role reads the pepper the controllers role creates; this
	// replica runs no controllers.
	if _, err := keystore.EnsurePepper(context.Background(), k8s, k8s, "apiwarden-system"); err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 5)
	webhookAddr, authzAddr := addrs[0], addrs[2]
	const delay = 4 * time.Second
	r := startReplica(t, "manager", kubeconfig, addrs[1],
		"--roles=webhook,authz", "--namespace=apiwarden-system",
		"--webhook-port="+webhookAddr[strings.LastIndex(webhookAddr, ":")+1:], "--webhook-cert-dir="+certDir,
		"--authz-http-bind-address="+authzAddr, "--authz-grpc-bind-address="+addrs[3], "--metrics-bind-address="+addrs[4],
		"--shutdown-delay="+delay.String(), "--graceful-shutdown-timeout=20s",
	)
	r.waitReady(t, 90*time.Second)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	webhookClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}}
	review := func(uid string) error {
		resp, err := webhookClient.Post("https://"+webhookAddr+"/validate-v1-service", "application/json", strings.NewReader(string(admissionReview(t, uid))))
		if err != nil {
			return err
		}
		return allowedReview(resp, uid)
	}
	forwardAuth := func() (int, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		req, err := http.NewRequest(http.MethodGet, "http://"+authzAddr+"/v1/forward-auth/default/api", nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("X-Forwarded-Uri", "/")
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if err := review("before"); err != nil {
		t.Fatalf("the webhook does not answer before shutdown: %v", err)
	}
	baseline, err := forwardAuth()
	if err != nil {
		t.Fatalf("forward-auth does not answer before shutdown: %v", err)
	}

	// In flight: an AdmissionReview whose body is half sent.
	body := admissionReview(t, "in-flight")
	hook, err := tls.Dial("tcp", webhookAddr, tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	defer hook.Close()
	half := len(body) / 2
	if _, err := fmt.Fprintf(hook, "POST /validate-v1-service HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:half]); err != nil {
		t.Fatal(err)
	}
	// A gateway's pooled keep-alive connection to forward-auth, used once.
	auth, err := net.Dial("tcp", authzAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	authReader := bufio.NewReader(auth)
	pooled := func() (int, error) {
		if _, err := io.WriteString(auth, "GET /v1/forward-auth/default/api HTTP/1.1\r\nHost: gateway\r\nX-Forwarded-Uri: /\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(authReader, nil)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if _, err := pooled(); err != nil {
		t.Fatal(err)
	}

	signalled := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r.exited, time.Second, "readyz to fail after SIGTERM", func() bool { code := r.readyz(); return code != 0 && code != http.StatusOK })
	// Still serving new requests while endpoints catch up.
	if err := review("during-delay"); err != nil {
		t.Errorf("a new admission request %s after SIGTERM, within the shutdown delay, failed: %v", time.Since(signalled).Round(time.Millisecond), err)
	}
	if code, err := forwardAuth(); err != nil || code != baseline {
		t.Errorf("a new forward-auth request within the shutdown delay got %d, %v; want %d as before", code, err, baseline)
	}
	if code, err := pooled(); err != nil || code != baseline {
		t.Errorf("a forward-auth request on a pooled connection within the shutdown delay got %d, %v; want %d as before", code, err, baseline)
	}
	if waited := time.Since(signalled); waited >= delay {
		t.Fatalf("the checks within the shutdown delay took %s, longer than the delay", waited)
	}
	// Then each server stops accepting connections (authz first: the
	// manager stops the webhook server last) and answers what was in
	// flight.
	closed := func(what string, dial func() error) {
		t.Helper()
		waitFor(t, r.exited, delay+10*time.Second, what+" to stop accepting connections", func() bool { return dial() != nil })
		if d := time.Since(signalled); d < delay {
			t.Errorf("%s stopped accepting connections %s after SIGTERM, before the %s shutdown delay", what, d, delay)
		}
	}
	closed("the authz server", func() error {
		c, err := net.DialTimeout("tcp", authzAddr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	})
	// The idle pooled connection is closed cleanly, between requests.
	_ = auth.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := authReader.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("the pooled forward-auth connection read %d bytes, %v after shutdown; want a clean close (EOF)", n, err)
	}

	closed("the webhook server", func() error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 200 * time.Millisecond}, "tcp", webhookAddr, tlsConf)
		if err == nil {
			c.Close()
		}
		return err
	})
	if _, err := hook.Write(body[half:]); err != nil {
		t.Fatalf("finishing the in-flight admission request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(hook), nil)
	if err != nil {
		t.Fatalf("the in-flight admission request got no answer: %v", err)
	}
	if err := allowedReview(resp, "in-flight"); err != nil {
		t.Errorf("the in-flight admission request: %v", err)
	}

	select {
	case err := <-r.exited:
		if err != nil {
			t.Fatalf("the manager exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the manager did not exit")
	}
	if !strings.Contains(r.logs.String(), "Manager stopped") {
		t.Error("the manager did not log a clean stop")
	}
}
