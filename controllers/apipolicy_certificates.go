package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/certmanager"
)

// certificateCRD is the CRD client certificates need; referenceGrantCRD the
// one that grants them other namespaces.
var (
	certificateCRD    = crdName(cmv1.SchemeGroupVersion.WithKind(cmv1.CertificateKind))
	referenceGrantCRD = crdName(gatewayv1.SchemeGroupVersion.WithKind("ReferenceGrant"))
)

// certManagerInstalled reports whether cert-manager's Certificate CRD exists.
func (r *APIPolicyReconciler) certManagerInstalled() bool {
	return r.crds.has(certificateCRD)
}

// startCertificateWatch watches cert-manager Certificates, mapping each to
// the policy that controls it, once cert-manager's CRDs exist.
func (r *APIPolicyReconciler) startCertificateWatch() error {
	return r.ctrl.Watch(source.Kind(r.Cache, client.Object(&cmv1.Certificate{}), handler.EnqueueRequestsFromMapFunc(certificatePolicy)))
}

// reconcileCertificates applies the policy's client Certificates, deletes
// those of consumers no longer listed, and returns their status and the
// CertificatesReady condition (nil when the policy asks for none and had
// none).
func (r *APIPolicyReconciler) reconcileCertificates(ctx context.Context, p *apiwardenv1alpha1.APIPolicy) ([]apiwardenv1alpha1.CertificateStatus, *metav1.Condition, error) {
	fromSets, err := r.keySetConsumers(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	want, notes, err := certmanager.ForPolicy(p, cacheLookup{ctx: ctx, r: r}, fromSets...)
	if err != nil {
		c := cond(apiwardenv1alpha1.ConditionCertificatesReady, false, apiwardenv1alpha1.ReasonInvalid, err.Error())
		return nil, &c, nil
	}
	if !r.certManagerInstalled() {
		if len(want) == 0 {
			return nil, nil, nil
		}
		c := cond(apiwardenv1alpha1.ConditionCertificatesReady, false, apiwardenv1alpha1.ReasonCertManagerNotInstalled,
			fmt.Sprintf("the CRD %s is not installed; install cert-manager, and apiwarden requests the %d certificates", certificateCRD, len(want)))
		return nil, &c, nil
	}
	wanted := map[string]bool{}
	refused := map[string]string{} // namespace/name -> why not granted
	crossNS := false
	for _, c := range want {
		key := c.Namespace + "/" + c.Name
		if c.Namespace != p.Namespace {
			why, err := secretGranted(ctx, r.Reader, p.Namespace, c.Namespace, c.Spec.SecretName)
			if err != nil {
				return nil, nil, err
			}
			if why != "" {
				refused[key] = why
				continue
			}
			crossNS = true
		}
		wanted[key] = true
	}
	if crossNS {
		// Certificates in other namespaces carry no owner reference; the
		// finalizer lets apiwarden delete them with the policy.
		if err := r.ensureFinalizer(ctx, p); err != nil {
			return nil, nil, err
		}
	}
	// One Certificate that cannot be applied (a name taken by another
	// object, say) does not stop the others: it is reported in status,
	// and retried with backoff unless the refusal lasts.
	applyFailed := map[string]string{} // namespace/name -> why
	var retry []error
	for _, c := range want {
		key := c.Namespace + "/" + c.Name
		if wanted[key] {
			if err := r.apply(ctx, p, c); err != nil {
				applyFailed[key] = err.Error()
				if !errors.As(err, new(notControlledError)) {
					retry = append(retry, err)
				}
			}
		}
	}
	// Prune: this policy's Certificates, in any namespace, no longer wanted.
	live, err := r.pruneCertificates(ctx, p, wanted)
	if err != nil {
		return nil, nil, err
	}
	if len(want) == 0 {
		return nil, nil, nil
	}
	out := make([]apiwardenv1alpha1.CertificateStatus, 0, len(want))
	notReady := 0
	var first string
	for _, w := range want {
		cs := apiwardenv1alpha1.CertificateStatus{Name: w.Name, SecretName: w.Spec.SecretName, Ready: metav1.ConditionUnknown, Reason: "Pending",
			Usage: apiwardenv1alpha1.CertificateUsageClient, Consumer: w.Labels[certmanager.LabelConsumer]}
		if w.Namespace != p.Namespace {
			cs.Namespace = w.Namespace
		}
		if why := refused[w.Namespace+"/"+w.Name]; why != "" {
			cs.Ready, cs.Reason = metav1.ConditionFalse, "NotGranted"
			notes = append(notes, render.Note{Field: "spec.authentication.mtls.clients", Message: "consumer " + cs.Consumer + ": " + why})
		}
		if why := applyFailed[w.Namespace+"/"+w.Name]; why != "" {
			cs.Ready, cs.Reason = metav1.ConditionFalse, "ApplyFailed"
			notes = append(notes, render.Note{Field: "spec.authentication.mtls", Message: why})
		}
		if l := w.Annotations[certmanager.AnnotationListener]; l != "" {
			cs.Usage, cs.Listener = apiwardenv1alpha1.CertificateUsageServer, l
		}
		if c := live[w.Namespace+"/"+w.Name]; c != nil {
			for _, cc := range c.Status.Conditions {
				if cc.Type == cmv1.CertificateConditionReady {
					cs.Ready, cs.Reason = metav1.ConditionStatus(cc.Status), cc.Reason
				}
			}
			cs.NotAfter, cs.RenewalTime = c.Status.NotAfter, c.Status.RenewalTime
		}
		if cs.Ready == metav1.ConditionTrue {
			cs.Reason = ""
		} else {
			notReady++
			if first == "" {
				first = cs.Name
			}
		}
		out = append(out, cs)
	}
	msg := fmt.Sprintf("%d certificates issued", len(out))
	for _, n := range notes {
		msg += "; " + n.Message
	}
	c := cond(apiwardenv1alpha1.ConditionCertificatesReady, true, apiwardenv1alpha1.ReasonIssued, msg)
	if notReady > 0 {
		msg := fmt.Sprintf("%d of %d certificates are not ready (first: %s); kubectl describe certificate says why", notReady, len(out), first)
		for _, n := range notes {
			msg += "; " + n.Message
		}
		c = cond(apiwardenv1alpha1.ConditionCertificatesReady, false, apiwardenv1alpha1.ReasonCertificatesNotReady, msg)
	}
	return out, &c, errors.Join(retry...)
}

// certificateExpiry exports, at every scrape, the seconds until each client
// certificate apiwarden requested expires, from the informer cache.
// Cardinality: one series per certificate, bounded by the consumers listed
// in APIPolicies (at most 1000 each) and the HTTPS listeners they serve.
type certificateExpiry struct {
	r    *APIPolicyReconciler
	desc *prometheus.Desc
	now  func() time.Time
}

func newCertificateExpiry(r *APIPolicyReconciler) *certificateExpiry {
	return &certificateExpiry{r: r, now: time.Now, desc: prometheus.NewDesc("apiwarden_certificate_expiry_seconds",
		"Seconds until each certificate apiwarden requested from cert-manager expires (negative once expired), by namespace, policy, certificate and usage (client or server).",
		[]string{"namespace", "policy", "certificate", "usage"}, nil)}
}

// Describe implements prometheus.Collector.
func (e *certificateExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- e.desc }

// Collect implements prometheus.Collector.
func (e *certificateExpiry) Collect(ch chan<- prometheus.Metric) {
	if !e.r.certManagerInstalled() {
		return
	}
	var list cmv1.CertificateList
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.r.Cache.List(ctx, &list, client.MatchingLabels{render.LabelManagedBy: render.ManagedBy}); err != nil {
		return
	}
	now := e.now()
	for i := range list.Items {
		c := &list.Items[i]
		if c.Status.NotAfter == nil {
			continue
		}
		usage := "client"
		if c.Annotations[certmanager.AnnotationListener] != "" {
			usage = "server"
		}
		ch <- prometheus.MustNewConstMetric(e.desc, prometheus.GaugeValue, c.Status.NotAfter.Sub(now).Seconds(),
			c.Namespace, c.Labels[render.LabelPolicy], c.Name, usage)
	}
}

// keySetConsumers lists the consumers of the APIKeySets a policy names, when
// its mTLS clients say fromKeySets: Enabled. A missing APIKeySet adds none.
func (r *APIPolicyReconciler) keySetConsumers(ctx context.Context, p *apiwardenv1alpha1.APIPolicy) ([]certmanager.Consumer, error) {
	a := p.Spec.Authentication
	if a == nil || a.MTLS == nil || a.MTLS.Clients == nil || a.MTLS.Clients.FromKeySets != apiwardenv1alpha1.FeatureEnabled || a.APIKey == nil {
		return nil, nil
	}
	var out []certmanager.Consumer
	for _, ref := range a.APIKey.KeySetRefs {
		var ks apiwardenv1alpha1.APIKeySet
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: ref.Name}, &ks); err != nil {
			if client.IgnoreNotFound(err) == nil {
				continue
			}
			return nil, fmt.Errorf("reading APIKeySet %s: %w", ref.Name, err)
		}
		for _, c := range ks.Spec.Consumers {
			cc := certmanager.Consumer{Name: c.Name}
			if c.SecretRef != nil && c.SecretRef.Namespace != "" && c.SecretRef.Namespace != p.Namespace {
				cc.Namespace = c.SecretRef.Namespace
			}
			out = append(out, cc)
		}
	}
	return out, nil
}

