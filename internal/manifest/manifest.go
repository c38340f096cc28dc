// Package manifest reads Kubernetes manifests (multi-document YAML or JSON)
// from files, directories and streams, keeping the file and line of each
// document, and decodes the kinds apiwarden checks into typed objects. Input
// is untrusted: every malformed document is an error naming its file and
// line, never a panic.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// MaxDocumentBytes bounds one document, as the apiserver bounds objects.
const MaxDocumentBytes = 3 << 20

// MaxFileBytes bounds one input file or stream.
const MaxFileBytes = 64 << 20

// Object is one decoded document.
type Object struct {
	// File is the path the document came from ("-" for standard input).
	File string
	// Line is the 1-based line where the document starts.
	Line int
	// GVK is the document's group, version and kind.
	GVK schema.GroupVersionKind
	// Obj is the typed object, for the kinds apiwarden understands; nil
	// for others, which are skipped.
	Obj runtime.Object
}

// Error is a document that could not be read, with its location.
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

var (
	scheme  = runtime.NewScheme()
	decoder runtime.Decoder
)

func init() {
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(apiwardenv1alpha1.AddToScheme(scheme))
	decoder = serializer.NewCodecFactory(scheme).UniversalDeserializer()
}

// servedAs maps older versions whose schema is v1's to the v1 kind apiwarden
// evaluates, as the apiserver serves them (webhooks see them with
// matchPolicy: Equivalent).
var servedAs = map[schema.GroupVersionKind]schema.GroupVersionKind{
	gatewayv1.SchemeGroupVersion.WithKind("Gateway"):                     gatewayv1.SchemeGroupVersion.WithKind("Gateway"),
	{Group: gatewayv1.GroupName, Version: "v1beta1", Kind: "Gateway"}:    gatewayv1.SchemeGroupVersion.WithKind("Gateway"),
	{Group: gatewayv1.GroupName, Version: "v1beta1", Kind: "HTTPRoute"}:  gatewayv1.SchemeGroupVersion.WithKind("HTTPRoute"),
	{Group: gatewayv1.GroupName, Version: "v1alpha2", Kind: "GRPCRoute"}: gatewayv1.SchemeGroupVersion.WithKind("GRPCRoute"),
}

// Unevaluated reports whether a kind is one apiwarden governs in a version
// it cannot read, so callers can say so rather than pass it silently.
func Unevaluated(gvk schema.GroupVersionKind) bool {
	if understood[gvk] {
		return false
	}
	switch gvk.Group {
	case gatewayv1.GroupName:
		return gvk.Kind == "Gateway" || gvk.Kind == "HTTPRoute" || gvk.Kind == "GRPCRoute"
	case networkingv1.GroupName, "extensions":
		return gvk.Kind == "Ingress"
	}
	return false
}

// UnknownAPIWarden reports whether gvk is an apiwarden.io kind, or
// version, that this build does not read. Such an object (a policy, a
// baseline) changes the verdicts, so callers refuse the input rather than
// skip it.
func UnknownAPIWarden(gvk schema.GroupVersionKind) bool {
	return gvk.Group == apiwardenv1alpha1.GroupVersion.Group && !understood[gvk]
}

// understood lists the kinds decoded into typed objects.
var understood = map[schema.GroupVersionKind]bool{
	corev1.SchemeGroupVersion.WithKind("Service"):          true,
	corev1.SchemeGroupVersion.WithKind("Namespace"):        true,
	networkingv1.SchemeGroupVersion.WithKind("Ingress"):    true,
	gatewayv1.SchemeGroupVersion.WithKind("Gateway"):       true,
	gatewayv1.SchemeGroupVersion.WithKind("HTTPRoute"):     true,
	gatewayv1.SchemeGroupVersion.WithKind("GRPCRoute"):     true,
	apiwardenv1alpha1.GroupVersion.WithKind("APIBaseline"): true,
	apiwardenv1alpha1.GroupVersion.WithKind("APIPolicy"):   true,
	apiwardenv1alpha1.GroupVersion.WithKind("APIKeySet"):   true,
}

