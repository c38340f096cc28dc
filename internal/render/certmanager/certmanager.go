// Package certmanager renders the cert-manager Certificates an APIPolicy
// asks for: one client certificate per mTLS consumer. It is pure, like the
// gateway renderers; the APIPolicy controller applies what it returns and
// reads the Certificates' conditions back into the policy's status.
package certmanager

import (
	"fmt"
	"io"
	"slices"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/identity"
	"github.com/apiwarden/apiwarden/internal/render"
)

// LabelConsumer is set, on a client Certificate and its Secret, to the
// consumer it identifies.
const LabelConsumer = "apiwarden.io/consumer"

// AnnotationListener is set, on a server Certificate, to the
// "<gateway>/<listener>" it serves.
const AnnotationListener = "apiwarden.io/listener"

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

// Consumer is a consumer found outside the policy (in an APIKeySet), with
// the namespace its credentials are delivered to ("" for the policy's).
type Consumer struct {
	Name, Namespace string
}

// Clients renders the client Certificates of a policy for its listed
// consumers; ClientsFor adds consumers found elsewhere (APIKeySets).
func Clients(p *apiwardenv1alpha1.APIPolicy) ([]*cmv1.Certificate, error) {
	return ClientsFor(p, nil)
}

// ClientsFor renders the client Certificates of a policy: usage "client auth",
// an ECDSA P-256 key regenerated at every renewal (rotationPolicy Always),
// the consumer as common name and URI SAN, and apiwarden's labels on the
// Secret. It returns nil when the policy asks for no client certificate.
//
// A consumer of extra whose credentials go to another namespace gets its
// Certificate (and Secret) there; its identity (URI SAN) stays that of the
// policy's namespace, whose API it calls.
func ClientsFor(p *apiwardenv1alpha1.APIPolicy, extra []Consumer) ([]*cmv1.Certificate, error) {
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
	issuer := issuerRef(m.IssuerRef)
	consumers := make([]Consumer, 0, len(m.Clients.Consumers)+len(extra))
	seen := map[string]bool{}
	for _, c := range m.Clients.Consumers {
		consumers = append(consumers, Consumer{Name: c})
		seen[c] = true
	}
	for _, c := range extra {
		if !seen[c.Name] {
			seen[c.Name] = true
			consumers = append(consumers, c)
		}
	}
	out := make([]*cmv1.Certificate, 0, len(consumers))
	for _, cc := range consumers {
		c := cc.Name
		ns := cc.Namespace
		if ns == "" {
			ns = p.Namespace
		}
		name := ClientName(p.Name, c)
		labels := render.Labels(p.Name)
		labels[LabelConsumer] = c
		out = append(out, &cmv1.Certificate{
			TypeMeta:   metav1.TypeMeta{APIVersion: cmv1.SchemeGroupVersion.String(), Kind: cmv1.CertificateKind},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
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

func issuerRef(r apiwardenv1alpha1.IssuerReference) cmmeta.IssuerReference {
	out := cmmeta.IssuerReference{Name: r.Name, Kind: r.Kind, Group: r.Group}
	if out.Kind == "" {
		out.Kind = "Issuer"
	}
	if out.Group == "" {
		out.Group = "cert-manager.io"
	}
	return out
}

// Servers renders the server Certificates a Gateway-level policy asks for
// (authentication.mtls.server): one per HTTPS listener of gw that
// terminates TLS, issued into the Secret its first certificateRef names (in
// the Gateway's namespace) for the listener's hostname. Listeners it cannot
// serve are returned as notes.
func Servers(p *apiwardenv1alpha1.APIPolicy, gw *gatewayv1.Gateway, section *string) ([]*cmv1.Certificate, []render.Note, error) {
	a := p.Spec.Authentication
	if a == nil || a.MTLS == nil || a.MTLS.Server == nil || gw == nil {
		return nil, nil, nil
	}
	tmpl, err := serverTemplate(p)
	if err != nil {
		return nil, nil, err
	}
	var out []*cmv1.Certificate
	var notes []render.Note
	for _, l := range gw.Spec.Listeners {
		if l.Protocol != gatewayv1.HTTPSProtocolType || (section != nil && string(l.Name) != *section) {
			continue
		}
		field := "spec.authentication.mtls.server"
		switch {
		case l.TLS == nil || (l.TLS.Mode != nil && *l.TLS.Mode != gatewayv1.TLSModeTerminate) || len(l.TLS.CertificateRefs) == 0:
			notes = append(notes, render.Note{Field: field, Message: fmt.Sprintf("listener %s does not terminate TLS with a certificateRef; no server certificate", l.Name)})
			continue
		case l.Hostname == nil || *l.Hostname == "":
			notes = append(notes, render.Note{Field: field, Message: fmt.Sprintf("listener %s has no hostname to put in a certificate; no server certificate", l.Name)})
			continue
		}
		ref := l.TLS.CertificateRefs[0]
		if (ref.Kind != nil && *ref.Kind != "Secret") || (ref.Group != nil && *ref.Group != "") || (ref.Namespace != nil && string(*ref.Namespace) != gw.Namespace) {
			notes = append(notes, render.Note{Field: field, Message: fmt.Sprintf("listener %s's first certificateRef is not a Secret in the Gateway's namespace; no server certificate", l.Name)})
			continue
		}
		c := tmpl.DeepCopy()
		c.Name = render.Truncate(p.Name+"-"+gw.Name+"-"+string(l.Name)+"-server", 253)
		c.Annotations = map[string]string{AnnotationListener: gw.Name + "/" + string(l.Name)}
		c.Spec.SecretName = string(ref.Name)
		c.Spec.DNSNames = []string{string(*l.Hostname)}
		out = append(out, c)
	}
	return out, notes, nil
}

// IngressServers renders the server Certificates of an Ingress target
// (authentication.mtls.server): one per spec.tls entry with a secretName and
// hosts, issued into that Secret for those hosts, as cert-manager's
// ingress-shim would, but under the policy's issuer and key policy.
func IngressServers(p *apiwardenv1alpha1.APIPolicy, in *networkingv1.Ingress) ([]*cmv1.Certificate, error) {
	a := p.Spec.Authentication
	if a == nil || a.MTLS == nil || a.MTLS.Server == nil || in == nil {
		return nil, nil
	}
	tmpl, err := serverTemplate(p)
	if err != nil {
		return nil, err
	}
	var out []*cmv1.Certificate
	for _, t := range in.Spec.TLS {
		if t.SecretName == "" || len(t.Hosts) == 0 {
			continue
		}
		c := tmpl.DeepCopy()
		c.Name = render.Truncate(p.Name+"-"+in.Name+"-"+t.SecretName+"-server", 253)
		c.Annotations = map[string]string{AnnotationListener: "Ingress " + in.Name}
		c.Spec.SecretName = t.SecretName
		c.Spec.DNSNames = slices.Clone(t.Hosts)
		out = append(out, c)
	}
	return out, nil
}

// serverTemplate is a server Certificate with the policy's issuer, duration
// and key policy; callers set its name, Secret and DNS names.
func serverTemplate(p *apiwardenv1alpha1.APIPolicy) (*cmv1.Certificate, error) {
	m := p.Spec.Authentication.MTLS
	srv := m.Server
	dur, renew := DefaultDuration, DefaultRenewBefore
	if srv.Duration != nil {
		dur = srv.Duration.Duration
	}
	if srv.RenewBefore != nil {
		renew = srv.RenewBefore.Duration
	}
	if renew >= dur {
		return nil, fmt.Errorf("spec.authentication.mtls.server: renewBefore (%s) must be shorter than duration (%s)", renew, dur)
	}
	issuer := issuerRef(m.IssuerRef)
	if srv.IssuerRef != nil {
		issuer = issuerRef(*srv.IssuerRef)
	}
	labels := render.Labels(p.Name)
	return &cmv1.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmv1.SchemeGroupVersion.String(), Kind: cmv1.CertificateKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Labels: labels},
		Spec: cmv1.CertificateSpec{
			SecretTemplate: &cmv1.CertificateSecretTemplate{Labels: labels},
			Usages:         []cmv1.KeyUsage{cmv1.UsageServerAuth, cmv1.UsageDigitalSignature},
			Duration:       &metav1.Duration{Duration: dur},
			RenewBefore:    &metav1.Duration{Duration: renew},
			PrivateKey:     &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256, RotationPolicy: cmv1.RotationPolicyAlways},
			IssuerRef:      issuer,
		},
	}, nil
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

// ForPolicy returns every Certificate a policy asks for: its consumers'
// client certificates (the listed ones and keySetConsumers, the consumers of
// its APIKeySets when fromKeySets is Enabled) and, for the Gateways it
// targets (found through lk), their listeners' server certificates, with
// notes on listeners that cannot have one.
func ForPolicy(p *apiwardenv1alpha1.APIPolicy, lk render.Lookup, keySetConsumers ...Consumer) ([]*cmv1.Certificate, []render.Note, error) {
	certs, err := ClientsFor(p, keySetConsumers)
	if err != nil {
		return nil, nil, err
	}
	var notes []render.Note
	for _, ref := range p.Spec.TargetRefs {
		isGateway := ref.Group == render.GatewayGroup && ref.Kind == "Gateway"
		isIngress := ref.Group == "networking.k8s.io" && ref.Kind == "Ingress"
		if !isGateway && !isIngress {
			continue
		}
		obj, err := lk.Target(exposure.TargetKey{Group: ref.Group, Kind: ref.Kind, Namespace: p.Namespace, Name: ref.Name})
		if err != nil {
			return nil, nil, err
		}
		var servers []*cmv1.Certificate
		var n []render.Note
		if isGateway {
			gw, _ := obj.(*gatewayv1.Gateway)
			servers, n, err = Servers(p, gw, ref.SectionName)
		} else {
			in, _ := obj.(*networkingv1.Ingress)
			servers, err = IngressServers(p, in)
		}
		if err != nil {
			return nil, nil, err
		}
		certs, notes = append(certs, servers...), append(notes, n...)
	}
	return certs, notes, nil
}

// WriteYAML prints the Certificates of a policy (ForPolicy) after a comment
// saying what they are, as render.WriteYAML prints a gateway's objects.
func WriteYAML(w io.Writer, p *apiwardenv1alpha1.APIPolicy, lk render.Lookup) error {
	certs, notes, err := ForPolicy(p, lk)
	if err != nil {
		_, werr := fmt.Fprintf(w, "# APIPolicy %s/%s certificates: Invalid\n#   %s\n", p.Namespace, p.Name, err)
		return werr
	}
	if len(certs) == 0 && len(notes) == 0 {
		return nil
	}
	fmt.Fprintf(w, "# APIPolicy %s/%s certificates from cert-manager: %d\n", p.Namespace, p.Name, len(certs))
	for _, n := range notes {
		fmt.Fprintf(w, "#   note: %s: %s\n", n.Field, n.Message)
	}
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
