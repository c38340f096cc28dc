package coverage

import (
	"testing"
	"time"

	"github.com/apiwarden/apiwarden/internal/exposure"
)

func TestSummarize(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	soon, later := now.Add(time.Hour), now.Add(2*time.Hour)
	objs := []Object{
		{Kind: "Ingress", Namespace: "a", Name: "ok", Verdict: exposure.Verdict{Exposed: true, Governed: []string{"b"}}},
		{Kind: "Ingress", Namespace: "a", Name: "z-bad", Verdict: exposure.Verdict{Exposed: true, Governed: []string{"b"}, Violations: []exposure.Violation{
			{Code: "TLSMissing", Baseline: "b", Message: "no TLS"}, {Code: "AuthMissing", Baseline: "b", Message: "no auth"}}}},
		{Kind: "Ingress", Namespace: "a", Name: "other-baseline", Verdict: exposure.Verdict{Exposed: true, Governed: []string{"b", "c"}, Violations: []exposure.Violation{
			{Code: "TLSMissing", Baseline: "c"}}}},
		{Kind: "Service", Namespace: "a", Name: "exempt", Verdict: exposure.Verdict{Exposed: true, Governed: []string{"b"}, NextExpiry: later,
			Exempted: []exposure.Violation{{Code: "InsecurePort", Baseline: "b"}}}},
		{Kind: "Service", Namespace: "a", Name: "exempt-soon", Verdict: exposure.Verdict{Exposed: true, Governed: []string{"b"}, NextExpiry: soon,
			Exempted: []exposure.Violation{{Code: "InsecurePort", Baseline: "b"}}}},
		{Kind: "Service", Namespace: "a", Name: "hidden", Verdict: exposure.Verdict{Exposed: false, Governed: []string{"b"}}},
		{Kind: "Service", Namespace: "x", Name: "ungoverned", Verdict: exposure.Verdict{Exposed: true}},
	}
	s := Summarize("b", objs, now)
	if s.Counts.Exposed != 5 || s.Counts.Protected != 2 || s.Counts.Exempt != 2 || s.Counts.Violating != 1 {
		t.Errorf("counts = %+v", s.Counts)
	}
	if s.Total != 2 || len(s.Violations) != 2 || s.Violations[0].Code != "AuthMissing" || s.Violations[1].Code != "TLSMissing" {
		t.Errorf("violations = %+v (total %d)", s.Violations, s.Total)
	}
	if !s.NextChange.Equal(soon) {
		t.Errorf("next change = %v, want %v", s.NextChange, soon)
	}
	many := make([]Object, 0, 30)
	for i := 0; i < 30; i++ {
		many = append(many, Object{Kind: "Ingress", Name: string(rune('a' + i)), Verdict: exposure.Verdict{Exposed: true, Governed: []string{"b"},
			Violations: []exposure.Violation{{Code: "TLSMissing", Baseline: "b"}}}})
	}
	if s := Summarize("b", many, now); len(s.Violations) != MaxViolations || s.Total != 30 || s.Counts.Violating != 30 {
		t.Errorf("bounded list: %d listed, total %d", len(s.Violations), s.Total)
	}
}
