package webhooks

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// HTTPRoutePath is where the apiserver sends HTTPRoute admission reviews.
const HTTPRoutePath = "/validate-gateway-networking-k8s-io-v1-httproute"

// NewHTTPRouteValidator rejects HTTPRoutes attached to a Gateway without an
// APIPolicy (on the route or the Gateway) that authenticates and rate limits,
// and routes that match credentials in query strings.
func NewHTTPRouteValidator(store *Store, opts Options) *exposureValidator {
	return &exposureValidator{kind: "HTTPRoute", newObj: func() client.Object { return &gatewayv1.HTTPRoute{} }, store: store, opts: opts}
}
