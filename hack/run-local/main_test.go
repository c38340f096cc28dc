package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestRunLocalServesAPIAndKeepsData runs `run-local` as a user would: the
// control plane comes up with the CRDs and their documentation, the manager
// becomes ready, Ctrl-C stops everything cleanly, and a second start finds
// the objects created in the first.
func TestRunLocalServesAPIAndKeepsData(t *testing.T) {
	dir := t.TempDir()
	runLocal, err := testenv.BuildBinary("./hack/run-local", dir)
	if err != nil {
		t.Fatal(err)
	}
	manager, err := testenv.BuildBinary("./cmd/manager", dir)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")

	// First start: create an APIPolicy.
	start(t, runLocal, manager, dataDir, func(cfg *rest.Config, k8s client.Client) {
		ctx := context.Background()
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
			t.Fatal(err)
		}
		policy := &apiwardenv1alpha1.APIPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "persisted", Namespace: "shop"},
			Spec: apiwardenv1alpha1.APIPolicySpec{TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{
				{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "shop"},
			}},
		}
		if err := k8s.Create(ctx, policy); err != nil {
			t.Fatal(err)
		}

		// The webhook runs too: under a Deny baseline a bare Ingress is refused.
		baseline := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: "local"}}
		if err := k8s.Create(ctx, baseline); err != nil {
			t.Fatal(err)
		}
		ingress := &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "shop"},
			Spec:       networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "shop.example.com"}}},
		}
		// The baseline reaches the webhook's cache within moments; retry
		// until the denial comes or the deadline passes.
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := k8s.Create(ctx, ingress, client.DryRunAll)
			if err != nil && strings.Contains(err.Error(), "Ingress shop/bare exposes host shop.example.com without TLS") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the local webhook did not deny a bare Ingress: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}

		// The controllers role delivers API keys.
		keySet := &apiwardenv1alpha1.APIKeySet{
			ObjectMeta: metav1.ObjectMeta{Name: "keys", Namespace: "shop"},
			Spec:       apiwardenv1alpha1.APIKeySetSpec{Consumers: []apiwardenv1alpha1.Consumer{{Name: "app"}}},
		}
		if err := k8s.Create(ctx, keySet); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			var s corev1.Secret
			if k8s.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "keys-app"}, &s) == nil && len(s.Data["api-key"]) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the local manager did not deliver an API key")
			}
		}

		// kubectl explain reads the OpenAPI v3 document; the field docs must be there.
		httpClient, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := httpClient.Get(cfg.Host + "/openapi/v3/apis/apiwarden.io/v1alpha1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, doc := range []string{
			"targetRefs lists the objects this policy protects",
			"expires is when the exemption stops counting",
			"gracePeriod is how long a replaced key stays valid",
		} {
			if !strings.Contains(string(body), doc) {
				t.Errorf("the OpenAPI document lacks the field documentation %q", doc)
			}
		}
	})

	// Second start on the same data directory: the policy is still there.
	start(t, runLocal, manager, dataDir, func(_ *rest.Config, k8s client.Client) {
		got := &apiwardenv1alpha1.APIPolicy{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: "persisted"}, got); err != nil {
			t.Fatalf("the APIPolicy created before the restart is gone: %v", err)
		}
	})
}

// start runs run-local until it reports ready, calls use, then stops it with
// SIGINT (Ctrl-C) and checks that it and its processes exit cleanly.
func start(t *testing.T, runLocal, manager, dataDir string, use func(*rest.Config, client.Client)) {
	t.Helper()
	apiPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	probePort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	probeAddr := fmt.Sprintf("127.0.0.1:%d", probePort)
	cmd := exec.Command(runLocal,
		"--dir", dataDir,
		"--port", fmt.Sprint(apiPort),
		"--manager", manager,
		"--manager-args", "--leader-elect=false --metrics-bind-address=0 --health-probe-bind-address="+probeAddr,
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	ready := make(chan struct{})
	var out strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "Press Ctrl-C to stop everything") {
				close(ready)
				signalled = true
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("run-local stderr:\n%s", stderr.String())
		}
	}()

	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("run-local exited before it was ready: %v\n%s", err, stderr.String())
	case <-time.After(90 * time.Second):
		t.Fatal("run-local was not ready within 90s")
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dataDir, "kubeconfig"))
	if err != nil {
		t.Fatalf("the printed kubeconfig does not load: %v", err)
	}
	k8s, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + probeAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the manager run by run-local did not become ready within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	use(cfg, k8s)

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("run-local did not exit cleanly on Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		t.Fatal("run-local did not stop within 60s of Ctrl-C")
	}
	if !strings.Contains(out.String(), "kubeconfig: "+filepath.Join(dataDir, "kubeconfig")) {
		t.Errorf("run-local did not print the kubeconfig path:\n%s", out.String())
	}
}
