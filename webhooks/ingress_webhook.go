package webhooks

import (
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// IngressPath is where the apiserver sends Ingress admission reviews.
const IngressPath = "/validate-networking-k8s-io-v1-ingress"

// NewIngressValidator rejects Ingresses whose hosts lack TLS or whose
// backends lack authentication and rate limits, as the baselines require.
func NewIngressValidator(store *Store, opts Options) *exposureValidator {
	return &exposureValidator{kind: "Ingress", newObj: func() client.Object { return &networkingv1.Ingress{} }, store: store, opts: opts}
}
