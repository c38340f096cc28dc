package authz

// The permissions the authz role needs, and no more: controller-gen turns
// these markers, with the metrics endpoint's in cmd/manager, into
// config/rbac/authz/role.yaml (make manifests), the ClusterRole of the Helm
// chart's separate authz Deployment; they are merged into the manager's
// ClusterRole too. Hash-store Secrets live in the APIKeySets' namespaces, so
// reading them needs a ClusterRole (RBAC cannot select by label); the
// service never writes a Secret but the pepper, which the chart allows in
// its own namespace only, by a Role.
//
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiwarden.io,resources=apipolicies;apikeysets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiwarden.io,resources=apikeysets/status,verbs=get;update;patch
