package controllers

// The permissions the controllers role needs. controller-gen turns these
// markers into config/rbac/role.yaml (make manifests).

// +kubebuilder:rbac:groups=apiwarden.io,resources=apibaselines;apipolicies;apikeysets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiwarden.io,resources=apibaselines/status;apipolicies/status;apikeysets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// APIPolicy controller: reads targets and CRDs, applies rendered objects.
// +kubebuilder:rbac:groups=apiwarden.io,resources=apipolicies/finalizers,verbs=update
// The compiled admission policies name their APIBaseline as owner with
// blockOwnerDeletion, which OwnerReferencesPermissionEnforcement checks.
// +kubebuilder:rbac:groups=apiwarden.io,resources=apibaselines/finalizers,verbs=update
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways;grpcroutes,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=referencegrants,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=gateway.envoyproxy.io,resources=securitypolicies;backendtrafficpolicies;clienttrafficpolicies,verbs=get;create;patch;delete
// Traefik (--gateway=traefik): its CRDs, and the annotations it reads on
// Ingresses (patch above; apiwarden sets only its own keys).
// +kubebuilder:rbac:groups=traefik.io,resources=middlewares;tlsoptions;ingressroutes,verbs=get;create;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;create;patch;delete
// The certificate-cleanup finalizer is added and removed on APIPolicies.
// +kubebuilder:rbac:groups=apiwarden.io,resources=apipolicies,verbs=update;patch

// APIBaseline coverage scan: reads every object the engine evaluates.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// PolicyReports: one per governed namespace. Installing the CRD when it is
// missing (--install-policyreport-crd) needs create on CRDs, which cannot be
// limited by name: that rule is a ClusterRole of its own, generated from
// internal/policyreport's marker, so an installation that does not install
// the CRD does not grant it.
// +kubebuilder:rbac:groups=wgpolicyk8s.io,resources=policyreports,verbs=get;list;watch;create;patch;delete

// CEL admission: compiled ValidatingAdmissionPolicies and bindings, and the
// params ConfigMap (apiwarden-coverage) of each governed namespace.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;patch;delete
