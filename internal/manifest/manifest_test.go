package manifest

import (
	"errors"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

func TestReadLocatesDocuments(t *testing.T) {
	in := `# leading comment
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a}
---

# second
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: c}}
`
	objs, err := Read("in.yaml", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind  string
		line  int
		typed bool
	}{{"Ingress", 2, true}, {"ConfigMap", 8, false}, {"Service", 13, true}}
	if len(objs) != len(want) {
		t.Fatalf("got %d objects, want %d", len(objs), len(want))
	}
	for i, w := range want {
		if objs[i].GVK.Kind != w.kind || objs[i].Line != w.line || (objs[i].Obj != nil) != w.typed {
			t.Errorf("object %d: got %s at line %d (typed %v), want %s at line %d (typed %v)",
				i, objs[i].GVK.Kind, objs[i].Line, objs[i].Obj != nil, w.kind, w.line, w.typed)
		}
	}
	if in, ok := objs[0].Obj.(*networkingv1.Ingress); !ok || in.Name != "a" {
		t.Errorf("the Ingress was not decoded: %#v", objs[0].Obj)
	}
}

func TestReadSeparatorsAndOlderVersions(t *testing.T) {
	in := `apiVersion: v1
kind: Service
metadata: {name: a}
--- # the route
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec: {parentRefs: [{name: edge}]}
--- {apiVersion: networking.k8s.io/v1beta1, kind: Ingress, metadata: {name: old}}
`
	objs, err := Read("in.yaml", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("want 3 documents, got %d: %+v", len(objs), objs)
	}
	if objs[1].Obj == nil || objs[1].GVK.Version != "v1" || objs[1].Line != 5 {
		t.Errorf("the v1beta1 HTTPRoute was not read as v1 at line 5: %+v", objs[1])
	}
	if objs[2].Obj != nil || !Unevaluated(objs[2].GVK) || objs[2].Line != 9 {
		t.Errorf("the v1beta1 Ingress should be reported as unevaluated at line 9: %+v", objs[2])
	}
}

func TestReadErrors(t *testing.T) {
	cases := []struct {
		name, in string
		line     int
		msg      string
	}{
		{"bad YAML in the second document", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: [\n", 6, "not valid YAML"},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", 1, "apiVersion and kind are required"},
		{"a scalar", "hello\n", 1, "not a Kubernetes object"},
		{"bad apiVersion", "apiVersion: a/b/c\nkind: X\n", 1, "apiVersion"},
		{"wrong field type", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nspec: {rules: 5}\n", 1, "decoding Ingress"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read("f.yaml", strings.NewReader(c.in))
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("want a located error, got %v", err)
			}
			if me.Line != c.line || me.File != "f.yaml" || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %q at line %d, want %q at line %d", err, me.Line, c.msg, c.line)
			}
		})
	}
}

// FuzzRead feeds arbitrary bytes to the manifest reader: it returns objects
// or a located error, and never panics.
func FuzzRead(f *testing.F) {
	f.Add([]byte("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: a}\nspec: {rules: [{host: a}]}\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {type: LoadBalancer}}]\n"))
	f.Add([]byte("---\n---\n...\n"))
	f.Add([]byte("{\"apiVersion\":\"gateway.networking.k8s.io/v1\",\"kind\":\"HTTPRoute\"}"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Read("fuzz.yaml", strings.NewReader(string(data)))
		if err != nil {
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("unlocated error %v", err)
			}
			return
		}
		for _, o := range objs {
			if o.Line < 1 {
				t.Fatalf("object without a line: %+v", o)
			}
		}
	})
}
