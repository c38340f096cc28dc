package controllers

import (
	"strings"

	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/keystore"
)

// keySetGrantNamespaces returns the namespaces whose APIKeySets a
// ReferenceGrant lets in (its from entries for apiwarden.io APIKeySet).
func keySetGrantNamespaces(g *gatewayv1.ReferenceGrant) []string {
	var out []string
	for _, f := range g.Spec.From {
		if string(f.Group) == apiwardenv1alpha1.GroupVersion.Group && f.Kind == "APIKeySet" {
			out = append(out, string(f.Namespace))
		}
	}
	return out
}

// annotatedOwner reads the "namespace/name/uid" of keystore.AnnotationOwner,
// which objects apiwarden writes into other namespaces carry instead of an
// owner reference.
func annotatedOwner(annotations map[string]string) (types.NamespacedName, bool) {
	parts := strings.Split(annotations[keystore.AnnotationOwner], "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: parts[0], Name: parts[1]}, true
}
