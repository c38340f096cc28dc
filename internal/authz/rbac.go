package authz

// The permissions the authz role needs, and no more: controller-gen turns
// these markers, with the metrics endpoint's in cmd/manager, into
// config/rbac/authz/role.yaml (make manifests), the ClusterRole of the Helm
// chart's separate authz Deployment; they are merged into the manager's
// ClusterRole too. Hash-store Secrets live in the APIKeySets' namespaces, so
// reading them needs a ClusterRole (RBAC cannot select by label). The
// service never writes a Secret, not even the pepper, which the controllers
// create: an account that may create Secrets in a namespace may mint a
// token for any ServiceAccount there.
//
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiwarden.io,resources=apipolicies;apikeysets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiwarden.io,resources=apikeysets/status,verbs=get;update;patch
