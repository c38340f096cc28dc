package policyreport

// Installing the PolicyReport CRD (the manager's --install-policyreport-crd)
// needs create on CRDs, which RBAC cannot limit by name. controller-gen
// turns this marker into config/rbac/policyreport-crd-installer/role.yaml
// (make manifests), a ClusterRole of its own that config/default binds and
// the Helm chart binds only with policyReports.installCRD.
//
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=create
