package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ApplyCompiled exposes apply to the external tests: one compiled object
// written by a reconciler that has just started.
func (r *AdmissionPolicyReconciler) ApplyCompiled(ctx context.Context, o client.Object) error {
	return r.apply(ctx, o)
}
