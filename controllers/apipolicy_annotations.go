package controllers

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// Some gateways (Traefik's Ingress provider) read their configuration from
// annotations on the target itself. apiwarden sets those keys, and only
// those, by server-side apply under a field manager of their own, lists the
// target among the policy's rendered objects, and removes the keys (an empty
// apply under the same manager) when the policy no longer renders them or
// goes away. The target itself is never created, taken over or deleted.

// targetFieldManager is the field manager of the annotations p sets on its
// targets: one per policy, so removing one policy's annotations never
// touches another's (a conflicting policy's, say).
func targetFieldManager(p *apiwardenv1alpha1.APIPolicy) string {
	return "apiwarden-target/" + string(p.UID)
}

// annotationsFinalizer is set on a policy that annotated a target, so the
// annotations are removed before the policy goes.
const annotationsFinalizer = "apiwarden.io/target-annotations"

// annotatedKinds are the target kinds apiwarden annotates; apiwarden never
// renders objects of these kinds, so a rendered entry of one is an
// annotated target.
var annotatedKinds = []schema.GroupVersionKind{{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}}

// annotatedRef is the rendered-object entry that records annotations on the
// target ref names; false when apiwarden does not annotate its kind.
func annotatedRef(ref apiwardenv1alpha1.PolicyTargetReference) (apiwardenv1alpha1.RenderedObject, bool) {
	for _, gvk := range annotatedKinds {
		if gvk.Group == ref.Group && gvk.Kind == ref.Kind {
			return apiwardenv1alpha1.RenderedObject{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: ref.Name}, true
		}
	}
	return apiwardenv1alpha1.RenderedObject{}, false
}

func isAnnotatedTarget(ro apiwardenv1alpha1.RenderedObject) bool {
	gv, err := schema.ParseGroupVersion(ro.APIVersion)
	return err == nil && slices.Contains(annotatedKinds, gv.WithKind(ro.Kind))
}

// annotateTarget sets anns on target. It returns the entry that records it
// among the rendered objects.
func (r *APIPolicyReconciler) annotateTarget(ctx context.Context, p *apiwardenv1alpha1.APIPolicy, ref apiwardenv1alpha1.PolicyTargetReference, target client.Object, anns map[string]string) (apiwardenv1alpha1.RenderedObject, error) {
	ro, ok := annotatedRef(ref)
	if !ok {
		return ro, fmt.Errorf("apiwarden does not annotate %s objects", ref.Kind)
	}
	gv, err := schema.ParseGroupVersion(ro.APIVersion)
	if err != nil {
		return ro, err
	}
	gvk := gv.WithKind(ro.Kind)
	if !controllerutil.ContainsFinalizer(p, annotationsFinalizer) {
		controllerutil.AddFinalizer(p, annotationsFinalizer)
		if err := r.Client.Update(ctx, p); err != nil {
			return ro, fmt.Errorf("adding the %s finalizer: %w", annotationsFinalizer, err)
		}
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(p.Namespace)
	u.SetName(ref.Name)
	u.SetAnnotations(anns)
	data, err := u.MarshalJSON()
	if err != nil {
		return ro, err
	}
	key := "annotations/" + ro.APIVersion + "/" + ro.Kind + "/" + u.GetNamespace() + "/" + u.GetName()
	// Skip an apply that would change nothing, unless the cached target
	// lacks what was applied (someone removed the annotations, or
	// recreated the Ingress): then apply again at once.
	if _, same := r.applied.seen(key, data); same && hasAnnotations(target, anns) {
		return ro, nil
	}
	if err := r.Client.Patch(ctx, u, client.Apply, client.FieldOwner(targetFieldManager(p)), client.ForceOwnership); err != nil {
		r.applied.forget(key)
		return ro, fmt.Errorf("annotating %s %s/%s: %w", ro.Kind, u.GetNamespace(), u.GetName(), err)
	}
	r.applied.remember(key, data)
	return ro, nil
}

// hasAnnotations reports whether o carries every one of anns.
func hasAnnotations(o client.Object, anns map[string]string) bool {
	if o == nil {
		return false
	}
	have := o.GetAnnotations()
	for k, v := range anns {
		if have[k] != v {
			return false
		}
	}
	return true
}

// unannotateTarget removes the annotations p set on the target ro names
// (nothing when it is gone or p set none).
func (r *APIPolicyReconciler) unannotateTarget(ctx context.Context, p *apiwardenv1alpha1.APIPolicy, ro apiwardenv1alpha1.RenderedObject) error {
	namespace, manager := p.Namespace, targetFieldManager(p)
	gv, err := schema.ParseGroupVersion(ro.APIVersion)
	if err != nil {
		return nil
	}
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(gv.WithKind(ro.Kind))
	if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ro.Name}, live); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !slices.ContainsFunc(live.ManagedFields, func(m metav1.ManagedFieldsEntry) bool { return m.Manager == manager }) {
		return nil
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gv.WithKind(ro.Kind))
	u.SetNamespace(namespace)
	u.SetName(ro.Name)
	// An apply that names no field releases every field this manager
	// owned: the annotations go, the rest of the object stays.
	if err := r.Client.Patch(ctx, u, client.Apply, client.FieldOwner(manager), client.ForceOwnership); err != nil {
		return client.IgnoreNotFound(err)
	}
	r.applied.forget("annotations/" + ro.APIVersion + "/" + ro.Kind + "/" + namespace + "/" + ro.Name)
	return nil
}

// finalizeAnnotations removes the annotations p set on its targets and
// releases p's annotations finalizer; it reports whether p changed. It
// looks at the targets the status lists and those the spec names (an
// apply whose status write failed is listed in neither the status nor
// anywhere else); the field manager check makes either safe.
func (r *APIPolicyReconciler) finalizeAnnotations(ctx context.Context, p *apiwardenv1alpha1.APIPolicy) (bool, error) {
	if !controllerutil.ContainsFinalizer(p, annotationsFinalizer) {
		return false, nil
	}
	var targets []apiwardenv1alpha1.RenderedObject
	for _, t := range p.Status.Targets {
		for _, ro := range t.Rendered {
			if isAnnotatedTarget(ro) && !slices.Contains(targets, ro) {
				targets = append(targets, ro)
			}
		}
	}
	for _, ref := range p.Spec.TargetRefs {
		if ro, ok := annotatedRef(ref); ok && !slices.Contains(targets, ro) {
			targets = append(targets, ro)
		}
	}
	for _, ro := range targets {
		if err := r.unannotateTarget(ctx, p, ro); err != nil {
			return false, fmt.Errorf("removing apiwarden's annotations from %s %s: %w", ro.Kind, ro.Name, err)
		}
	}
	controllerutil.RemoveFinalizer(p, annotationsFinalizer)
	return true, nil
}
