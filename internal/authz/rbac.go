package authz

// The cluster-wide permissions the authz role needs, and no more:
// controller-gen turns these markers, with the metrics endpoint's in
// cmd/manager, into config/rbac/authz/role.yaml (make manifests), the
// ClusterRole of the Helm chart's separate authz Deployment; they are merged
// into the manager's ClusterRole too.
//
// Secrets are not among them: the service reads only apiwarden's own
// namespace, where the hash stores and the pepper live, through a Role the
// chart renders for that namespace (a marker cannot name the release
// namespace). It writes no Secret: an account that may create Secrets in a
// namespace may mint a token for any ServiceAccount there.
//
// +kubebuilder:rbac:groups=apiwarden.io,resources=apipolicies;apikeysets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiwarden.io,resources=apikeysets/status,verbs=get;update;patch
