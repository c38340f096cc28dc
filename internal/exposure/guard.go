package exposure

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// LostProtection describes, for one object (ref, such as "HTTPRoute
// shop/api"), what a change to a policy would take away under baselines
// with the given action: the protections and the baselines that require
// them; empty when nothing. The webhook's APIPolicy guard and the CEL
// guard's params (Guard) both word it so.
func LostProtection(ref string, lost []Violation, action apiwardenv1alpha1.EnforcementAction) string {
	var what []string
	baselines := map[string]bool{}
	for _, v := range lost {
		if v.Action == action {
			if p := v.Code.Protection(); !slices.Contains(what, p) {
				what = append(what, p)
			}
			baselines[v.Baseline] = true
		}
	}
	if len(what) == 0 {
		return ""
	}
	return fmt.Sprintf("%s (%s, required by APIBaseline %s)", ref, strings.Join(what, ", "), strings.Join(slices.Sorted(maps.Keys(baselines)), ", "))
}

// LevelKeys returns the targets whose policies protect obj: its own, and
// its backend Services (an Ingress) or parent Gateways (a route).
func LevelKeys(obj runtime.Object) []TargetKey {
	switch o := obj.(type) {
	case *networkingv1.Ingress:
		keys := []TargetKey{{Group: GroupNetworking, Kind: "Ingress", Namespace: o.Namespace, Name: o.Name}}
		for _, s := range IngressBackendServices(o) {
			keys = append(keys, TargetKey{Group: GroupCore, Kind: "Service", Namespace: o.Namespace, Name: s})
		}
		return keys
	case *corev1.Service:
		return []TargetKey{{Group: GroupCore, Kind: "Service", Namespace: o.Namespace, Name: o.Name}}
	case *gatewayv1.Gateway:
		return []TargetKey{{Group: GroupGateway, Kind: "Gateway", Namespace: o.Namespace, Name: o.Name}}
	case *gatewayv1.HTTPRoute:
		return append([]TargetKey{{Group: GroupGateway, Kind: "HTTPRoute", Namespace: o.Namespace, Name: o.Name}}, RouteParentGateways(o.Namespace, o.Spec.ParentRefs)...)
	case *gatewayv1.GRPCRoute:
		return append([]TargetKey{{Group: GroupGateway, Kind: "GRPCRoute", Namespace: o.Namespace, Name: o.Name}}, RouteParentGateways(o.Namespace, o.Spec.ParentRefs)...)
	}
	return nil
}

// without is a Snapshot that leaves one policy out.
type without struct {
	Snapshot
	p *apiwardenv1alpha1.APIPolicy
}

func (w without) PoliciesFor(k TargetKey) []*apiwardenv1alpha1.APIPolicy {
	ps := w.Snapshot.PoliciesFor(k)
	if !slices.Contains(ps, w.p) {
		return ps
	}
	out := make([]*apiwardenv1alpha1.APIPolicy, 0, len(ps)-1)
	for _, p := range ps {
		if p != w.p {
			out = append(out, p)
		}
	}
	return out
}

// GuardKey is the params key that lists, for the CEL guard on APIPolicy
// deletion, the policies whose deletion a Deny baseline forbids.
const GuardKey = "guard"

// Guard computes the GuardKey value of namespace ns: one record per APIPolicy
// of ns whose deletion would leave one of objs (the exposed objects of ns)
// without a protection a Deny-action baseline of snap requires: the record
// is RecordSeparator, the policy's name, ParamsSeparator and the objects as
// the webhook's guard lists them (LostProtection, "; "-separated, sorted by
// name, the first ten). Objects being deleted are not counted.
func Guard(snap Snapshot, policies []*apiwardenv1alpha1.APIPolicy, objs []client.Object, ns string, now time.Time, opts Options) string {
	sorted := slices.Clone(objs)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].GetName() < sorted[j].GetName() })
	var records []string
	for _, p := range policies {
		if p.Namespace != ns {
			continue
		}
		targets := PolicyTargetKeys(p)
		after := without{Snapshot: snap, p: p}
		var lines []string
		for _, obj := range sorted {
			if obj.GetDeletionTimestamp() != nil || obj.GetNamespace() != ns {
				continue
			}
			protected := false
			for _, k := range LevelKeys(obj) {
				protected = protected || slices.Contains(targets, k)
			}
			if !protected {
				continue
			}
			before, err := Evaluate(obj, snap, now, opts)
			if err != nil {
				continue
			}
			afterV, err := Evaluate(obj, after, now, opts)
			if err != nil {
				continue
			}
			kind, _ := KindOf(obj)
			if l := LostProtection(kind+" "+obj.GetNamespace()+"/"+obj.GetName(), Introduced(before.Violations, afterV.Violations), apiwardenv1alpha1.EnforcementActionDeny); l != "" {
				lines = append(lines, l)
			}
		}
		if len(lines) == 0 {
			continue
		}
		if len(lines) > maxListedCEL {
			lines = append(lines[:maxListedCEL], fmt.Sprintf("… and %d more", len(lines)-maxListedCEL))
		}
		records = append(records, p.Name+ParamsSeparator+strings.Join(lines, "; "))
	}
	sort.Strings(records)
	return RecordSeparator + strings.Join(records, RecordSeparator) + RecordSeparator
}
