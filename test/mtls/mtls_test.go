// Package mtls_test proves, with real TLS handshakes on loopback, that the
// client-certificate configuration apiwarden renders admits exactly the
// clients it should, behind the server certificate it asks for. A CA made by the test stands in for cert-manager's CA
// issuer and signs certificates with exactly the fields the rendered
// Certificate asks for; a Go TLS server is configured as the rendered
// ClientTrafficPolicy says (minimum version, trust bundle, required client
// certificate, URI SAN prefix) and reads the consumer from the verified
// certificate, as the authz service does from x-forwarded-client-cert.
package mtls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/identity"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/certmanager"
	"github.com/apiwarden/apiwarden/internal/render/envoygateway"
	"github.com/apiwarden/apiwarden/internal/render/rendertest"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: c, key: key}
}

// issue signs a certificate the way cert-manager's CA issuer does for spec:
// its common name, URIs, DNS names, usages and key algorithm, valid from
// notBefore for the spec's duration.
func (c *ca) issue(t *testing.T, spec cmv1.CertificateSpec, notBefore time.Time) tls.Certificate {
	t.Helper()
	if spec.PrivateKey == nil || spec.PrivateKey.Algorithm != cmv1.ECDSAKeyAlgorithm || spec.PrivateKey.Size != 256 {
		t.Fatalf("rendered private key: %+v", spec.PrivateKey)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: spec.CommonName},
		DNSNames: spec.DNSNames, NotBefore: notBefore, NotAfter: notBefore.Add(spec.Duration.Duration)}
	for _, u := range spec.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	for _, u := range spec.Usages {
		switch u {
		case cmv1.UsageClientAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		case cmv1.UsageServerAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		case cmv1.UsageDigitalSignature:
			tmpl.KeyUsage |= x509.KeyUsageDigitalSignature
		default:
			t.Fatalf("usage %q not handled by the stand-in issuer", u)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// rendered returns, for the mtls golden case, the Certificates of the
// partners policy (clients first, then the listener's server certificate)
// and its ClientTrafficPolicy.
func rendered(t *testing.T) ([]*cmv1.Certificate, *egv1a1.ClientTrafficPolicy) {
	t.Helper()
	path := "../../internal/render/envoygateway/testdata/mtls.yaml"
	objs, policies := rendertest.ReadCase(t, path)
	var policy *apiwardenv1alpha1.APIPolicy
	for _, p := range policies {
		if p.Name == "partners-mtls" {
			policy = p
		}
	}
	lk := render.NewManifestLookup(objs, "default")
	certs, _, err := certmanager.ForPolicy(policy, lk)
	if err != nil {
		t.Fatal(err)
	}
	plans, err := render.Plan(policy, lk, envoygateway.Renderer{}, render.DefaultAuthzService)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range plans[0].Result.Objects {
		if ctp, ok := o.(*egv1a1.ClientTrafficPolicy); ok {
			return certs, ctp
		}
	}
	t.Fatal("no ClientTrafficPolicy rendered")
	return nil, nil
}

// serverConfig configures a TLS server as the ClientTrafficPolicy says,
// trusting the CA that the trust bundle (the first client certificate's
// Secret's ca.crt) holds.
func serverConfig(t *testing.T, ctp *egv1a1.ClientTrafficPolicy, trust *x509.Certificate, server tls.Certificate) *tls.Config {
	t.Helper()
	cv := ctp.Spec.TLS.ClientValidation
	pool := x509.NewCertPool()
	pool.AddCert(trust)
	cfg := &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	switch *ctp.Spec.TLS.MinVersion {
	case egv1a1.TLSv12:
		cfg.MinVersion = tls.VersionTLS12
	case egv1a1.TLSv13:
		cfg.MinVersion = tls.VersionTLS13
	default:
		t.Fatalf("minVersion %q", *ctp.Spec.TLS.MinVersion)
	}
	if cv.SubjectAltNames == nil || len(cv.SubjectAltNames.URIs) != 1 || *cv.SubjectAltNames.URIs[0].Type != egv1a1.StringMatchPrefix {
		t.Fatalf("rendered SAN matcher: %+v", cv.SubjectAltNames)
	}
	prefix := cv.SubjectAltNames.URIs[0].Value
	cfg.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
		for _, u := range chains[0][0].URIs {
			if strings.HasPrefix(u.String(), prefix) {
				return nil
			}
		}
		return errors.New("no URI SAN matches " + prefix)
	}
	return cfg
}

func TestHandshakes(t *testing.T) {
	certs, ctp := rendered(t)
	issuer, other := newCA(t, "partners-ca"), newCA(t, "someone-else")
	server := certs[len(certs)-1].Spec
	if len(server.DNSNames) != 1 || !slices.Contains(server.Usages, cmv1.UsageServerAuth) {
		t.Fatalf("rendered server Certificate: %+v", server)
	}
	serverCert := issuer.issue(t, server, time.Now().Add(-time.Minute))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// What the authz service reads from x-forwarded-client-cert.
		for _, u := range r.TLS.PeerCertificates[0].URIs {
			if ns, c, ok := identity.ConsumerFromURI(u.String()); ok {
				fmt.Fprintf(w, "%s/%s", ns, c)
				return
			}
		}
		http.Error(w, "no consumer", http.StatusForbidden)
	}), TLSConfig: serverConfig(t, ctp, issuer.cert, serverCert), ReadHeaderTimeout: 5 * time.Second,
		// Refused handshakes are the point of the test.
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(issuer.cert)

	get := func(client []tls.Certificate, maxVersion uint16) (string, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: server.DNSNames[0], Certificates: client, MaxVersion: maxVersion}}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := c.Get("https://" + ln.Addr().String() + "/invoices")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), nil
	}

	acme := certs[0].Spec
	valid := issuer.issue(t, acme, time.Now().Add(-time.Minute))
	got, err := get([]tls.Certificate{valid}, 0)
	if err != nil || got != "b2b/acme" {
		t.Fatalf("valid client certificate: %q, %v", got, err)
	}

	expired := issuer.issue(t, acme, time.Now().Add(-acme.Duration.Duration-time.Hour))
	foreign := other.issue(t, acme, time.Now().Add(-time.Minute))
	otherNS := acme
	otherNS.URIs = []string{identity.ConsumerURI("shop", "acme")}
	wrongNS := issuer.issue(t, otherNS, time.Now().Add(-time.Minute))
	serverOnly := acme
	serverOnly.Usages = []cmv1.KeyUsage{cmv1.UsageServerAuth, cmv1.UsageDigitalSignature}
	notClient := issuer.issue(t, serverOnly, time.Now().Add(-time.Minute))
	for name, tc := range map[string]struct {
		certs      []tls.Certificate
		maxVersion uint16
	}{
		"no certificate":                {nil, 0},
		"expired certificate":           {[]tls.Certificate{expired}, 0},
		"certificate from another CA":   {[]tls.Certificate{foreign}, 0},
		"consumer of another namespace": {[]tls.Certificate{wrongNS}, 0},
		"server-auth certificate":       {[]tls.Certificate{notClient}, 0},
		"TLS 1.2 below the minimum":     {[]tls.Certificate{valid}, tls.VersionTLS12},
	} {
		if got, err := get(tc.certs, tc.maxVersion); err == nil {
			t.Errorf("%s: accepted (%q)", name, got)
		}
	}
}
