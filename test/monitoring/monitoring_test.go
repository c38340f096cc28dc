// Package monitoring_test checks the Grafana dashboard and the Prometheus
// alert rules under config/monitoring: they parse, every alert has a
// severity and a description, and every metric they query is one apiwarden
// declares in its code (so a renamed metric breaks this test, not a
// dashboard in production).
package monitoring_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var metricName = regexp.MustCompile(`\bapiwarden_[a-z_]+`)

// declared returns every "apiwarden_..." string literal in the project's
// non-test Go files: the metric names it registers.
func declared(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	literal := regexp.MustCompile(`"(apiwarden_[a-z_]+)"`)
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "hack") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllStringSubmatch(string(data), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func checkExpr(t *testing.T, where, expr string, names map[string]bool) {
	t.Helper()
	found := metricName.FindAllString(expr, -1)
	if len(found) == 0 && !strings.Contains(expr, "controller_runtime_webhook_requests_total") {
		t.Errorf("%s: queries no apiwarden metric: %s", where, expr)
	}
	for _, m := range found {
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(m, suffix) && names[strings.TrimSuffix(m, suffix)] {
				base = strings.TrimSuffix(m, suffix)
			}
		}
		if !names[base] {
			t.Errorf("%s: %s is not a metric apiwarden declares", where, m)
		}
	}
}

func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile("../../config/monitoring/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &rules); err != nil {
		t.Fatal(err)
	}
	names := declared(t)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.For == "" {
				t.Errorf("alert %s lacks severity, summary, description or for", r.Alert)
			}
			checkExpr(t, "alert "+r.Alert, r.Expr, names)
		}
	}
	for _, want := range []string{"APIWardenBareExposedAPI", "APIWardenKeyRotationOverdue", "APIWardenCertificateExpiringSoon", "APIWardenWebhookErrors"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("../../config/monitoring/apiwarden-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || len(dash.Panels) < 8 {
		t.Fatalf("dashboard %q has uid %q and %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	names := declared(t)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr, names)
		}
	}
}
