package controllers

// The permissions the controllers role needs. controller-gen turns these
// markers into config/rbac/role.yaml (make manifests).

// +kubebuilder:rbac:groups=apiwarden.io,resources=apibaselines;apipolicies;apikeysets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiwarden.io,resources=apibaselines/status;apipolicies/status;apikeysets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
