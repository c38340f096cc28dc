package cachetrim

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestTransform(t *testing.T) {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{
		Name:          "a",
		Annotations:   map[string]string{LastApplied: "{...}", "keep": "yes"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	out, err := Transform()(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Service)
	if got.ManagedFields != nil || got.Annotations[LastApplied] != "" || got.Annotations["keep"] != "yes" {
		t.Errorf("transform kept %v / %v", got.ManagedFields, got.Annotations)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "x"}
	if out, err := Transform()(tomb); err != nil || out != tomb {
		t.Errorf("tombstone changed: %v %v", out, err)
	}
}

func TestTransformRoute(t *testing.T) {
	r := &gatewayv1.HTTPRoute{Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
		Rules: []gatewayv1.HTTPRouteRule{{
			Matches:     []gatewayv1.HTTPRouteMatch{{QueryParams: []gatewayv1.HTTPQueryParamMatch{{Name: "api_key", Value: "x"}}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "svc"}}}},
		}},
	}, Status: gatewayv1.HTTPRouteStatus{RouteStatus: gatewayv1.RouteStatus{Parents: []gatewayv1.RouteParentStatus{{ControllerName: "x"}}}}}
	if _, err := Transform()(r); err != nil {
		t.Fatal(err)
	}
	if len(r.Status.Parents) != 0 || r.Spec.Rules[0].BackendRefs != nil {
		t.Errorf("status or backends kept: %+v", r)
	}
	if len(r.Spec.ParentRefs) != 1 || len(r.Spec.Rules[0].Matches) != 1 {
		t.Errorf("parents or matches dropped: %+v", r.Spec)
	}
}
