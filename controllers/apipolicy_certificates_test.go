package controllers_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// TestAPIPolicyClientCertificates: the client Certificates of an mTLS
// policy are accepted by cert-manager's real CRD, owned by the policy,
// updated and pruned with the consumer list; their conditions (set here as
// cert-manager would) flow into the policy's status and the expiry metric;
// the Gateway validates clients against the first certificate's CA.
func TestAPIPolicyClientCertificates(t *testing.T) {
	ctx := context.Background()
	if err := env.InstallEnvoyGatewayCRDs(); err != nil {
		t.Fatal(err)
	}
	newNamespace(t)
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "partners"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: "eg",
		Listeners: []gatewayv1.Listener{{Name: "https", Protocol: gatewayv1.HTTPSProtocolType, Port: 443, Hostname: ptr.To(gatewayv1.Hostname("partners.example.com")),
			TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "partners-cert"}}}}},
	}}
	if err := k8s.Create(ctx, gw); err != nil {
		t.Fatal(err)
	}
	p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "partners-mtls"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{gwRef("Gateway", "partners")},
		Authentication: &apiwardenv1alpha1.Authentication{MTLS: &apiwardenv1alpha1.MTLSAuthentication{
			IssuerRef: apiwardenv1alpha1.IssuerReference{Name: "partners-ca", Kind: "ClusterIssuer"},
			Clients:   &apiwardenv1alpha1.MTLSClients{Consumers: []string{"acme", "globex"}},
			Server:    &apiwardenv1alpha1.MTLSServer{},
		}},
	}}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	names := []string{"partners-mtls-acme-client", "partners-mtls-globex-client"}
	var cert cmv1.Certificate
	eventually(t, "client Certificates", func() bool { return exists(t, &cert, names[0]) && exists(t, &cmv1.Certificate{}, names[1]) })
	s := cert.Spec
	if s.SecretName != names[0] || !slices.Contains(s.Usages, cmv1.UsageClientAuth) || s.PrivateKey.RotationPolicy != cmv1.RotationPolicyAlways ||
		s.IssuerRef.Kind != "ClusterIssuer" || len(s.URIs) != 1 || s.URIs[0] != "spiffe://apiwarden.io/ns/"+ns+"/consumer/acme" ||
		s.Duration.Duration != 2160*time.Hour || s.RenewBefore.Duration != 720*time.Hour || s.SecretTemplate.Labels["apiwarden.io/consumer"] != "acme" {
		t.Errorf("Certificate spec: %+v", s)
	}
	if c := metav1.GetControllerOf(&cert); c == nil || c.Name != "partners-mtls" {
		t.Errorf("Certificate controller: %+v", cert.OwnerReferences)
	}
	// The listener's server certificate goes into the Secret its
	// certificateRef already names; the Gateway is not changed.
	var server cmv1.Certificate
	eventually(t, "server Certificate", func() bool { return exists(t, &server, "partners-mtls-partners-https-server") })
	if server.Spec.SecretName != "partners-cert" || len(server.Spec.DNSNames) != 1 || server.Spec.DNSNames[0] != "partners.example.com" ||
		!slices.Contains(server.Spec.Usages, cmv1.UsageServerAuth) || server.Spec.IssuerRef.Name != "partners-ca" {
		t.Errorf("server Certificate spec: %+v", server.Spec)
	}
	names = append(names, server.Name)
	waitCond(t, "partners-mtls", apiwardenv1alpha1.ConditionCertificatesReady, metav1.ConditionFalse, apiwardenv1alpha1.ReasonCertificatesNotReady)
	var ctp egv1a1.ClientTrafficPolicy
	eventually(t, "client validation on the Gateway", func() bool {
		return exists(t, &ctp, "partners-mtls-gateway-partners") && ctp.Spec.TLS != nil && ctp.Spec.TLS.ClientValidation != nil
	})
	if ref := ctp.Spec.TLS.ClientValidation.CACertificateRefs[0]; string(ref.Name) != names[0] || string(*ref.Kind) != "Secret" {
		t.Errorf("trust bundle reference: %+v", ref)
	}

	// cert-manager issues them: the policy's status follows.
	notAfter := metav1.NewTime(time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second))
	renewal := metav1.NewTime(notAfter.Add(-30 * 24 * time.Hour))
	for _, n := range names {
		var c cmv1.Certificate
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, &c); err != nil {
			t.Fatal(err)
		}
		c.Status = cmv1.CertificateStatus{NotAfter: &notAfter, RenewalTime: &renewal,
			Conditions: []cmv1.CertificateCondition{{Type: cmv1.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready", Message: "issued"}}}
		if err := k8s.Status().Update(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	waitCond(t, "partners-mtls", apiwardenv1alpha1.ConditionCertificatesReady, metav1.ConditionTrue, apiwardenv1alpha1.ReasonIssued)
	var got apiwardenv1alpha1.APIPolicy
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Certificates) != 3 || got.Status.Certificates[0].Consumer != "acme" || got.Status.Certificates[0].Ready != metav1.ConditionTrue ||
		got.Status.Certificates[2].Usage != apiwardenv1alpha1.CertificateUsageServer || got.Status.Certificates[2].Listener != "partners/https" ||
		!got.Status.Certificates[0].NotAfter.Equal(&notAfter) || !got.Status.Certificates[0].RenewalTime.Equal(&renewal) {
		t.Errorf("status.certificates: %+v", got.Status.Certificates)
	}

	// The metric: seconds until each certificate expires.
	eventually(t, "expiry metric", func() bool {
		mfs, err := policyMetrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "apiwarden_certificate_expiry_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["namespace"] == ns && labels["policy"] == "partners-mtls" && labels["certificate"] == names[0] && labels["usage"] == "client" {
					want := time.Until(notAfter.Time).Seconds()
					if v := m.GetGauge().GetValue(); v < want-60 || v > want+1 {
						t.Fatalf("expiry seconds = %.0f, want about %.0f", v, want)
					}
					return true
				}
			}
		}
		return false
	})

	// A consumer leaves: its Certificate goes.
	updatePolicy(t, "partners-mtls", func(p *apiwardenv1alpha1.APIPolicy) {
		p.Spec.Authentication.MTLS.Clients.Consumers = []string{"acme"}
	})
	eventually(t, "globex's Certificate pruned", func() bool { return !exists(t, &cmv1.Certificate{}, names[1]) })
	eventually(t, "status lists acme only", func() bool {
		var p apiwardenv1alpha1.APIPolicy
		return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "partners-mtls"}, &p) == nil && len(p.Status.Certificates) == 2
	})

	// fromKeySets: the consumers of the policy's APIKeySets get client
	// certificates too, and follow the APIKeySet's consumer list.
	ks := &apiwardenv1alpha1.APIKeySet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "partner-keys"}, Spec: apiwardenv1alpha1.APIKeySetSpec{
		Consumers: []apiwardenv1alpha1.Consumer{{Name: "initech"}},
	}}
	if err := k8s.Create(ctx, ks); err != nil {
		t.Fatal(err)
	}
	updatePolicy(t, "partners-mtls", func(p *apiwardenv1alpha1.APIPolicy) {
		p.Spec.Authentication.APIKey = &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "partner-keys"}}}
		p.Spec.Authentication.MTLS.Clients.FromKeySets = apiwardenv1alpha1.FeatureEnabled
	})
	eventually(t, "a Certificate for the APIKeySet's consumer", func() bool { return exists(t, &cmv1.Certificate{}, "partners-mtls-initech-client") })
	if err := retryUpdate(func() error {
		var cur apiwardenv1alpha1.APIKeySet
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ks), &cur); err != nil {
			return err
		}
		cur.Spec.Consumers = append(cur.Spec.Consumers, apiwardenv1alpha1.Consumer{Name: "hooli"})
		return k8s.Update(ctx, &cur)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a Certificate for the consumer added to the APIKeySet", func() bool { return exists(t, &cmv1.Certificate{}, "partners-mtls-hooli-client") })

	// A consumer whose credentials go to another namespace gets its client
	// certificate there, under the API keys' grant rule: refused until that
	// namespace grants it, then made, owned through an annotation, and
	// deleted with the policy (finalizer).
	other := ns + "-partner"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}}); err != nil {
		t.Fatal(err)
	}
	if err := retryUpdate(func() error {
		var cur apiwardenv1alpha1.APIKeySet
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ks), &cur); err != nil {
			return err
		}
		cur.Spec.Consumers = append(cur.Spec.Consumers, apiwardenv1alpha1.Consumer{Name: "wayne", SecretRef: &apiwardenv1alpha1.SecretDelivery{Namespace: other}})
		return k8s.Update(ctx, &cur)
	}); err != nil {
		t.Fatal(err)
	}
	certStatus := func(name string) *apiwardenv1alpha1.CertificateStatus {
		var p apiwardenv1alpha1.APIPolicy
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "partners-mtls"}, &p); err != nil {
			t.Fatal(err)
		}
		for i := range p.Status.Certificates {
			if p.Status.Certificates[i].Name == name {
				return &p.Status.Certificates[i]
			}
		}
		return nil
	}
	wayne := "partners-mtls-wayne-client"
	eventually(t, "the ungranted certificate reported", func() bool {
		cs := certStatus(wayne)
		return cs != nil && cs.Reason == "NotGranted" && cs.Namespace == other
	})
	var crossCert cmv1.Certificate
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: other, Name: wayne}, &crossCert); err == nil {
		t.Fatal("a Certificate was made in a namespace that grants nothing")
	}
	grant := &gatewayv1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "keys-from-" + ns}, Spec: gatewayv1.ReferenceGrantSpec{
		From: []gatewayv1.ReferenceGrantFrom{{Group: "apiwarden.io", Kind: "APIKeySet", Namespace: gatewayv1.Namespace(ns)}},
		To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Secret"}},
	}}
	if err := k8s.Create(ctx, grant); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Certificate in the granting namespace", func() bool {
		return k8s.Get(ctx, client.ObjectKey{Namespace: other, Name: wayne}, &crossCert) == nil
	})
	if len(crossCert.OwnerReferences) != 0 || crossCert.Annotations["apiwarden.io/owner"] == "" || crossCert.Spec.URIs[0] != "spiffe://apiwarden.io/ns/"+ns+"/consumer/wayne" {
		t.Errorf("cross-namespace Certificate: owners %v, annotations %v, URIs %v", crossCert.OwnerReferences, crossCert.Annotations, crossCert.Spec.URIs)
	}
	var withFinalizer apiwardenv1alpha1.APIPolicy
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "partners-mtls"}, &withFinalizer); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(withFinalizer.Finalizers, "apiwarden.io/certificate-cleanup") {
		t.Fatalf("no cleanup finalizer: %v", withFinalizer.Finalizers)
	}
	if err := k8s.Delete(ctx, &withFinalizer); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cross-namespace Certificate deleted with the policy", func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: other, Name: wayne}, &cmv1.Certificate{}))
	})
	eventually(t, "the policy gone", func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "partners-mtls"}, &apiwardenv1alpha1.APIPolicy{}))
	})
}