// keySetPolicies maps an APIKeySet to the policies that take client
// certificate consumers from it.
func (r *APIPolicyReconciler) keySetPolicies(ctx context.Context, o client.Object) []reconcile.Request {
	var list apiwardenv1alpha1.APIPolicyList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []*apiwardenv1alpha1.APIPolicy
	for i := range list.Items {
		a := list.Items[i].Spec.Authentication
		if a == nil || a.APIKey == nil || a.MTLS == nil || a.MTLS.Clients == nil || a.MTLS.Clients.FromKeySets != apiwardenv1alpha1.FeatureEnabled {
			continue
		}
		for _, ref := range a.APIKey.KeySetRefs {
			if ref.Name == o.GetName() {
				out = append(out, &list.Items[i])
				break
			}
		}
	}
	return requests(out)
}

// certificateFinalizer is set on a policy with client Certificates in other
// namespaces, which owner references cannot reach: apiwarden deletes them
// before the policy goes.
const certificateFinalizer = "apiwarden.io/certificate-cleanup"

func (r *APIPolicyReconciler) ensureFinalizer(ctx context.Context, p *apiwardenv1alpha1.APIPolicy) error {
	if controllerutil.ContainsFinalizer(p, certificateFinalizer) {
		return nil
	}
	controllerutil.AddFinalizer(p, certificateFinalizer)
	if err := r.Client.Update(ctx, p); err != nil {
		return fmt.Errorf("adding the %s finalizer: %w", certificateFinalizer, err)
	}
	return nil
}

