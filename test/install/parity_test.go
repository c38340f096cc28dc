package install

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/sets"
)

// TestChartMatchesKustomize keeps the two ways to install apiwarden alike:
// the chart with its defaults renders the same kinds, in the same numbers,
// as config/default (but the Namespace and the CRDs, which the chart keeps
// in crds/), and the same manager pod: security contexts, probes, ports,
// volumes mounted, and flags (by name; the values name the objects of each).
func TestChartMatchesKustomize(t *testing.T) {
	helmPath = tool(t, "helm")
	kobjs := renderKustomize(t, "config/default")
	out, err := helmTemplate("apiwarden", defaultNamespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	hobjs, err := decodeObjects(out)
	if err != nil {
		t.Fatal(err)
	}
	kk, hk := map[string]int{}, map[string]int{}
	for _, o := range kobjs {
		if o.GetKind() != "Namespace" && o.GetKind() != "CustomResourceDefinition" {
			kk[o.GetKind()]++
		}
	}
	for _, o := range hobjs {
		hk[o.GetKind()]++
	}
	if !equality.Semantic.DeepEqual(kk, hk) {
		t.Errorf("config/default renders %v, the chart %v", kk, hk)
	}

	kd, hd := decodeInstall(t, kobjs).deployments, decodeInstall(t, hobjs).deployments
	if len(kd) != 1 || len(hd) != 1 {
		t.Fatalf("%d and %d Deployments, want 1 each", len(kd), len(hd))
	}
	kp, hp := kd[0].Spec.Template.Spec, hd[0].Spec.Template.Spec
	if !equality.Semantic.DeepEqual(kp.SecurityContext, hp.SecurityContext) {
		t.Errorf("pod securityContext differs:\nkustomize %+v\nchart     %+v", kp.SecurityContext, hp.SecurityContext)
	}
	if *kp.TerminationGracePeriodSeconds != *hp.TerminationGracePeriodSeconds || *kd[0].Spec.Replicas != *hd[0].Spec.Replicas {
		t.Error("grace period or replicas differ")
	}
	kc, hc := kp.Containers[0], hp.Containers[0]
	for what, pair := range map[string][2]any{
		"securityContext": {kc.SecurityContext, hc.SecurityContext},
		"readinessProbe":  {kc.ReadinessProbe, hc.ReadinessProbe},
		"livenessProbe":   {kc.LivenessProbe, hc.LivenessProbe},
		"ports":           {kc.Ports, hc.Ports},
		"resources":       {kc.Resources, hc.Resources},
	} {
		if !equality.Semantic.DeepEqual(pair[0], pair[1]) {
			t.Errorf("container %s differs:\nkustomize %+v\nchart     %+v", what, pair[0], pair[1])
		}
	}
	mounts := func(c []string) []string { slices.Sort(c); return c }
	var km, hm []string
	for _, m := range kc.VolumeMounts {
		km = append(km, m.MountPath)
	}
	for _, m := range hc.VolumeMounts {
		hm = append(hm, m.MountPath)
	}
	if !slices.Equal(mounts(km), mounts(hm)) {
		t.Errorf("volume mounts differ: %v and %v", km, hm)
	}
	flagNames := func(args []string) sets.Set[string] {
		s := sets.New[string]()
		for _, a := range args {
			name, _, _ := strings.Cut(a, "=")
			s.Insert(name)
		}
		return s
	}
	// The chart sets a few defaults explicitly that config/default leaves to
	// the manager; every flag config/default sets, the chart sets too.
	if missing := flagNames(kc.Args).Difference(flagNames(hc.Args)); missing.Len() > 0 {
		t.Errorf("the chart does not set %v, which config/default sets", sets.List(missing))
	}
}
