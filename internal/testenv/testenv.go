// Package testenv starts a real kube-apiserver and etcd (controller-runtime's
// envtest) with apiwarden's CRDs and the real CRDs of Gateway API and
// cert-manager, taken from their Go modules at the versions pinned in go.mod.
//
// It is used by tests only. When the envtest binaries cannot be found or
// built, Start fails with the reason: envtest suites never skip silently.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/apiwarden/apiwarden/internal/scheme"
)

// Scheme holds every kind apiwarden uses (see internal/scheme).
func Scheme() *runtime.Scheme { return scheme.New() }

// RepoRoot returns the directory of apiwarden's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.HasPrefix(data, []byte("module github.com/apiwarden/apiwarden\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: apiwarden's go.mod not found above the working directory")
		}
		dir = parent
	}
}

// AssetsDir returns a directory holding kube-apiserver and etcd: the one in
// KUBEBUILDER_ASSETS, or the one hack/envtest-assets.sh provides (from its
// cache, setup-envtest, or a build from the Go module proxy).
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		if isExecutable(filepath.Join(dir, "kube-apiserver")) && isExecutable(filepath.Join(dir, "etcd")) {
			return dir, nil
		}
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", filepath.Join(root, "hack", "envtest-assets.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("testenv: hack/envtest-assets.sh failed: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// ModuleDir returns the directory of a Go module in the module cache, at the
// version go.mod requires.
func ModuleDir(module string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("testenv: go list -m %s: %s", module, ee.Stderr)
		}
		return "", fmt.Errorf("testenv: go list -m %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		// The module is required but not yet downloaded: download it once.
		dl := exec.Command("go", "mod", "download", "-json", module)
		dl.Dir = root
		out, err := dl.Output()
		if err != nil {
			return "", fmt.Errorf("testenv: go mod download %s: %w", module, err)
		}
		var info struct{ Dir string }
		if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
			return "", fmt.Errorf("testenv: go mod download %s gave no directory: %s", module, out)
		}
		return info.Dir, nil
	}
	return dir, nil
}

