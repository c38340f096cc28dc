package webhooks

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// GatewayPath is where the apiserver sends Gateway admission reviews.
const GatewayPath = "/validate-gateway-networking-k8s-io-v1-gateway"

// NewGatewayValidator rejects Gateways with plain-HTTP listeners that no
// APIPolicy redirects to HTTPS.
func NewGatewayValidator(store *Store, opts Options) *exposureValidator {
	return &exposureValidator{kind: "Gateway", newObj: func() client.Object { return &gatewayv1.Gateway{} }, store: store, opts: opts}
}
