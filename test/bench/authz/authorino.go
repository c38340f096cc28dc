package main

import (
	"bytes"
	"context"
	"fmt"
	"github.com/apiwarden/apiwarden/test/bench/load"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/authz"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// runAuthorino compares apiwarden with Authorino, each in its own process
// against one envtest apiserver, over gRPC ext_authz with the same keys and
// the same load. apiwarden is the real manager binary (roles controllers and
// authz) issuing the keys from APIKeySets; Authorino gets the same keys in
// its own labelled Secrets and one AuthConfig doing API-key authentication
// from the X-API-Key header.
func runAuthorino(cfg config) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	bin, err := exec.Command("bash", filepath.Join(root, "hack", "authorino.sh")).Output()
	if err != nil {
		return fmt.Errorf("building Authorino: %w", err)
	}
	authorinoBin := strings.TrimSpace(string(bin))
	modDir, err := authorinoModuleDir(root)
	if err != nil {
		return err
	}
	env, err := testenv.Start(func(e *envtest.Environment, _ string) {
		e.CRDInstallOptions.Paths = append(e.CRDInstallOptions.Paths, filepath.Join(modDir, "install", "crd", "authorino.kuadrant.io_authconfigs.yaml"))
	})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	dir, err := os.MkdirTemp("", "apiwarden-bench-authz")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	k8s, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	ns := "bench"
	for _, n := range []string{"apiwarden-system", ns} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			return err
		}
	}

	// apiwarden: the manager binary, issuing keys and serving ext_authz.
	managerBin, err := testenv.BuildBinary("./cmd/manager", dir)
	if err != nil {
		return err
	}
	awPort, err := testenv.FreePort()
	if err != nil {
		return err
	}
	probe, err := testenv.FreePort()
	if err != nil {
		return err
	}
	var awLog, auLog bytes.Buffer
	mgr := exec.CommandContext(ctx, managerBin, "--roles=controllers,authz", "--leader-elect=false", "--namespace=apiwarden-system",
		"--metrics-bind-address=0", fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probe),
		fmt.Sprintf("--authz-grpc-bind-address=127.0.0.1:%d", awPort), "--authz-http-bind-address=0", "--zap-log-level=error")
	mgr.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	mgr.Stdout, mgr.Stderr = &awLog, &awLog
	if err := mgr.Start(); err != nil {
		return err
	}
	defer func() { _ = mgr.Process.Kill(); _ = mgr.Wait() }()

	sets := (cfg.consumers + 249) / 250
	if sets > 16 {
		return fmt.Errorf("-consumers %d needs %d APIKeySets; one APIPolicy references at most 16 (4,000 consumers)", cfg.consumers, sets)
	}
	var refs []apiwardenv1alpha1.LocalObjectReference
	for s := range sets {
		var cs []apiwardenv1alpha1.Consumer
		for c := s * 250; c < min(cfg.consumers, (s+1)*250); c++ {
			cs = append(cs, apiwardenv1alpha1.Consumer{Name: fmt.Sprintf("c%d", c)})
		}
		name := fmt.Sprintf("s%d", s)
		refs = append(refs, apiwardenv1alpha1.LocalObjectReference{Name: name})
		if err := k8s.Create(ctx, &apiwardenv1alpha1.APIKeySet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: apiwardenv1alpha1.APIKeySetSpec{Consumers: cs, KeyPrefix: "bench"}}); err != nil {
			return err
		}
	}
	if err := k8s.Create(ctx, &apiwardenv1alpha1.APIPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"},
		Spec: apiwardenv1alpha1.APIPolicySpec{
			TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "orders"}},
			Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: refs, Header: "X-API-Key"}},
		},
	}); err != nil {
		return err
	}
	var apiKeys []string
	deadline := time.Now().Add(5 * time.Minute)
	for len(apiKeys) < cfg.consumers {
		if time.Now().After(deadline) {
			return fmt.Errorf("apiwarden delivered %d of %d keys; manager log:\n%s", len(apiKeys), cfg.consumers, awLog.String())
		}
		time.Sleep(500 * time.Millisecond)
		var list corev1.SecretList
		if err := k8s.List(ctx, &list, client.InNamespace(ns), client.HasLabels{keystore.LabelConsumer}); err != nil {
			return err
		}
		apiKeys = apiKeys[:0]
		for _, s := range list.Items {
			apiKeys = append(apiKeys, string(s.Data[keystore.KeyField]))
		}
	}

	// Authorino: the same keys, as it stores them (plaintext Secrets).
	for i, k := range apiKeys {
		if err := k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("authorino-key-%d", i),
				Labels: map[string]string{"authorino.kuadrant.io/managed-by": "authorino", "group": "bench-users"}},
			StringData: map[string]string{"api_key": k},
		}); err != nil {
			return err
		}
	}
	ac := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig",
		"metadata": map[string]any{"name": "orders", "namespace": ns},
		"spec": map[string]any{
			"hosts": []any{"api.example.com"},
			"authentication": map[string]any{"api-key-users": map[string]any{
				"apiKey":      map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"group": "bench-users"}}},
				"credentials": map[string]any{"customHeader": map[string]any{"name": "X-API-Key"}},
			}},
		},
	}}
	if err := k8s.Create(ctx, ac); err != nil {
		return err
	}
	auPort, err := testenv.FreePort()
	if err != nil {
		return err
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
			return err
		}
	}
	au := exec.CommandContext(ctx, authorinoBin, "server", "--watch-namespace="+ns, "--log-level=error",
		fmt.Sprintf("--ext-auth-grpc-port=%d", auPort), fmt.Sprintf("--ext-auth-http-port=%d", ports[0]), fmt.Sprintf("--oidc-http-port=%d", ports[1]),
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", ports[2]), fmt.Sprintf("--health-probe-addr=127.0.0.1:%d", ports[3]))
	au.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	au.Stdout, au.Stderr = &auLog, &auLog
	if err := au.Start(); err != nil {
		return err
	}
	defer func() { _ = au.Process.Kill(); _ = au.Wait() }()

	awAddr, auAddr := fmt.Sprintf("127.0.0.1:%d", awPort), fmt.Sprintf("127.0.0.1:%d", auPort)
	for name, addr := range map[string]string{"apiwarden": awAddr, "Authorino": auAddr} {
		if err := waitAllowed(ctx, addr, apiKeys, 2*time.Minute); err != nil {
			log := awLog.String()
			if name == "Authorino" {
				log = auLog.String()
			}
			return fmt.Errorf("%s never allowed every key: %w\n%s", name, err, log)
		}
	}

	fmt.Printf("apiwarden vs Authorino %s, gRPC ext_authz, each in its own process against one envtest apiserver: %d consumers, %d requests per measurement, median of %d rounds\n\n",
		"v0.20.0", cfg.consumers, cfg.requests, cfg.rounds)
	fmt.Println("| clients | Authorino checks/s | apiwarden checks/s | apiwarden / Authorino | Authorino p50 / p99 | apiwarden p50 / p99 |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, c := range cfg.concurrency {
		var aus, aws []load.Result
		for range cfg.rounds {
			a, err := loadGRPCTo(auAddr, apiKeys, cfg.requests, c)
			if err != nil {
				return fmt.Errorf("Authorino: %w", err)
			}
			w, err := loadGRPCTo(awAddr, apiKeys, cfg.requests, c)
			if err != nil {
				return fmt.Errorf("apiwarden: %w", err)
			}
			aus, aws = append(aus, a), append(aws, w)
		}
		a, w := load.Median(aus), load.Median(aws)
		fmt.Printf("| %d | %.0f | %.0f | %.2f | %s / %s | %s / %s |\n", c, a.Rate(), w.Rate(), w.Rate()/a.Rate(), load.Micros(a.P50), load.Micros(a.P99), load.Micros(w.P50), load.Micros(w.P99))
	}
	return nil
}

