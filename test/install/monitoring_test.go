package install

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// TestChartPrometheusOperator renders the chart's ServiceMonitor and
// PrometheusRule and applies them, with the Prometheus Operator's own CRDs
// (test/crds, make monitoring-crds), to the real apiserver, which checks
// them against the CRDs' schemas. The ServiceMonitor must select the
// metrics Service by its labels and name its port, scheme https with
// Prometheus's token; the PrometheusRule must hold config/monitoring's
// alerts unchanged.
func TestChartPrometheusOperator(t *testing.T) {
	helmPath = tool(t, "helm")
	const release, namespace = "aw-prom", "aw-prom-system"
	objs, in := renderChart(t, release, namespace, []string{"metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
		"metrics.serviceMonitor.labels.release=kube-prometheus"})
	var crds []*unstructured.Unstructured
	for _, f := range []string{"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, "test", "crds", f))
		if err != nil {
			t.Fatal(err)
		}
		o, err := decodeObjects(data)
		if err != nil {
			t.Fatal(err)
		}
		crds = append(crds, o...)
	}
	monitors, rules := ofKind(objs, "ServiceMonitor"), ofKind(objs, "PrometheusRule")
	if len(monitors) != 1 || len(rules) != 1 {
		t.Fatalf("%d ServiceMonitors and %d PrometheusRules, want one of each", len(monitors), len(rules))
	}
	ensureNamespace(t, namespace)
	applyAll(t, append(crds, monitors[0], rules[0]), nil)

	sm := monitors[0]
	if sm.GetLabels()["release"] != "kube-prometheus" {
		t.Errorf("the ServiceMonitor's labels %v lack the extra label", sm.GetLabels())
	}
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("%d endpoints, want 1", len(endpoints))
	}
	ep := endpoints[0].(map[string]any)
	selected := 0
	for _, s := range in.services {
		if !labels.SelectorFromSet(sel).Matches(labels.Set(s.Labels)) {
			continue
		}
		selected++
		if s.Name != release+"-apiwarden-metrics" {
			t.Errorf("the ServiceMonitor selects Service %s", s.Name)
		}
		named := false
		for _, p := range s.Spec.Ports {
			named = named || (p.Name == ep["port"] && p.Port == 8443)
		}
		if !named {
			t.Errorf("the metrics Service has no port %v on 8443", ep["port"])
		}
	}
	if selected != 1 {
		t.Errorf("the ServiceMonitor selects %d Services, want the metrics Service", selected)
	}
	if ep["scheme"] != "https" || ep["bearerTokenFile"] == nil {
		t.Errorf("the endpoint does not scrape over HTTPS with Prometheus's token: %v", ep)
	}

	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "monitoring", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var alerts map[string]any
	if err := yaml.Unmarshal(data, &alerts); err != nil {
		t.Fatal(err)
	}
	groups, _, _ := unstructured.NestedSlice(rules[0].Object, "spec", "groups")
	if len(groups) == 0 || !equality.Semantic.DeepEqual(any(groups), alerts["groups"]) {
		t.Errorf("the PrometheusRule's groups are not config/monitoring/alerts.yaml's:\n%v", groups)
	}
}
