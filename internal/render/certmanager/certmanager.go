// Package certmanager renders the cert-manager Certificates an APIPolicy
// asks for: one client certificate per mTLS consumer. It is pure, like the
// gateway renderers; the APIPolicy controller applies what it returns and
// reads the Certificates' conditions back into the policy's status.
package certmanager

import (
	"fmt"
	"io"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/identity"
	"github.com/apiwarden/apiwarden/internal/render"
)

// LabelConsumer is set, on a client Certificate and its Secret, to the
// consumer it identifies.
const LabelConsumer = "apiwarden.io/consumer"

// Defaults of MTLSClients, applied by the CRD and again here for manifests
// given to the CLI.
const (
	DefaultDuration    = 2160 * time.Hour
	DefaultRenewBefore = 720 * time.Hour
)

// ClientName is the name of a consumer's client Certificate and of its Secret.
func ClientName(policy, consumer string) string {
	return render.Truncate(policy+"-"+consumer+"-client", 253)
}

// Clients renders the client Certificates of a policy: usage "client auth",
// an ECDSA P-256 key regenerated at every renewal (rotationPolicy Always),
// the consumer as common name and URI SAN, and apiwarden's labels on the
// Secret. It returns nil when the policy asks for no client certificate.
func Clients(p *apiwardenv1alpha1.APIPolicy) ([]*cmv1.Certificate, error) {
	a := p.Spec.Authentication
	if a == nil || a.MTLS == nil || a.MTLS.Clients == nil {
		return nil, nil
	}
	m := a.MTLS
	dur, renew := DefaultDuration, DefaultRenewBefore
	if m.Clients.Duration != nil {
		dur = m.Clients.Duration.Duration
	}
	if m.Clients.RenewBefore != nil {
		renew = m.Clients.RenewBefore.Duration
	}
	if renew >= dur {
		return nil, fmt.Errorf("spec.authentication.mtls.clients: renewBefore (%s) must be shorter than duration (%s)", renew, dur)
	}
	issuer := cmmeta.IssuerReference{Name: m.IssuerRef.Name, Kind: m.IssuerRef.Kind, Group: m.IssuerRef.Group}
	if issuer.Kind == "" {
		issuer.Kind = "Issuer"
	}
	if issuer.Group == "" {
		issuer.Group = "cert-manager.io"
	}
	out := make([]*cmv1.Certificate, 0, len(m.Clients.Consumers))
	for _, c := range m.Clients.Consumers {
		name := ClientName(p.Name, c)
		labels := render.Labels(p.Name)
		labels[LabelConsumer] = c
		out = append(out, &cmv1.Certificate{
			TypeMeta:   metav1.TypeMeta{APIVersion: cmv1.SchemeGroupVersion.String(), Kind: cmv1.CertificateKind},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: labels},
			Spec: cmv1.CertificateSpec{
				SecretName:     name,
				SecretTemplate: &cmv1.CertificateSecretTemplate{Labels: labels},
				CommonName:     c,
				URIs:           []string{identity.ConsumerURI(p.Namespace, c)},
				Usages:         []cmv1.KeyUsage{cmv1.UsageClientAuth, cmv1.UsageDigitalSignature},
				Duration:       &metav1.Duration{Duration: dur},
				RenewBefore:    &metav1.Duration{Duration: renew},
				PrivateKey: &cmv1.CertificatePrivateKey{
					Algorithm:      cmv1.ECDSAKeyAlgorithm,
					Size:           256,
					RotationPolicy: cmv1.RotationPolicyAlways,
				},
				IssuerRef: issuer,
			},
		})
	}
	return out, nil
}

// TrustBundle returns the object the gateway reads the client CA from: the
// policy's trustBundleRef, else the Secret of its first client certificate
// (cert-manager writes the issuing CA into its "ca.crt"). ok is false when
// the policy names neither.
func TrustBundle(p *apiwardenv1alpha1.APIPolicy, spec apiwardenv1alpha1.APIPolicySpec) (kind, name string, ok bool) {
	a := spec.Authentication
	if a == nil || a.MTLS == nil {
		return "", "", false
	}
	if r := a.MTLS.TrustBundleRef; r != nil {
		kind = r.Kind
		if kind == "" {
			kind = "ConfigMap"
		}
		return kind, r.Name, true
	}
	if a.MTLS.Clients != nil && len(a.MTLS.Clients.Consumers) > 0 {
		return "Secret", ClientName(p.Name, a.MTLS.Clients.Consumers[0]), true
	}
	return "", "", false
}

// WriteYAML prints the client Certificates of a policy after a comment
// saying what they are, as render.WriteYAML prints a gateway's objects.
func WriteYAML(w io.Writer, p *apiwardenv1alpha1.APIPolicy) error {
	certs, err := Clients(p)
	if err != nil {
		_, werr := fmt.Fprintf(w, "# APIPolicy %s/%s client certificates: Invalid\n#   %s\n", p.Namespace, p.Name, err)
		return werr
	}
	if len(certs) == 0 {
		return nil
	}
	fmt.Fprintf(w, "# APIPolicy %s/%s client certificates: %d, issued by %s %s\n", p.Namespace, p.Name, len(certs), certs[0].Spec.IssuerRef.Kind, certs[0].Spec.IssuerRef.Name)
	for _, c := range certs {
		doc, err := render.MarshalYAML(c)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "---\n%s", doc); err != nil {
			return err
		}
	}
	return nil
}