// authorinoModuleDir is where the module cache holds the pinned Authorino
// sources (for its CRD); hack/authorino.sh has downloaded them.
func authorinoModuleDir(root string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kuadrant/authorino")
	cmd.Dir = filepath.Join(root, "hack", "authorino")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GONOSUMDB=github.com/kuadrant/authorino")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating the Authorino module: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// checkRequest is what Envoy would send for a request to api.example.com
// carrying key, with apiwarden's policy named in the context extensions
// (Authorino ignores them and matches the host).
func checkRequest(key string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders/42?expand=items", Host: "api.example.com", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{":authority": "api.example.com", ":method": "GET", ":path": "/orders/42?expand=items", "x-api-key": key, "user-agent": "bench/1.0", "accept": "application/json", "x-request-id": "6a4e1c8e-3f0b-4a4e-9f51-6a1f0e2b7c11"},
		}},
		ContextExtensions: map[string]string{authz.PolicyContextKey: "bench/orders"},
	}}
}

func waitAllowed(ctx context.Context, addr string, apiKeys []string, timeout time.Duration) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	cl := authv3.NewAuthorizationClient(cc)
	deadline := time.Now().Add(timeout)
	var last string
	for i := 0; i < len(apiKeys); {
		if time.Now().After(deadline) {
			return fmt.Errorf("key %d of %d: %s", i, len(apiKeys), last)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := cl.Check(cctx, checkRequest(apiKeys[i]))
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case resp.GetOkResponse() == nil:
			last = fmt.Sprintf("denied: %d %s", resp.GetDeniedResponse().GetStatus().GetCode(), resp.GetDeniedResponse().GetBody())
		default:
			i++
			continue
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}
