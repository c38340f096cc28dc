package crd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestEveryFieldIsDocumented walks the generated CRDs: every property must
// carry a description, because it is what `kubectl explain` prints, and every
// string and list must be bounded, so no field is an unbounded input.
func TestEveryFieldIsDocumented(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) != 3 {
		t.Fatalf("want 3 CRDs in config/crd/bases, got %d (%v)", len(files), err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(crd.Spec.Names.ShortNames) != 1 || len(crd.Spec.Names.Categories) != 1 || crd.Spec.Names.Categories[0] != "apiwarden" {
			t.Errorf("%s: want one short name and the apiwarden category, got %v %v", crd.Name, crd.Spec.Names.ShortNames, crd.Spec.Names.Categories)
		}
		for _, v := range crd.Spec.Versions {
			if v.Subresources == nil || v.Subresources.Status == nil {
				t.Errorf("%s %s: status is not a subresource", crd.Name, v.Name)
			}
			walk(t, crd.Spec.Names.Kind, v.Schema.OpenAPIV3Schema, false)
		}
	}
}

func walk(t *testing.T, path string, s *apiextensionsv1.JSONSchemaProps, inStatus bool) {
	t.Helper()
	if s == nil {
		return
	}
	for name, p := range s.Properties {
		child := path + "." + name
		// apiVersion, kind and metadata belong to apimachinery, and label
		// selectors are metav1.LabelSelector, bounded by the apiserver.
		if (path == rootPath(path) && (name == "apiVersion" || name == "kind" || name == "metadata")) ||
			strings.HasSuffix(path, "elector") {
			continue
		}
		if strings.TrimSpace(p.Description) == "" {
			t.Errorf("%s has no description", child)
		}
		status := inStatus || child == path+".status"
		// metadata and metav1 types (conditions, label selectors) are
		// apimachinery's; status is written by apiwarden, not users.
		if !status {
			if p.Type == "string" && p.MaxLength == nil && len(p.Enum) == 0 && p.Format != "date-time" {
				t.Errorf("%s is an unbounded string: add MaxLength or an enum", child)
			}
			if p.Type == "array" && p.MaxItems == nil {
				t.Errorf("%s is an unbounded list: add MaxItems", child)
			}
			if it := p.Items; p.Type == "array" && it != nil && it.Schema != nil && it.Schema.Type == "string" &&
				it.Schema.MaxLength == nil && len(it.Schema.Enum) == 0 {
				t.Errorf("%s has unbounded string items: add items:MaxLength or an enum", child)
			}
		}
		walk(t, child, &p, status)
		if p.Items != nil && p.Items.Schema != nil {
			walk(t, child+"[]", p.Items.Schema, status)
		}
	}
}

// rootPath returns the kind at the start of a walk path.
func rootPath(path string) string {
	kind, _, _ := strings.Cut(path, ".")
	return kind
}