// ReadPaths reads every path: "-" is standard input, a directory is walked
// recursively for *.yaml, *.yml and *.json files in lexical order.
func ReadPaths(paths []string, stdin io.Reader) ([]Object, error) {
	var out []Object
	for _, p := range paths {
		if p == "-" {
			objs, err := Read("-", stdin)
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, &Error{File: p, Line: 0, Err: err}
		}
		var files []string
		if fi.IsDir() {
			err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if !d.IsDir() && isManifest(path) {
					files = append(files, path)
				}
				return nil
			})
			if err != nil {
				return nil, &Error{File: p, Err: err}
			}
			sort.Strings(files)
		} else {
			files = []string{p}
		}
		for _, f := range files {
			objs, err := readFile(f)
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
	}
	return out, nil
}

func isManifest(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func readFile(path string) ([]Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	defer f.Close()
	return Read(path, f)
}

// Read reads one stream of documents named name.
func Read(name string, r io.Reader) ([]Object, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, &Error{File: name, Err: err}
	}
	if len(data) > MaxFileBytes {
		return nil, &Error{File: name, Line: 1, Err: fmt.Errorf("input exceeds %d bytes", MaxFileBytes)}
	}
	var out []Object
	for _, doc := range split(data) {
		obj, err := decodeDoc(doc.body)
		if err != nil {
			line := doc.line
			if l := errorLine(err); l > 0 {
				line = doc.first + l - 1
			}
			return nil, &Error{File: name, Line: line, Err: err}
		}
		if obj == nil {
			continue
		}
		for _, o := range obj {
			o.File, o.Line = name, doc.line
			out = append(out, o)
		}
	}
	return out, nil
}

type document struct {
	body  []byte
	first int // line of the document's first line, separator excluded
	line  int // line of its first meaningful line
}

// split cuts a stream at "---" separator lines, keeping line numbers.
func split(data []byte) []document {
	var docs []document
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), MaxFileBytes+1)
	var cur bytes.Buffer
	first, meaningful, n := 1, 0, 0
	flush := func() {
		if meaningful > 0 {
			docs = append(docs, document{body: append([]byte(nil), cur.Bytes()...), first: first, line: meaningful})
		}
		cur.Reset()
		meaningful = 0
		first = n + 1
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		// A document marker is "---" alone or followed by a space: what
		// follows on the line (a comment, a tag, content) belongs to the
		// new document.
		if line == "---" || strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "---\t") || line == "..." {
			flush()
			if rest := strings.TrimSpace(strings.TrimPrefix(line, "---")); rest != "" && rest != "..." && !strings.HasPrefix(rest, "#") {
				line = rest
			} else {
				continue
			}
		}
		t := strings.TrimSpace(line)
		if meaningful == 0 && t != "" && !strings.HasPrefix(t, "#") {
			meaningful = n
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

var lineRE = regexp.MustCompile(`line (\d+)`)

func errorLine(err error) int {
	m := lineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// decodeDoc decodes one document; a List yields its items.
func decodeDoc(body []byte) ([]Object, error) {
	if len(body) > MaxDocumentBytes {
		return nil, fmt.Errorf("document exceeds %d bytes", MaxDocumentBytes)
	}
	js, err := yaml.YAMLToJSON(body)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, nil
	}
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if head.APIVersion == "" || head.Kind == "" {
		return nil, errors.New("not a Kubernetes object: apiVersion and kind are required")
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("apiVersion %q: %w", head.APIVersion, err)
	}
	if head.Kind == "List" || strings.HasSuffix(head.Kind, "List") && len(head.Items) > 0 {
		var out []Object
		for i, item := range head.Items {
			objs, err := decodeDoc(item)
			if err != nil {
				return nil, fmt.Errorf("items[%d]: %w", i, err)
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	gvk := gv.WithKind(head.Kind)
	if as, ok := servedAs[gvk]; ok && as != gvk {
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", head.Kind, err)
		}
		m["apiVersion"] = as.GroupVersion().String()
		if js, err = json.Marshal(m); err != nil {
			return nil, err
		}
		gvk = as
	}
	if !understood[gvk] {
		return []Object{{GVK: gvk}}, nil
	}
	obj, _, err := decoder.Decode(js, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", head.Kind, err)
	}
	return []Object{{GVK: gvk, Obj: obj}}, nil
}
