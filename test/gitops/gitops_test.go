// Package gitops checks the examples in docs/gitops.md: every YAML block
// parses, and the APIPolicy health checks for Argo CD (a Lua script) and
// Flux (CEL expressions) judge APIPolicies in each state of their Enforced
// condition as the document says, run by the interpreters those tools use
// (gopher-lua; cel-go with the options Flux's runtime/cel sets).
package gitops

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	lua "github.com/yuin/gopher-lua"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// yamlBlocks returns the fenced ```yaml blocks of a Markdown file, each
// decoded into its documents.
func yamlBlocks(t *testing.T, path string) [][]map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]map[string]any
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(data, -1) {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(m[1]), 4096)
		var docs []map[string]any
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("a yaml block in %s does not parse: %v\n%s", path, err, m[1])
			}
			if doc != nil {
				docs = append(docs, doc)
			}
		}
		out = append(out, docs)
	}
	if len(out) == 0 {
		t.Fatalf("no yaml blocks in %s", path)
	}
	return out
}

// examples are the health checks docs/gitops.md gives.
type examples struct {
	lua                   string
	celCurrent, celFailed string
}

func readExamples(t *testing.T) examples {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var ex examples
	for _, docs := range yamlBlocks(t, filepath.Join(root, "docs", "gitops.md")) {
		for _, d := range docs {
			u := unstructured.Unstructured{Object: d}
			if u.GetKind() == "" {
				continue // a fragment, such as one object's annotations
			}
			if u.GetKind() == "ConfigMap" && u.GetName() == "argocd-cm" {
				ex.lua, _, _ = unstructured.NestedString(d, "data", "resource.customizations.health.apiwarden.io_APIPolicy")
			}
			if u.GetKind() == "Kustomization" {
				checks, _, _ := unstructured.NestedSlice(d, "spec", "healthCheckExprs")
				for _, c := range checks {
					m, _ := c.(map[string]any)
					if m["kind"] == "APIPolicy" {
						ex.celCurrent, _ = m["current"].(string)
						ex.celFailed, _ = m["failed"].(string)
					}
				}
			}
		}
	}
	if ex.lua == "" || ex.celCurrent == "" || ex.celFailed == "" {
		t.Fatalf("docs/gitops.md lacks the Argo CD Lua check or the Flux CEL checks for APIPolicy: %+v", ex)
	}
	return ex
}