// certOwner identifies a policy on the Certificates it makes in other
// namespaces (same-namespace ones carry an owner reference).
func certOwner(p *apiwardenv1alpha1.APIPolicy) string {
	return p.Namespace + "/" + p.Name + "/" + string(p.UID)
}

// ownsCertificate reports whether c was made for p.
func ownsCertificate(c *cmv1.Certificate, p *apiwardenv1alpha1.APIPolicy) bool {
	if c.Namespace == p.Namespace {
		return ownedBy(c, p)
	}
	return c.Annotations[keystore.AnnotationOwner] == certOwner(p)
}

// pruneCertificates deletes this policy's Certificates, in any namespace,
// that are not in wanted ("namespace/name"), and returns the others.
func (r *APIPolicyReconciler) pruneCertificates(ctx context.Context, p *apiwardenv1alpha1.APIPolicy, wanted map[string]bool) (map[string]*cmv1.Certificate, error) {
	var have cmv1.CertificateList
	if err := r.Client.List(ctx, &have, client.MatchingLabels{render.LabelPolicy: render.Truncate(p.Name, 63)}); err != nil {
		return nil, fmt.Errorf("listing Certificates: %w", err)
	}
	live := map[string]*cmv1.Certificate{}
	for i := range have.Items {
		c := &have.Items[i]
		if !ownsCertificate(c, p) {
			continue
		}
		key := c.Namespace + "/" + c.Name
		if wanted[key] {
			live[key] = c
			continue
		}
		r.applied.forget(cmv1.SchemeGroupVersion.String() + "/" + cmv1.CertificateKind + "/" + key)
		if err := r.Client.Delete(ctx, c, client.Preconditions{UID: ptr.To(c.UID)}); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("deleting the Certificate %s: %w", key, err)
		}
		r.Recorder.Eventf(p, "Normal", "Pruned", "Deleted the Certificate %s, which the policy no longer asks for", key)
	}
	return live, nil
}

