package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestREADMECurrent fails when charts/apiwarden/README.md is not what
// `make chart-docs` writes from the current values.yaml.
func TestREADMECurrent(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(root, "charts", "apiwarden")
	want, err := Generate(filepath.Join(chart, "Chart.yaml"), filepath.Join(chart, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(chart, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("charts/apiwarden/README.md is stale: run make chart-docs")
	}
	// Spot checks that the table holds what values.yaml says.
	for _, s := range []string{"| `replicas` | int | `2` |", "| `defaultBaseline.mode` | string | `\"off\"` |", "| `resources` | object |"} {
		if !strings.Contains(string(want), s) {
			t.Errorf("the README lacks %q", s)
		}
	}
}

// TestUndocumentedValue checks that a value without a comment is refused.
func TestUndocumentedValue(t *testing.T) {
	dir := t.TempDir()
	chart := filepath.Join(dir, "Chart.yaml")
	values := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(chart, []byte("name: x\nversion: 0.1.0\nappVersion: \"1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(values, []byte("# Documented.\na: 1\nb:\n  # Documented too.\n  c: 2\n  d: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(chart, values); err == nil || !strings.Contains(err.Error(), "b has no comment") {
		t.Fatalf("want an error naming b, got %v", err)
	}
}
