package controllers

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apiwarden/apiwarden/internal/coverage"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

// TestAnnounceBudget: a scan records at most MaxEvents Events, the next
// scans record the rest, nothing is recorded twice, and a violation that is
// fixed and comes back is recorded again.
func TestAnnounceBudget(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	r := &APIBaselineReconciler{Recorder: rec, MaxEvents: 3, reported: map[string]bool{}}
	var objs []coverage.Object
	var raw []client.Object
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("svc-%d", i)
		raw = append(raw, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID(name)}})
		objs = append(objs, coverage.Object{Kind: "Service", Namespace: "shop", Name: name, Verdict: exposure.Verdict{Exposed: true, Governed: []string{"default"},
			Violations: []exposure.Violation{{Code: exposure.CodeInsecurePort, Baseline: "default", Message: "no TLS"}, {Code: exposure.CodeAuthMissing, Baseline: "default", Message: "no auth"}}}})
	}
	drain := func() int {
		n := 0
		for {
			select {
			case e := <-rec.Events:
				// One Event per object for all its new codes.
				if e != "Warning InsecurePort APIBaseline default: no TLS no auth" {
					t.Errorf("Event %q", e)
				}
				n++
			default:
				return n
			}
		}
	}
	if more := r.announce("default", objs, raw); !more || drain() != 3 {
		t.Fatalf("first scan: more=%v", more)
	}
	if more := r.announce("default", objs, raw); more || drain() != 2 {
		t.Fatalf("second scan: more=%v", more)
	}
	if more := r.announce("default", objs, raw); more || drain() != 0 {
		t.Fatalf("a resync recorded Events again")
	}
	fixed := append([]coverage.Object(nil), objs...)
	fixed[0].Verdict.Violations = nil
	r.announce("default", fixed, raw)
	r.announce("default", objs, raw)
	if n := drain(); n != 1 {
		t.Fatalf("a violation fixed and back: %d Events, want 1", n)
	}
}
