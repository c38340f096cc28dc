package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apiwarden/apiwarden/internal/testenv"
)

// fieldOwner is the field manager of the test's server-side applies.
const fieldOwner = "apiwarden-install-test"

var (
	toolMu    sync.Mutex
	toolPaths = map[string]string{}
)

// tool returns the path of a pinned tool: $ENV when it names an executable
// (KUSTOMIZE, HELM), else what hack/<name>.sh prints, which builds the tool
// from the Go module proxy on a machine that does not have it yet.
func tool(t *testing.T, name string) string {
	t.Helper()
	toolMu.Lock()
	defer toolMu.Unlock()
	if p, ok := toolPaths[name]; ok {
		return p
	}
	p, err := testenv.Tool(name)
	if err != nil {
		t.Fatal(err)
	}
	toolPaths[name] = p
	return p
}

// run runs a command in the repository's root and returns its stdout; on
// failure it returns an error holding stderr.
func run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// decodeObjects splits a multi-document YAML stream into objects, skipping
// empty documents.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("a document without kind or apiVersion: %v", u.Object)
		}
		objs = append(objs, u)
	}
}

// renderKustomize renders a kustomization directory (relative to the
// repository's root) with the pinned kustomize.
func renderKustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, err := run(tool(t, "kustomize"), "build", dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(out)
	if err != nil {
		t.Fatalf("decoding kustomize build %s: %v", dir, err)
	}
	return objs
}

// ofKind returns the objects of one kind.
func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// typed converts objs of one kind into their Go type.
func typed[T any](t *testing.T, objs []*unstructured.Unstructured, kind string) []*T {
	t.Helper()
	var out []*T
	for _, o := range ofKind(objs, kind) {
		v := new(T)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, v, true); err != nil {
			t.Fatalf("%s %s: %v", kind, o.GetName(), err)
		}
		out = append(out, v)
	}
	return out
}

// applyAll server-side applies objs to the envtest apiserver in the order
// kubectl users need: Namespaces and CRDs first (waiting until the CRDs are
// served), then everything else, and webhook configurations last, because
// once they exist the apiserver calls a webhook that does not run here.
// Everything but the Namespaces and CRDs is deleted when the test ends, so
// the next test starts from a cluster without it (and without a webhook
// configuration whose webhook does not run). beforeWebhooks, when not nil, runs just before the webhook
// configurations are applied. Every object must be accepted as it is: server-side apply fails on
// a field the object's schema does not declare.
func applyAll(t *testing.T, objs []*unstructured.Unstructured, beforeWebhooks func()) {
	t.Helper()
	ctx := context.Background()
	phase := func(o *unstructured.Unstructured) int {
		switch o.GetKind() {
		case "Namespace", "CustomResourceDefinition":
			return 0
		case "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration":
			return 2
		}
		return 1
	}
	for p := 0; p < 3; p++ {
		if p == 2 && beforeWebhooks != nil {
			beforeWebhooks()
		}
		for _, o := range objs {
			if phase(o) != p {
				continue
			}
			o = o.DeepCopy()
			if err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o),
				client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
				t.Fatalf("applying %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
			if p > 0 {
				t.Cleanup(func() {
					if err := k8s.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
						t.Errorf("deleting %s %s: %v", o.GetKind(), o.GetName(), err)
					}
				})
			}
		}
		if p == 0 {
			for _, o := range ofKind(objs, "CustomResourceDefinition") {
				waitEstablished(t, o.GetName())
			}
		}
	}
	// Read every object back: the apply above returned without error, and
	// the apiserver now holds each one.
	for _, o := range objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
			if phase(o) == 2 {
				continue // deleted by an earlier cleanup of the same name
			}
			t.Fatalf("reading back %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// waitEstablished waits until a CRD is Established, so its kind is served.
func waitEstablished(t *testing.T, name string) {
	t.Helper()
	var conds []apiextensionsv1.CustomResourceDefinitionCondition
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, err
		}
		conds = crd.Status.Conditions
		for _, c := range conds {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CRD %s is not Established: %v (conditions %v)", name, err, conds)
	}
}

// ensureNamespace creates a namespace unless it exists (Helm's
// --create-namespace: a chart does not render its own namespace).
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if err := k8s.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// webhookConfigs returns the validating webhook configurations in objs.
func webhookConfigs(t *testing.T, objs []*unstructured.Unstructured) []*admissionregistrationv1.ValidatingWebhookConfiguration {
	return typed[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration")
}

// withoutWebhooks drops the ValidatingWebhookConfigurations from objs: the
// run tests serve the webhook only on loopback, which the rendered Service
// does not reach, so the apiserver would fail every call to it.
func withoutWebhooks(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var kept []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() != "ValidatingWebhookConfiguration" {
			kept = append(kept, o)
		}
	}
	return kept
}
