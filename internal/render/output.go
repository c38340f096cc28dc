package render

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// WriteYAML prints plans as a YAML stream that `kubectl apply -f` accepts:
// each target's outcome, notes and (for DryRun) what would be blocked as
// comments, then its objects as documents.
func WriteYAML(w io.Writer, p *apiwardenv1alpha1.APIPolicy, plans []TargetPlan) error {
	for _, tp := range plans {
		fmt.Fprintf(w, "# APIPolicy %s/%s -> %s %s", p.Namespace, p.Name, tp.Ref.Kind, tp.Ref.Name)
		if tp.Ref.SectionName != nil {
			fmt.Fprintf(w, " (section %s)", *tp.Ref.SectionName)
		}
		fmt.Fprintf(w, ": %s\n", tp.Outcome)
		if tp.Message != "" {
			fmt.Fprintf(w, "#   %s\n", oneLine(tp.Message))
		}
		if tp.Input.AuthPolicy != "" {
			fmt.Fprintf(w, "#   authentication inherited from APIPolicy %s on the parent Gateway\n", tp.Input.AuthPolicy)
		}
		if tp.Result.NotEnforced != "" {
			fmt.Fprintf(w, "#   not enforced: %s\n", oneLine(tp.Result.NotEnforced))
		}
		for _, n := range tp.Result.Unsupported {
			fmt.Fprintf(w, "#   note: %s: %s\n", n.Field, oneLine(n.Message))
		}
		for _, b := range tp.Result.WouldBlock {
			fmt.Fprintf(w, "#   dry run: %s\n", oneLine(b))
		}
		if len(tp.Result.TargetAnnotations) > 0 {
			// Annotations on the target, which belongs to someone else: a
			// command to run, not a document that would replace it.
			keys := make([]string, 0, len(tp.Result.TargetAnnotations))
			for k := range tp.Result.TargetAnnotations {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprintf(w, "#   on the target: kubectl -n %s annotate --overwrite %s %s", p.Namespace, strings.ToLower(tp.Ref.Kind), tp.Ref.Name)
			for _, k := range keys {
				fmt.Fprintf(w, " %s=%s", k, oneLine(tp.Result.TargetAnnotations[k]))
			}
			fmt.Fprintln(w)
		}
		for _, o := range tp.Result.Objects {
			doc, err := MarshalYAML(o)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "---\n%s", doc); err != nil {
				return err
			}
		}
	}
	return nil
}

// oneLine keeps a message on its comment line whatever it contains.
func oneLine(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ") }

// MarshalYAML renders an object without the empty fields the Go types carry
// (creationTimestamp: null, status: {}), as a person would write it.
func MarshalYAML(o client.Object) ([]byte, error) {
	data, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	delete(m, "status")
	return yaml.Marshal(m)
}

// ManifestLookup is a Lookup over objects read from manifests, for
// `apiwarden render` and tests.
type ManifestLookup struct {
	objects  map[exposure.TargetKey]client.Object
	policies *exposure.MemorySnapshot
}

// NewManifestLookup indexes objects: targets by key, APIPolicies by target.
// Objects without a namespace are put in defaultNamespace, as kubectl would.
func NewManifestLookup(objs []runtime.Object, defaultNamespace string) *ManifestLookup {
	l := &ManifestLookup{objects: map[exposure.TargetKey]client.Object{}}
	var policies []*apiwardenv1alpha1.APIPolicy
	for _, o := range objs {
		co, ok := o.(client.Object)
		if !ok {
			continue
		}
		if co.GetNamespace() == "" {
			co.SetNamespace(defaultNamespace)
		}
		if p, ok := co.(*apiwardenv1alpha1.APIPolicy); ok {
			policies = append(policies, p)
			continue
		}
		kind, ok := exposure.KindOf(o)
		if !ok {
			continue
		}
		l.objects[exposure.TargetKey{Group: targetGroup(kind), Kind: kind, Namespace: co.GetNamespace(), Name: co.GetName()}] = co
	}
	l.policies = exposure.NewMemorySnapshot(nil, policies, nil)
	return l
}

// Target implements Lookup.
func (l *ManifestLookup) Target(k exposure.TargetKey) (client.Object, error) {
	if o, ok := l.objects[k]; ok {
		return o, nil
	}
	return nil, nil
}

// PoliciesFor implements Lookup.
func (l *ManifestLookup) PoliciesFor(k exposure.TargetKey) []*apiwardenv1alpha1.APIPolicy {
	return l.policies.PoliciesFor(k)
}

// targetGroup is the API group of a kind an APIPolicy can target.
func targetGroup(kind string) string {
	switch kind {
	case "Ingress":
		return "networking.k8s.io"
	case "Service":
		return ""
	}
	return GatewayGroup
}
