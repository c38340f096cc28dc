// Package coverage turns the exposure engine's verdicts on every object of
// the cluster into what an APIBaseline reports: counts by state, the first
// violations in a stable order, and when the answer will change by itself
// (the next exemption expiry). It is pure; the APIBaseline controller feeds
// it objects from its cache.
package coverage

import (
	"slices"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/types"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// MaxViolations bounds the violations an APIBaseline lists (the API's bound).
const MaxViolations = 20

// Object is one evaluated object.
type Object struct {
	Kind, Namespace, Name string
	// UID identifies the object for reports that reference it.
	UID     types.UID
	Verdict exposure.Verdict
}

// Summary is what one APIBaseline reports.
type Summary struct {
	Counts apiwardenv1alpha1.ExposureCounts
	// Violations are the first MaxViolations, ordered by kind, namespace,
	// name and code; Total counts them all.
	Violations []apiwardenv1alpha1.ViolationSummary
	Total      int
	// NextChange is the earliest exemption expiry after now among the
	// objects this baseline governs (zero when none).
	NextChange time.Time
}

// Summarize reports the objects that baseline governs: an object counts as
// exposed when it exposes an API and the baseline governs its namespace;
// then violating when it breaks one of the baseline's requirements, exempt
// when it falls short only where the baseline's exemptions waive it, and
// protected otherwise.
func Summarize(baseline string, objs []Object, now time.Time) Summary {
	var s Summary
	for _, o := range objs {
		v := &o.Verdict
		if !v.Exposed || !slices.Contains(v.Governed, baseline) {
			continue
		}
		s.Counts.Exposed++
		violating, exempt := false, false
		for _, x := range v.Violations {
			if x.Baseline != baseline {
				continue
			}
			violating = true
			s.Total++
			s.Violations = append(s.Violations, apiwardenv1alpha1.ViolationSummary{
				Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Code: string(x.Code), Message: Clip(x.Message, 1024),
			})
		}
		for _, x := range v.Exempted {
			exempt = exempt || x.Baseline == baseline
		}
		switch {
		case violating:
			s.Counts.Violating++
		case exempt:
			s.Counts.Exempt++
		default:
			s.Counts.Protected++
		}
		if !v.NextExpiry.IsZero() && v.NextExpiry.After(now) && (s.NextChange.IsZero() || v.NextExpiry.Before(s.NextChange)) {
			s.NextChange = v.NextExpiry
		}
	}
	sort.Slice(s.Violations, func(i, j int) bool {
		a, b := s.Violations[i], s.Violations[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Code < b.Code
	})
	if len(s.Violations) > MaxViolations {
		s.Violations = s.Violations[:MaxViolations]
	}
	return s
}

// Clip shortens s to at most n bytes, ending with "..." when it cut (n
// must exceed 3): messages from objects' fields are bounded where the API
// bounds them.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
