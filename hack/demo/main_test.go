package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestDemo runs the whole demo against the manager binary built from this
// tree, as `make demo` does: every step must do what it says (each one
// fails the run otherwise), the output must tell the story in order, and
// no API key may appear in it.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about a minute and a half")
	}
	dir := t.TempDir()
	bin, err := testenv.BuildBinary("./cmd/manager", dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// testenv finds config/ and the CRDs from the repository's root.
	t.Chdir(root)
	var out testenv.Buffer
	start := time.Now()
	err = run(context.Background(), options{manager: bin, dir: filepath.Join(dir, "demo")}, &out)
	elapsed := time.Since(start)
	text := out.String()
	if err != nil {
		t.Fatalf("the demo failed after %s: %v\n%s", elapsed.Round(time.Second), err, text)
	}
	t.Logf("the demo took %s", elapsed.Round(time.Second))
	// In the order a reader meets them.
	want := []string{
		"== 1. An APIBaseline in Deny mode",
		"apibaselines.apiwarden.io/demo created",
		"== 2. Unprotected APIs are refused at admission",
		"gateways.gateway.networking.k8s.io/public created",
		`Error from server (Forbidden): error when creating "STDIN": admission webhook "ingresses.apiwarden.io" denied the request`,
		`Error from server (Forbidden): error when creating "STDIN": admission webhook "httproutes.apiwarden.io" denied the request`,
		"== 3. An APIKeySet and an APIPolicy",
		"httproutes.gateway.networking.k8s.io/shop-api created",
		"Enforced=True",
		"SecurityPolicy shop/",
		"name: apiwarden-authz",
		"BackendTrafficPolicy shop/",
		"delivers the key with id k",
		"== 4. Real requests",
		"HTTP 401 Unauthorized",
		"HTTP 400 Bad Request",
		"HTTP 200 OK\nX-Apiwarden-Consumer: mobile-app",
		"== 5. A key rotation",
		"HTTP 200 OK",
		"# the old key",
		"HTTP 200 OK",
		"# the old key",
		"HTTP 401 Unauthorized",
		"lastRotateRequest: mobile-app@demo",
		"== 6. Coverage",
		"violating: 0",
		"The demo took",
	}
	rest := text
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("the output lacks %q after the part already matched:\n%s", w, text)
		}
		rest = rest[i+len(w):]
	}
	if m := keyPattern.FindString(text); m != "" {
		t.Errorf("the output contains an API key (%d characters starting %q)", len(m), m[:5])
	}
	if _, err := os.Stat(filepath.Join(dir, "demo", "manager.log")); err != nil {
		t.Errorf("no manager log: %v", err)
	}
}