// policy returns an APIPolicy of generation 2 whose Enforced condition has
// status and reason (none when status is empty), observed at generation
// observed, as the API server returns it.
func policy(t *testing.T, status metav1.ConditionStatus, reason string, observed int64) map[string]any {
	t.Helper()
	p := &apiwardenv1alpha1.APIPolicy{}
	p.SetGroupVersionKind(apiwardenv1alpha1.GroupVersion.WithKind("APIPolicy"))
	p.Name, p.Namespace, p.Generation = "shop-api", "shop", 2
	p.Spec.TargetRefs = []apiwardenv1alpha1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "shop-api"}}
	if status != "" {
		p.Status.ObservedGeneration = observed
		p.Status.Conditions = []metav1.Condition{
			{Type: apiwardenv1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: apiwardenv1alpha1.ReasonAccepted, Message: "the policy is valid", ObservedGeneration: observed, LastTransitionTime: metav1.Now()},
			{Type: apiwardenv1alpha1.ConditionEnforced, Status: status, Reason: reason, Message: "test message", ObservedGeneration: observed, LastTransitionTime: metav1.Now()},
		}
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var cases = []struct {
	name     string
	status   metav1.ConditionStatus
	reason   string
	observed int64
	argo     string // Argo CD health status
	flux     string // kstatus status Flux computes
}{
	{"not reconciled yet", "", "", 0, "Progressing", "InProgress"},
	{"enforced", metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced, 2, "Healthy", "Current"},
	{"partially enforced", metav1.ConditionTrue, apiwardenv1alpha1.ReasonPartiallyEnforced, 2, "Healthy", "Current"},
	{"dry run", metav1.ConditionFalse, apiwardenv1alpha1.ReasonDryRun, 2, "Healthy", "Current"},
	{"applied before its route", metav1.ConditionFalse, apiwardenv1alpha1.ReasonTargetNotFound, 2, "Healthy", "Current"},
	{"waiting for the CEL admission params", metav1.ConditionFalse, apiwardenv1alpha1.ReasonAdmissionParamsPending, 2, "Progressing", "InProgress"},
	{"conflicted", metav1.ConditionFalse, apiwardenv1alpha1.ReasonConflicted, 2, "Degraded", "Failed"},
	{"invalid", metav1.ConditionFalse, apiwardenv1alpha1.ReasonInvalid, 2, "Degraded", "Failed"},
	{"reconcile error", metav1.ConditionFalse, apiwardenv1alpha1.ReasonReconcileError, 2, "Degraded", "Failed"},
	{"enforced, for an older generation", metav1.ConditionTrue, apiwardenv1alpha1.ReasonEnforced, 1, "Progressing", "InProgress"},
	{"failed, for an older generation", metav1.ConditionFalse, apiwardenv1alpha1.ReasonInvalid, 1, "Progressing", "InProgress"},
}

// TestArgoCDHealthCheck runs the Lua health check as Argo CD does: the
// object as the global table obj, the script's return value a table with
// status and message.
func TestArgoCDHealthCheck(t *testing.T) {
	script := readExamples(t).lua
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			L := lua.NewState(lua.Options{SkipOpenLibs: true})
			defer L.Close()
			for _, open := range []lua.LGFunction{lua.OpenBase, lua.OpenTable, lua.OpenString, lua.OpenMath} {
				L.Push(L.NewFunction(open))
				L.Call(0, 0)
			}
			L.SetGlobal("obj", toLua(L, policy(t, tc.status, tc.reason, tc.observed)))
			if err := L.DoString(script); err != nil {
				t.Fatalf("the script fails: %v", err)
			}
			ret, ok := L.Get(-1).(*lua.LTable)
			if !ok {
				t.Fatalf("the script returned %v, not a table", L.Get(-1))
			}
			if got := ret.RawGetString("status").String(); got != tc.argo {
				t.Errorf("health %s (%s), want %s", got, ret.RawGetString("message"), tc.argo)
			}
			if tc.argo != "Progressing" && ret.RawGetString("message").String() != tc.reason+": test message" {
				t.Errorf("message %q does not carry the condition's reason and message", ret.RawGetString("message"))
			}
		})
	}
}

// toLua converts a JSON-like value into Lua values, as Argo CD passes an
// object to its health scripts.
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case map[string]any:
		tbl := L.NewTable()
		for k, e := range x {
			tbl.RawSetString(k, toLua(L, e))
		}
		return tbl
	case []any:
		tbl := L.NewTable()
		for _, e := range x {
			tbl.Append(toLua(L, e))
		}
		return tbl
	case string:
		return lua.LString(x)
	case bool:
		return lua.LBool(x)
	case int64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case nil:
		return lua.LNil
	}
	panic("toLua: unexpected type")
}

// TestFluxHealthCheckExprs evaluates the CEL expressions as Flux's
// kustomize-controller does (fluxcd/pkg/runtime/cel): parsed, not compiled,
// with the object's top-level fields as variables; InProgress when
// status.observedGeneration lags metadata.generation, else Failed when
// failed holds, Current when current holds, InProgress otherwise.
func TestFluxHealthCheckExprs(t *testing.T) {
	ex := readExamples(t)
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(), ext.Sets(), ext.Encoders(),
	)
	if err != nil {
		t.Fatal(err)
	}
	program := func(expr string) cel.Program {
		ast, iss := env.Parse(expr)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("%s: %v", expr, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		return prg
	}
	current, failed := program(ex.celCurrent), program(ex.celFailed)
	eval := func(prg cel.Program, obj map[string]any) bool {
		out, _, err := prg.Eval(obj)
		if err != nil {
			t.Fatalf("evaluating: %v", err)
		}
		b, ok := out.(types.Bool)
		if !ok {
			t.Fatalf("the expression returned %v, not a bool", out)
		}
		return bool(b)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := policy(t, tc.status, tc.reason, tc.observed)
			got := "InProgress"
			observed, found, _ := unstructured.NestedInt64(obj, "status", "observedGeneration")
			switch {
			case found && observed != 2:
			case eval(failed, obj):
				got = "Failed"
			case eval(current, obj):
				got = "Current"
			}
			if got != tc.flux {
				t.Errorf("Flux status %s, want %s", got, tc.flux)
			}
		})
	}
}