// finalize removes the annotations a policy set on its targets, deletes its
// Certificates in other namespaces, and releases the policy.
func (r *APIPolicyReconciler) finalize(ctx context.Context, p *apiwardenv1alpha1.APIPolicy) error {
	changed, err := r.finalizeAnnotations(ctx, p)
	if err != nil {
		return err
	}
	if controllerutil.ContainsFinalizer(p, certificateFinalizer) {
		if r.certManagerInstalled() {
			if _, err := r.pruneCertificates(ctx, p, map[string]bool{}); err != nil {
				return err
			}
		}
		controllerutil.RemoveFinalizer(p, certificateFinalizer)
		changed = true
	}
	if !changed {
		return nil
	}
	return client.IgnoreNotFound(r.Client.Update(ctx, p))
}

// certificatePolicy maps a Certificate to the policy that made it: its
// controller owner, or, in another namespace, its owner annotation.
func certificatePolicy(_ context.Context, o client.Object) []reconcile.Request {
	if c := metav1.GetControllerOf(o); c != nil && c.Kind == "APIPolicy" && c.APIVersion == apiwardenv1alpha1.GroupVersion.String() {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: c.Name}}}
	}
	owner, ok := annotatedOwner(o.GetAnnotations())
	if !ok || o.GetLabels()[render.LabelManagedBy] != render.ManagedBy {
		return nil
	}
	return []reconcile.Request{{NamespacedName: owner}}
}

// grantPolicies maps a ReferenceGrant to the policies that may put client
// certificates where it grants: those taking consumers from APIKeySets in
// the namespaces it grants from; and a deleted authz grant to the policies
// of the namespace it served.
func (r *APIPolicyReconciler) grantPolicies(ctx context.Context, o client.Object) []reconcile.Request {
	g, ok := o.(*gatewayv1.ReferenceGrant)
	if !ok {
		return nil
	}
	out := r.authzGrantGone(ctx, g)
	for _, ns := range keySetGrantNamespaces(g) {
		var list apiwardenv1alpha1.APIPolicyList
		if err := r.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil
		}
		for i := range list.Items {
			if a := list.Items[i].Spec.Authentication; a != nil && a.MTLS != nil && a.MTLS.Clients != nil && a.MTLS.Clients.FromKeySets == apiwardenv1alpha1.FeatureEnabled {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
			}
		}
	}
	return out
}

// policyConditions exports, at every scrape, how many APIPolicies report
// each Enforced status and reason, from the cache. Bounded labels: status
// True/False/Unknown and the reasons in api/v1alpha1/conditions.go.
type policyConditions struct {
	r    *APIPolicyReconciler
	desc *prometheus.Desc
}

func newPolicyConditions(r *APIPolicyReconciler) *policyConditions {
	return &policyConditions{r: r, desc: prometheus.NewDesc("apiwarden_policies",
		"APIPolicies by their Enforced condition: status (True, False, Unknown when not yet reconciled) and reason.",
		[]string{"enforced", "reason"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *policyConditions) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *policyConditions) Collect(ch chan<- prometheus.Metric) {
	var list apiwardenv1alpha1.APIPolicyList
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.r.Cache.List(ctx, &list); err != nil {
		return
	}
	type key struct{ status, reason string }
	counts := map[key]int{}
	for i := range list.Items {
		k := key{"Unknown", ""}
		for _, cd := range list.Items[i].Status.Conditions {
			if cd.Type == apiwardenv1alpha1.ConditionEnforced {
				k = key{string(cd.Status), cd.Reason}
			}
		}
		counts[k]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.status, k.reason)
	}
}