func retryUpdate(f func() error) error { return retry.RetryOnConflict(retry.DefaultRetry, f) }

// TestCertificateNameTaken: a consumer whose Certificate name is taken by an
// object apiwarden did not create is reported (that certificate
// ApplyFailed, CertificatesReady=False naming it), and the policy's other
// certificates and rendered objects are applied all the same.
func TestCertificateNameTaken(t *testing.T) {
	ctx := context.Background()
	installEnvoyGatewayCRDs(t)
	newNamespace(t)
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"}, Spec: gatewayv1.GatewaySpec{
		GatewayClassName: "eg",
		Listeners: []gatewayv1.Listener{{Name: "https", Protocol: gatewayv1.HTTPSProtocolType, Port: 443,
			TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: "taken-cert"}}}}},
	}}
	// Someone else's Certificate, under the name apiwarden would give acme's.
	foreign := &cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken-mtls-acme-client"}, Spec: cmv1.CertificateSpec{
		SecretName: "someone-elses", CommonName: "acme", IssuerRef: cmmeta.IssuerReference{Name: "other", Kind: "Issuer"}}}
	for _, o := range []client.Object{gw, foreign} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken-mtls"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{gwRef("Gateway", "taken")},
		TLS:        &apiwardenv1alpha1.TLSPolicy{MinVersion: apiwardenv1alpha1.TLSVersion13},
		Authentication: &apiwardenv1alpha1.Authentication{MTLS: &apiwardenv1alpha1.MTLSAuthentication{
			IssuerRef: apiwardenv1alpha1.IssuerReference{Name: "partners-ca", Kind: "ClusterIssuer"},
			Clients:   &apiwardenv1alpha1.MTLSClients{Consumers: []string{"acme", "globex"}},
		}},
	}}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	c := waitCond(t, "taken-mtls", apiwardenv1alpha1.ConditionCertificatesReady, metav1.ConditionFalse, apiwardenv1alpha1.ReasonCertificatesNotReady)
	if !strings.Contains(c.Message, "Certificate "+ns+"/taken-mtls-acme-client exists and is not controlled by this APIPolicy") {
		t.Errorf("CertificatesReady does not say which certificate could not be applied: %q", c.Message)
	}
	eventually(t, "globex's Certificate and the ClientTrafficPolicy", func() bool {
		return exists(t, &cmv1.Certificate{}, "taken-mtls-globex-client") && exists(t, &egv1a1.ClientTrafficPolicy{}, "taken-mtls-gateway-taken")
	})
	var got apiwardenv1alpha1.APIPolicy
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
		t.Fatal(err)
	}
	var acme *apiwardenv1alpha1.CertificateStatus
	for i := range got.Status.Certificates {
		if got.Status.Certificates[i].Consumer == "acme" {
			acme = &got.Status.Certificates[i]
		}
	}
	if acme == nil || acme.Ready != metav1.ConditionFalse || acme.Reason != "ApplyFailed" {
		t.Errorf("acme's certificate status: %+v", acme)
	}
	// The foreign Certificate is left as it was.
	var still cmv1.Certificate
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(foreign), &still); err != nil || still.Spec.SecretName != "someone-elses" || len(still.OwnerReferences) != 0 {
		t.Errorf("the foreign Certificate was changed: %+v, %v", still.Spec, err)
	}
}
