package webhooks

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestOnlyGatewayAnnotationsChanged: an update that only sets or removes
// the gateway annotations apiwarden writes is let through without a
// verdict; any other change is judged.
func TestOnlyGatewayAnnotationsChanged(t *testing.T) {
	base := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders", ResourceVersion: "1",
		Annotations: map[string]string{"team": "orders"}},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "shop.example.com"}}}}
	cases := map[string]struct {
		mutate func(*networkingv1.Ingress)
		want   bool
	}{
		"gateway annotations added": {func(i *networkingv1.Ingress) {
			i.Annotations["traefik.ingress.kubernetes.io/router.middlewares"] = "shop-auth@kubernetescrd"
			i.ResourceVersion = "2"
		}, true},
		"nothing but the version": {func(i *networkingv1.Ingress) { i.ResourceVersion = "2" }, true},
		"another annotation":      {func(i *networkingv1.Ingress) { i.Annotations["team"] = "payments" }, false},
		"a Traefik annotation apiwarden does not write": {func(i *networkingv1.Ingress) {
			i.Annotations["traefik.ingress.kubernetes.io/service.serversscheme"] = "h2c"
		}, false},
		"the spec": {func(i *networkingv1.Ingress) { i.Spec.Rules[0].Host = "admin.example.com" }, false},
		"a label":  {func(i *networkingv1.Ingress) { i.Labels = map[string]string{"exposed": "true"} }, false},
	}
	for name, tc := range cases {
		obj := base.DeepCopy()
		tc.mutate(obj)
		if got := onlyGatewayAnnotationsChanged(base, obj); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
		// And in the other direction: removal.
		if got := onlyGatewayAnnotationsChanged(obj, base); got != tc.want {
			t.Errorf("%s, reversed: %v, want %v", name, got, tc.want)
		}
	}
}
