// Package webhooks holds apiwarden's admission handlers, one file per
// admitted kind. Handlers decide nothing themselves: they ask
// internal/exposure and turn its verdict into an admission response. They
// never import the controllers package.
package webhooks

// The permissions the webhook role needs to read its cache. controller-gen
// merges these markers into config/rbac/role.yaml (make manifests).

// +kubebuilder:rbac:groups=apiwarden.io,resources=apibaselines;apipolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces;services,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways;httproutes;grpcroutes,verbs=get;list;watch
