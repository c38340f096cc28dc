package webhooks

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// GRPCRoutePath is where the apiserver sends GRPCRoute admission reviews.
const GRPCRoutePath = "/validate-gateway-networking-k8s-io-v1-grpcroute"

// NewGRPCRouteValidator rejects GRPCRoutes attached to a Gateway without an
// APIPolicy (on the route or the Gateway) that authenticates and rate limits.
func NewGRPCRouteValidator(store *Store, opts Options) *exposureValidator {
	return &exposureValidator{kind: "GRPCRoute", newObj: func() client.Object { return &gatewayv1.GRPCRoute{} }, store: store, opts: opts}
}
