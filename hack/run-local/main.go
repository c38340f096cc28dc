// Command run-local starts a local Kubernetes control plane (real etcd and
// kube-apiserver processes on loopback, from the envtest binaries that
// hack/envtest-assets.sh provides), installs apiwarden's CRDs and those of
// Gateway API and cert-manager, writes an admin kubeconfig, and runs the
// apiwarden manager against it until Ctrl-C. etcd's data directory survives
// restarts, so objects created in one session are there in the next.
//
// It is what `make run-local` runs: a newcomer with no cluster can try
// apiwarden with one command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/apiwarden/apiwarden/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "run-local: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", ".run-local", "Directory for etcd's data and the kubeconfig; it survives restarts.")
	port := flag.Int("port", 16443, "Loopback port of the kube-apiserver.")
	manager := flag.String("manager", "bin/manager", "Path of the apiwarden manager binary; empty runs the control plane alone.")
	roles := flag.String("roles", "controllers,webhook", "Manager roles; with webhook, apiwarden's ValidatingWebhookConfiguration is installed and pointed at the local manager.")
	managerArgs := flag.String("manager-args", "--leader-elect=false --metrics-bind-address=127.0.0.1:18080 --metrics-secure=false --health-probe-bind-address=127.0.0.1:18081",
		"More arguments passed to the manager, separated by spaces.")
	flag.Parse()

	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	etcdDir := filepath.Join(absDir, "etcd")
	if err := os.MkdirAll(etcdDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", etcdDir, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(os.Stderr, "run-local: starting etcd (data in %s) and kube-apiserver on 127.0.0.1:%d\n", etcdDir, *port)
	withWebhook := strings.Contains(","+*roles+",", ",webhook,")
	opts := []testenv.Option{func(e *envtest.Environment, _ string) {
		e.ControlPlane.Etcd = &envtest.Etcd{DataDir: etcdDir}
		e.ControlPlane.APIServer = &envtest.APIServer{SecurePort: *port}
	}}
	if withWebhook {
		// envtest writes a serving certificate for 127.0.0.1, installs the
		// webhook configuration with its CA and a URL on a free local port,
		// and the manager serves there.
		opts = append(opts, testenv.WithWebhooks())
	}
	// Envoy Gateway's policy CRDs, so the APIPolicy controller renders.
	opts = append(opts, testenv.WithEnvoyGatewayCRDs())
	env, err := testenv.Start(opts...)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(os.Stderr, "run-local: stopping kube-apiserver and etcd")
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "run-local: stopping the control plane: %v\n", err)
		}
	}()

	kubeconfigPath := filepath.Join(absDir, "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfigPath); err != nil {
		return err
	}
	// apiwarden's own namespace, as config/default creates it: never
	// governed, and home of the API-key pepper.
	k8s, err := client.New(env.Config, client.Options{})
	if err != nil {
		return err
	}
	own := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apiwarden-system", Labels: map[string]string{"apiwarden.io/exclude": "true"}}}
	if err := k8s.Create(ctx, own); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace apiwarden-system: %w", err)
	}

	fmt.Printf(`
apiwarden local control plane is ready.

  kubeconfig: %[1]s

  kubectl --kubeconfig %[1]s get crds
  kubectl --kubeconfig %[1]s explain apipolicy.spec
  kubectl --kubeconfig %[1]s apply -f config/samples/

Press Ctrl-C to stop everything; etcd's data stays in %[2]s.
`, kubeconfigPath, etcdDir)

	if *manager == "" {
		<-ctx.Done()
		return nil
	}
	args := append([]string{"--roles=" + *roles, "--namespace=apiwarden-system"}, strings.Fields(*managerArgs)...)
	if withWebhook {
		wh := env.WebhookInstallOptions
		args = append(args, fmt.Sprintf("--webhook-port=%d", wh.LocalServingPort), "--webhook-cert-dir="+wh.LocalServingCertDir)
	}
	return runManager(ctx, *manager, args, kubeconfigPath)
}

// runManager runs the manager until ctx ends, then stops it with SIGTERM so it
// shuts down as it would in a cluster.
func runManager(ctx context.Context, path string, args []string, kubeconfig string) error {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	// Its own process group, so Ctrl-C reaches run-local only and the manager
	// is stopped in order, before the apiserver it talks to.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the manager %s (run `make build` first): %w", path, err)
	}
	fmt.Fprintf(os.Stderr, "run-local: manager started (pid %d)\n", cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			err = errors.New("exited")
		}
		return fmt.Errorf("the manager stopped on its own: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(os.Stderr, "run-local: stopping the manager")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("the manager did not stop cleanly: %w", err)
		}
	case <-time.After(45 * time.Second):
		_ = cmd.Process.Kill()
		return errors.New("the manager did not stop within 45s of SIGTERM; killed it")
	}
	return nil
}