// CRDPaths lists the CRD files installed by Start: apiwarden's generated CRDs,
// Gateway API's standard channel and cert-manager's CRDs.
func CRDPaths() ([]string, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	paths := []string{filepath.Join(root, "config", "crd", "bases")}
	gw, err := ModuleDir("sigs.k8s.io/gateway-api")
	if err != nil {
		return nil, err
	}
	// Only the CRD files: the directory also holds a ValidatingAdmissionPolicy.
	gwCRDs, err := filepath.Glob(filepath.Join(gw, "config", "crd", "standard", "gateway.networking.k8s.io_*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, p := range gwCRDs {
		if !strings.Contains(filepath.Base(p), "vap_") {
			paths = append(paths, p)
		}
	}
	cm, err := ModuleDir("github.com/cert-manager/cert-manager")
	if err != nil {
		return nil, err
	}
	cmCRDs, err := filepath.Glob(filepath.Join(cm, "deploy", "crds", "*cert-manager.io_*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(gwCRDs) == 0 || len(cmCRDs) == 0 {
		return nil, fmt.Errorf("testenv: no CRDs found in %s or %s", gw, cm)
	}
	return append(paths, cmCRDs...), nil
}

// Environment is a running envtest control plane.
type Environment struct {
	*envtest.Environment
	// Config reaches the apiserver as a cluster admin.
	Config *rest.Config
}

// Option adjusts the envtest environment before it starts; root is the
// repository's root directory.
type Option func(e *envtest.Environment, root string)

// Start starts etcd and kube-apiserver and installs the CRDs. Callers must
// call Stop.
func Start(opts ...Option) (*Environment, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	crds, err := CRDPaths()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              crds,
			ErrorIfPathMissing: true,
		},
		ErrorIfCRDPathMissing: true,
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(env, root)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("testenv: starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	return &Environment{Environment: env, Config: cfg}, nil
}

// Stop stops the control plane.
func (e *Environment) Stop() error { return e.Environment.Stop() }

// BuildBinary compiles the main package pkg (an import path of this module,
// such as "./cmd/manager") into dir and returns the binary's path.
func BuildBinary(pkg, dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testenv: go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// WriteKubeconfig adds a cluster-admin user to the environment and writes a
// kubeconfig for it to path.
func (e *Environment) WriteKubeconfig(path string) error {
	admin, err := e.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("testenv: adding an admin user: %w", err)
	}
	data, err := admin.KubeConfig()
	if err != nil {
		return fmt.Errorf("testenv: rendering a kubeconfig: %w", err)
	}
	return os.WriteFile(path, data, 0o600)
}

// WithWebhooks installs apiwarden's ValidatingWebhookConfiguration
// (config/webhook/manifests.yaml), pointed by envtest at a local webhook
// server whose host, port and certificates are in WebhookInstallOptions.
func WithWebhooks() Option {
	return func(e *envtest.Environment, root string) {
		e.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths:            []string{filepath.Join(root, "config", "webhook", "manifests.yaml")},
			LocalServingHost: "127.0.0.1",
		}
	}
}

// EnvoyGatewayKinds are the Envoy Gateway CRDs apiwarden renders into, by
// file name in the module's chart.
var EnvoyGatewayKinds = []string{"securitypolicies", "backendtrafficpolicies", "clienttrafficpolicies"}

// EnvoyGatewayCRDs reads Envoy Gateway's CRDs for EnvoyGatewayKinds from the
// github.com/envoyproxy/gateway module pinned in go.mod. The chart ships them
// as Helm templates whose only template lines are an enable guard around the
// document; those lines are dropped.
func EnvoyGatewayCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dir, err := ModuleDir("github.com/envoyproxy/gateway")
	if err != nil {
		return nil, err
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, k := range EnvoyGatewayKinds {
		path := filepath.Join(dir, "charts", "gateway-crds-helm", "templates", "generated", "gateway.envoyproxy.io_"+k+".yaml")
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("testenv: reading Envoy Gateway CRD: %w", err)
		}
		var kept []string
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "{{") {
				kept = append(kept, line)
			}
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal([]byte(strings.Join(kept, "\n")), crd); err != nil {
			return nil, fmt.Errorf("testenv: decoding %s: %w", path, err)
		}
		if crd.Name == "" {
			return nil, fmt.Errorf("testenv: %s holds no CRD", path)
		}
		out = append(out, crd)
	}
	return out, nil
}

// WithEnvoyGatewayCRDs installs Envoy Gateway's CRDs (EnvoyGatewayCRDs) with
// the others at start.
func WithEnvoyGatewayCRDs() Option {
	return func(e *envtest.Environment, _ string) {
		crds, err := EnvoyGatewayCRDs()
		if err != nil {
			panic(err)
		}
		e.CRDInstallOptions.CRDs = append(e.CRDInstallOptions.CRDs, crds...)
	}
}

// InstallEnvoyGatewayCRDs installs Envoy Gateway's CRDs into a running
// control plane and waits until they are served.
func (e *Environment) InstallEnvoyGatewayCRDs() error {
	crds, err := EnvoyGatewayCRDs()
	if err != nil {
		return err
	}
	_, err = envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{CRDs: crds})
	return err
}

// WithServiceIPRange sets the apiserver's Service ClusterIP range (envtest's
// default /24 holds 254 Services; a benchmark needs more).
func WithServiceIPRange(cidr string) Option {
	return func(e *envtest.Environment, _ string) {
		e.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", cidr)
	}
}

// ProfileAPIServer writes to path a CPU profile of the apiserver that cfg
// reaches, sampled for d through its /debug/pprof (on by default), for
// benchmarks that look at where the apiserver spends its CPU.
func ProfileAPIServer(ctx context.Context, cfg *rest.Config, d time.Duration, path string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
		Param("seconds", strconv.Itoa(int(d.Seconds()))).Timeout(d + time.Minute).DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("profiling the apiserver: %w", err)
	}
	return os.WriteFile(path, data, 0o644)
}
