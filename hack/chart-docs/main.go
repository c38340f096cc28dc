// Command chart-docs writes the Helm chart's README (charts/apiwarden/README.md)
// from the comments in its values.yaml, so the documentation of every value
// is written once, beside the value. `make chart-docs` runs it; its test
// fails when the committed README is not what it would write.
//
// A comment directly above a key documents that key. A mapping whose keys
// are documented is a section (its keys are listed one by one); any other
// value, including a mapping whose keys carry no comments (such as
// resources), is one row with its default shown as JSON. A value without a
// comment is an error: every value must say what it does.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

func main() {
	values := flag.String("values", "charts/apiwarden/values.yaml", "The chart's values.yaml.")
	chart := flag.String("chart", "charts/apiwarden/Chart.yaml", "The chart's Chart.yaml.")
	out := flag.String("out", "charts/apiwarden/README.md", "Where to write the README.")
	flag.Parse()
	doc, err := Generate(*chart, *values)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart-docs:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, doc, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "chart-docs:", err)
		os.Exit(1)
	}
}

// row is one documented value.
type row struct {
	key, typ, def, doc string
}

// Generate returns the README for the chart whose Chart.yaml and values.yaml
// are at the given paths.
func Generate(chartPath, valuesPath string) ([]byte, error) {
	var meta struct {
		Name        string `yaml:"name"`
		Description string `yaml:"description"`
		Version     string `yaml:"version"`
		AppVersion  string `yaml:"appVersion"`
		KubeVersion string `yaml:"kubeVersion"`
	}
	data, err := os.ReadFile(chartPath)
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return nil, fmt.Errorf("%s: %w", chartPath, err)
	}
	data, err = os.ReadFile(valuesPath)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", valuesPath, err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a mapping", valuesPath)
	}
	var rows []row
	if err := walk(root.Content[0], "", &rows, true); err != nil {
		return nil, err
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "<!-- Generated from values.yaml by `make chart-docs` (hack/chart-docs); do not edit. -->\n")
	fmt.Fprintf(&b, "# %s\n\n", meta.Name)
	fmt.Fprintf(&b, "Chart version %s, apiwarden %s.\n\n", meta.Version, meta.AppVersion)
	fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(meta.Description))
	b.WriteString(intro)
	fmt.Fprintf(&b, "Kubernetes: `%s`.\n\n", meta.KubeVersion)
	b.WriteString("## Values\n\n")
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", r.key, r.typ, escape(r.def), escape(r.doc))
	}
	return b.Bytes(), nil
}

// intro is the hand-written part of the README: how to install, and what the
// modes mean. It lives here, not in the README, because the README is
// generated whole.
const intro = "## Install\n\n" +
	"```sh\n" +
	"helm install apiwarden charts/apiwarden --namespace apiwarden-system --create-namespace\n" +
	"```\n\n" +
	"The CRDs are in `crds/`: Helm installs them with the chart but never upgrades or deletes them; " +
	"apply `charts/apiwarden/crds/` yourself on upgrade (`kubectl apply --server-side -f charts/apiwarden/crds/`). " +
	"Label the release namespace `pod-security.kubernetes.io/enforce=restricted`: every pod the chart makes meets that standard.\n\n" +
	"With `webhook.certificate.mode: cert-manager` (the default) the chart needs cert-manager: it makes a Certificate " +
	"(self-signed, or from `webhook.certificate.issuerRef`) and cert-manager's cainjector copies its CA into the " +
	"ValidatingWebhookConfiguration. `self-managed` needs no cert-manager: every webhook replica " +
	"(`--webhook-cert-mode=self-managed`) keeps a CA and serving certificate in the Secret `<fullname>-webhook-cert`, " +
	"serves it from memory the moment it changes, injects the CA into the ValidatingWebhookConfiguration " +
	"(the chart grants get, list, watch and update of that one object, by name) and renews the certificate when a third " +
	"of `duration` is left and the CA when a third of `caDuration` is left, with the old and new CA both trusted " +
	"during the change, so no admission fails (docs/install.md).\n\n" +
	"`roles` chooses what the manager runs; `authz.separateDeployment: true` runs the authz service as its own " +
	"Deployment, scaled by `authz.replicas`. `defaultBaseline.mode` other than `\"off\"` creates an APIBaseline " +
	"that governs the namespaces `defaultBaseline.namespaceSelector` selects.\n\n" +
	"`values.schema.json` checks every value's type and allowed values; `helm install` refuses a wrong one " +
	"with its path (`at '/replicas': got string, want integer`).\n\n"

// walk appends a row per documented value under node, whose key path is
// prefix. A section's own comment is not a row.
func walk(node *yaml.Node, prefix string, rows *[]row, top bool) error {
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		key := k.Value
		if prefix != "" {
			key = prefix + "." + k.Value
		}
		doc := comment(k.HeadComment, top)
		if doc == "" {
			return fmt.Errorf("values.yaml: %s has no comment above it", key)
		}
		if v.Kind == yaml.MappingNode && documented(v) {
			if err := walk(v, key, rows, false); err != nil {
				return err
			}
			continue
		}
		def, typ, err := describe(v)
		if err != nil {
			return fmt.Errorf("values.yaml: %s: %w", key, err)
		}
		*rows = append(*rows, row{key: key, typ: typ, def: def, doc: doc})
	}
	return nil
}

// documented reports whether every key of a mapping has a comment.
func documented(m *yaml.Node) bool {
	if len(m.Content) == 0 {
		return false
	}
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].HeadComment == "" {
			return false
		}
	}
	return true
}

// comment turns a head comment into one line of text. On top-level keys the
// file's leading comment, separated by a blank line, is dropped.
func comment(c string, top bool) string {
	if top {
		if i := strings.LastIndex(c, "\n\n"); i >= 0 {
			c = c[i+2:]
		}
	}
	var words []string
	for _, line := range strings.Split(c, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if line != "" {
			words = append(words, line)
		}
	}
	return strings.Join(words, " ")
}

// describe returns a value's default as compact JSON and its type's name.
func describe(v *yaml.Node) (string, string, error) {
	var x any
	if err := v.Decode(&x); err != nil {
		return "", "", err
	}
	j, err := json.Marshal(x)
	if err != nil {
		return "", "", err
	}
	typ := "object"
	switch x.(type) {
	case string:
		typ = "string"
	case int, int64, uint64:
		typ = "int"
	case float64:
		typ = "float"
	case bool:
		typ = "bool"
	case []any:
		typ = "list"
	case nil:
		typ = "null"
	}
	return string(j), typ, nil
}

// escape keeps a cell's text from breaking the Markdown table.
func escape(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
