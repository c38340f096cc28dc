// Package v1alpha1 contains the apiwarden.io/v1alpha1 API: APIBaseline (what
// every exposed API in a cluster must have), APIPolicy (how one API is
// protected) and APIKeySet (the consumers of an API and their keys).
//
// The package depends on apimachinery alone, so that clients, the CLI and
// other projects can import it without pulling in controller-runtime.
//
// +kubebuilder:object:generate=true
// +groupName=apiwarden.io
package v1alpha1
