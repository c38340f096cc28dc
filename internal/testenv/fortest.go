package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Test is a control plane started for one test.
type Test struct {
	*Environment
	// Kubeconfig is the path of an admin kubeconfig for it, for processes
	// the test starts.
	Kubeconfig string
	// Client is an admin client with the project's scheme.
	Client client.Client
}

// ForTest starts a control plane for t, stopped when t ends, with an admin
// kubeconfig written in t's temporary directory and a client; it fails t
// on any error.
func ForTest(t testing.TB, opts ...Option) *Test {
	t.Helper()
	env, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return &Test{Environment: env, Kubeconfig: kubeconfig, Client: c}
}

// Tool returns the path of a pinned tool: $NAME in upper case (the Makefile
// sets EGCTL, HELM, KUSTOMIZE, TRAEFIK) when set, else what hack/<name>.sh
// prints, which builds the tool from the Go module proxy once per machine.
func Tool(name string) (string, error) {
	if p := os.Getenv(strings.ToUpper(name)); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", filepath.Join(root, "hack", name+".sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/%s.sh: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// CertDir writes a self-signed certificate for loopback (WriteSelfSignedCert)
// into a new directory of t's and returns the directory and the
// certificate's PEM, for a TLS client to trust.
func CertDir(t testing.TB) (string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caPEM, err := WriteSelfSignedCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, caPEM
}

// Binaries builds main packages of this module once per test binary: a
// package's tests share one build. Remove deletes the builds; call it from
// TestMain after m.Run.
type Binaries struct {
	mu    sync.Mutex
	dir   string
	paths map[string]string
}

// Build returns the path of pkg (such as "./cmd/manager"), building it on
// first use.
func (b *Binaries) Build(t testing.TB, pkg string) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.paths[pkg]; ok {
		return p
	}
	if b.dir == "" {
		dir, err := os.MkdirTemp("", "apiwarden-bin-")
		if err != nil {
			t.Fatal(err)
		}
		b.dir, b.paths = dir, map[string]string{}
	}
	start := time.Now()
	p, err := BuildBinary(pkg, b.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s built in %s", pkg, time.Since(start).Round(time.Second))
	b.paths[pkg] = p
	return p
}

// Remove deletes what Build built.
func (b *Binaries) Remove() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}
