package install

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestManagerRunsWithItsOwnRBAC proves the RBAC of config/default is enough,
// not only small: the real manager binary, with every role, runs as the
// ServiceAccount config/default creates, authorised by nothing but the
// ClusterRole and Role config/default binds to it. It must become ready, take
// the leader Lease, install the PolicyReport CRD, deliver the sample
// APIKeySet's keys into Secrets and write its status, and never be refused
// by the apiserver.
func TestManagerRunsWithItsOwnRBAC(t *testing.T) {
	// The webhook would be called by the apiserver for the sample objects
	// below; the manager under test serves it only on loopback.
	kept := withoutWebhooks(renderKustomize(t, "config/default"))
	applyAll(t, kept, nil)

	ports := make([]int, 5)
	for i := range ports {
		var err error
		if ports[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	certDir, _ := testenv.CertDir(t)
	probeAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	m := startManagerAs(t, defaultNamespace, "apiwarden-controller-manager",
		"--roles=controllers,webhook,authz",
		"--namespace="+defaultNamespace,
		"--leader-election-namespace="+defaultNamespace,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]),
		"--health-probe-bind-address="+probeAddr,
		fmt.Sprintf("--webhook-port=%d", ports[2]),
		"--webhook-cert-dir="+certDir,
		fmt.Sprintf("--authz-grpc-bind-address=127.0.0.1:%d", ports[3]),
		fmt.Sprintf("--authz-http-bind-address=127.0.0.1:%d", ports[4]),
	)
	ctx := context.Background()
	until := m.until
	m.waitReady(probeAddr)
	until("the leader Lease", 30*time.Second, func(ctx context.Context) bool {
		lease := &coordinationv1.Lease{}
		err := k8s.Get(ctx, client.ObjectKey{Namespace: defaultNamespace, Name: "apiwarden.io"}, lease)
		return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != ""
	})
	until("the PolicyReport CRD", 30*time.Second, func(ctx context.Context) bool {
		crd := &unstructured.Unstructured{}
		crd.SetAPIVersion("apiextensions.k8s.io/v1")
		crd.SetKind("CustomResourceDefinition")
		return k8s.Get(ctx, client.ObjectKey{Name: "policyreports.wgpolicyk8s.io"}, crd) == nil
	})

	// The sample APIKeySet: keys delivered as Secrets, status written.
	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "samples", "apiwarden_v1alpha1_apikeyset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	samples, err := decodeObjects(data)
	if err != nil || len(samples) != 1 {
		t.Fatalf("the APIKeySet sample: %v", err)
	}
	set := samples[0]
	ensureNamespace(t, set.GetNamespace())
	if err := k8s.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), set) })
	until("the mobile-app key Secret", 60*time.Second, func(ctx context.Context) bool {
		return k8s.Get(ctx, client.ObjectKey{Namespace: set.GetNamespace(), Name: set.GetName() + "-mobile-app"}, &corev1.Secret{}) == nil
	})
	until("the APIKeySet status", 30*time.Second, func(ctx context.Context) bool {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(set.GroupVersionKind())
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(set), got); err != nil {
			return false
		}
		consumers, _, _ := unstructured.NestedSlice(got.Object, "status", "consumers")
		return len(consumers) == 2
	})

	// Secure metrics: the manager's own RBAC lets it review the token of
	// a scrape, and the metrics-reader ClusterRole config/default ships
	// lets that token in.
	token := testenv.ServiceAccountToken(t, k8s, "rbac-monitoring", "prometheus", "apiwarden-metrics-reader")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	until("an authorised metrics scrape", 30*time.Second, func(context.Context) bool {
		code, body, err := testenv.Scrape(metricsAddr, token)
		return err == nil && code == http.StatusOK && strings.Contains(body, "apiwarden_")
	})

	m.checkNotRefused(t)
}

// managerRun is the manager binary running as a ServiceAccount.
type managerRun struct {
	cmd    *exec.Cmd
	logs   *testenv.Buffer
	exited chan error
	// until polls cond until it holds, failing the test on timeout or if
	// the manager exits.
	until func(what string, timeout time.Duration, cond func(ctx context.Context) bool)
}

// startManagerAs runs the manager binary with args, authenticated as the
// ServiceAccount namespace/name and authorised by nothing but the RBAC
// bound to it; it is killed when the test ends.
func startManagerAs(t *testing.T, namespace, name string, args ...string) *managerRun {
	t.Helper()
	user, err := testEnv.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + namespace + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := managerBinary(t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "kubeconfig"), "POD_NAMESPACE="+namespace)
	m := &managerRun{cmd: cmd, logs: &testenv.Buffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-m.exited
		if t.Failed() {
			t.Logf("manager output:\n%s", m.logs.String())
		}
	})
	m.until = func(what string, timeout time.Duration, cond func(ctx context.Context) bool) {
		t.Helper()
		err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			select {
			case err := <-m.exited:
				m.exited <- err // for the cleanup, which waits on it
				return false, fmt.Errorf("the manager exited: %v", err)
			default:
			}
			return cond(ctx), nil
		})
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	return m
}

// waitReady waits until the manager's /readyz at probeAddr answers 200.
func (m *managerRun) waitReady(probeAddr string) {
	m.until("readyz", 90*time.Second, func(context.Context) bool {
		resp, err := http.Get("http://" + probeAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// checkNotRefused fails the test for every request the apiserver refused.
func (m *managerRun) checkNotRefused(t *testing.T) {
	t.Helper()
	for _, line := range strings.Split(m.logs.String(), "\n") {
		if strings.Contains(line, "forbidden") || strings.Contains(line, "Forbidden") {
			t.Errorf("the apiserver refused the manager something its RBAC should allow: %s", line)
		}
	}
}

// bins builds the manager once for the package's tests (TestMain removes it).
var bins testenv.Binaries

func managerBinary(t *testing.T) string {
	t.Helper()
	return bins.Build(t, "./cmd/manager")
}
