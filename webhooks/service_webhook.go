package webhooks

import (
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ServicePath is where the apiserver sends Service admission reviews. The
// webhook configuration's matchConditions send only Services that can be
// exposed (LoadBalancer, NodePort, externalIPs).
const ServicePath = "/validate-v1-service"

// NewServiceValidator rejects Services that expose plain HTTP outside the
// cluster, or an API without authentication and rate limits.
func NewServiceValidator(store *Store, opts Options) *exposureValidator {
	return &exposureValidator{kind: "Service", newObj: func() client.Object { return &corev1.Service{} }, store: store, opts: opts}
}
