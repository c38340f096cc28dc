// Package rendertest runs golden tests of renderers: each testdata/*.yaml
// holds APIPolicies and the objects they target; the plans of every policy,
// in name order, printed by render.WriteYAML, must equal the matching
// .golden file. Run `go test ./internal/render/... -update` to rewrite the
// golden files after an intended change, and review the diff.
package rendertest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/manifest"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/certmanager"
)

var update = flag.Bool("update", false, "rewrite the .golden files from the renderer's output")

// Authz is the authz service the golden files are rendered for.
var Authz = render.AuthzService{Namespace: "apiwarden-system", Name: "apiwarden-authz", GRPCPort: 9001, HTTPPort: 9002}

// ReadCase reads a manifest file of a test case: every object, and its
// APIPolicies in name order. Every document must be a kind apiwarden reads.
func ReadCase(t testing.TB, path string) ([]runtime.Object, []*apiwardenv1alpha1.APIPolicy) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	docs, err := manifest.Read(path, f)
	if err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	var policies []*apiwardenv1alpha1.APIPolicy
	for _, d := range docs {
		if d.Obj == nil {
			t.Fatalf("%s:%d: %s is not a kind apiwarden reads", path, d.Line, d.GVK)
		}
		objs = append(objs, d.Obj)
		if p, ok := d.Obj.(*apiwardenv1alpha1.APIPolicy); ok {
			policies = append(policies, p)
		}
	}
	sort.Slice(policies, func(i, j int) bool { return policies[i].Name < policies[j].Name })
	return objs, policies
}

// RenderFile plans every APIPolicy of a manifest file with r and returns
// what render.WriteYAML and certmanager.WriteYAML print.
func RenderFile(t testing.TB, r render.Renderer, path string) []byte {
	t.Helper()
	objs, policies := ReadCase(t, path)
	lk := render.NewManifestLookup(objs, "default")
	var buf bytes.Buffer
	for _, p := range policies {
		plans, err := render.Plan(p, lk, r, Authz)
		if err != nil {
			t.Fatal(err)
		}
		if err := render.WriteYAML(&buf, p, plans); err != nil {
			t.Fatal(err)
		}
		if err := certmanager.WriteYAML(&buf, p, lk); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// Golden compares the output for every testdata/*.yaml with its .golden file.
func Golden(t *testing.T, r render.Renderer) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.yaml")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			got := RenderFile(t, r, in)
			golden := strings.TrimSuffix(in, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/render/... -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the renderer's output (go test ./internal/render/... -update rewrites it; review the diff):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}
