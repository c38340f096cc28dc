package testenv

import (
	"path/filepath"
	"testing"

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
