package webhookcert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the Secret. tls.crt and tls.key are the serving certificate and
// its key (the kubernetes.io/tls layout); ca.crt is every CA the apiserver
// must trust, the bundle injected into the webhook configuration; ca.key is
// the key of the CA that signs new serving certificates, one of ca.crt.
const (
	KeyCABundle = "ca.crt"
	KeyCAKey    = "ca.key"
)

// AnnotationTrustedSince records when the newest CA joined the bundle, in
// RFC 3339: serving certificates it signs are served only Config.Propagation
// later.
const AnnotationTrustedSince = "apiwarden.io/ca-trusted-since"

// backdate is how far before its issue a certificate becomes valid, so that
// an apiserver whose clock is a little behind accepts it.
const backdate = time.Minute

// maxBundle bounds the CAs read from ca.crt: the bundle normally holds one
// or two, and the Secret can be edited by anyone allowed to.
const maxBundle = 16

// Config says what the serving certificate is for and how long
// certificates live.
type Config struct {
	// Hosts are the DNS names and IP addresses the serving certificate is
	// valid for: the webhook Service's names, and any address the
	// apiserver is configured to call.
	Hosts []string
	// CertValidity is the serving certificate's lifetime; it is renewed
	// when a third of it is left.
	CertValidity time.Duration
	// CAValidity is the CA's lifetime; it is renewed when a third of it is
	// left. At least twice CertValidity.
	CAValidity time.Duration
	// Propagation is how long a new CA is in the injected bundle before
	// serving certificates it signs are served: time for the apiserver to
	// see the new bundle. At most a sixth of CertValidity, so that a serving
	// certificate falling due as its CA is renewed never expires while it
	// waits.
	Propagation time.Duration
}

// Validate reports a configuration that could not rotate without a gap.
func (c Config) Validate() error {
	var errs []error
	if len(c.Hosts) == 0 {
		errs = append(errs, errors.New("the serving certificate needs at least one host"))
	}
	for _, h := range c.Hosts {
		if h == "" || len(h) > 253 {
			errs = append(errs, fmt.Errorf("host %q is not a DNS name or IP address", h))
		}
	}
	if c.CertValidity < 3*time.Second {
		errs = append(errs, fmt.Errorf("certificate validity %s is shorter than 3s", c.CertValidity))
	}
	if c.CAValidity < 2*c.CertValidity {
		errs = append(errs, fmt.Errorf("CA validity %s is shorter than twice the certificate validity %s", c.CAValidity, c.CertValidity))
	}
	if c.Propagation <= 0 || c.Propagation > c.CertValidity/6 {
		errs = append(errs, fmt.Errorf("CA propagation %s must be positive and at most a sixth of the certificate validity %s", c.Propagation, c.CertValidity))
	}
	return errors.Join(errs...)
}

// State is what the Secret holds, parsed and checked.
type State struct {
	// CA signs new serving certificates; CAKey is its key.
	CA    *x509.Certificate
	CAKey crypto.Signer
	// Trusted is the bundle injected into the webhook configuration: CA
	// first, then older CAs that may still have signed a served
	// certificate.
	Trusted []*x509.Certificate
	// Leaf is the serving certificate, LeafKey its key.
	Leaf    *x509.Certificate
	LeafKey crypto.Signer
	// TrustedSince is when CA joined the bundle.
	TrustedSince time.Time
}

// Parse reads a Secret's data and annotations. Anything missing,
// malformed or inconsistent (a key that matches no certificate, a serving
// certificate no trusted CA signed) is an error: Decide then starts over.
// Errors never quote key material.
func Parse(data map[string][]byte, annotations map[string]string) (*State, error) {
	s := &State{}
	rest := data[KeyCABundle]
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s holds a PEM block of type %q, want CERTIFICATE", KeyCABundle, block.Type)
		}
		if len(s.Trusted) == maxBundle {
			return nil, fmt.Errorf("%s holds more than %d certificates", KeyCABundle, maxBundle)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyCABundle, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("%s holds %q, which is not a CA", KeyCABundle, c.Subject.CommonName)
		}
		s.Trusted = append(s.Trusted, c)
	}
	if len(s.Trusted) == 0 {
		return nil, fmt.Errorf("%s holds no certificate", KeyCABundle)
	}
	caKey, err := parseKey(data[KeyCAKey])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCAKey, err)
	}
	for _, c := range s.Trusted {
		if samePublicKey(c.PublicKey, caKey.Public()) {
			s.CA, s.CAKey = c, caKey
			break
		}
	}
	if s.CA == nil {
		return nil, fmt.Errorf("%s matches no certificate in %s", KeyCAKey, KeyCABundle)
	}
	pair, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("the serving certificate (%s, %s): %w", corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)
	}
	s.Leaf = pair.Leaf
	if s.Leaf == nil {
		if s.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", corev1.TLSCertKey, err)
		}
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s is not a signing key", corev1.TLSPrivateKeyKey)
	}
	s.LeafKey = signer
	if s.issuerOf(s.Leaf) == nil {
		return nil, fmt.Errorf("no CA in %s signed the serving certificate", KeyCABundle)
	}
	if v := annotations[AnnotationTrustedSince]; v != "" {
		if s.TrustedSince, err = time.Parse(time.RFC3339, v); err != nil {
			return nil, fmt.Errorf("annotation %s: %w", AnnotationTrustedSince, err)
		}
	}
	return s, nil
}

// issuerOf returns the trusted CA that signed c, if any.
func (s *State) issuerOf(c *x509.Certificate) *x509.Certificate {
	for _, ca := range s.Trusted {
		if c.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// Data encodes the state as the Secret's data.
func (s *State) Data() (map[string][]byte, error) {
	caKey, err := encodeKey(s.CAKey)
	if err != nil {
		return nil, err
	}
	leafKey, err := encodeKey(s.LeafKey)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		KeyCABundle:             s.BundlePEM(),
		KeyCAKey:                caKey,
		corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Leaf.Raw}),
		corev1.TLSPrivateKeyKey: leafKey,
	}, nil
}

// Annotations are the Secret's annotations for the state.
func (s *State) Annotations() map[string]string {
	return map[string]string{AnnotationTrustedSince: s.TrustedSince.UTC().Format(time.RFC3339)}
}

// BundlePEM is the CA bundle the apiserver must trust.
func (s *State) BundlePEM() []byte {
	var b bytes.Buffer
	for _, c := range s.Trusted {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// TLSCertificate is the serving certificate as the TLS server uses it.
func (s *State) TLSCertificate() *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{s.Leaf.Raw}, PrivateKey: s.LeafKey, Leaf: s.Leaf}
}

// Decision is what the Secret should hold and when to look again.
type Decision struct {
	// State is what the Secret should hold.
	State *State
	// Changed is true when State differs from the current one; Reasons
	// then say why, for the log.
	Changed bool
	Reasons []string
	// Wake is when the state next needs a decision (a renewal, the end of
	// a propagation wait, a CA leaving the bundle).
	Wake time.Time
}

// Decide returns what the Secret should hold at now, given what it holds
// (cur, nil when missing or unreadable; why says which). random is the
// source of key material and serial numbers.
func Decide(cur *State, why string, cfg Config, now time.Time, random io.Reader) (Decision, error) {
	if cur == nil || !now.Before(cur.CA.NotAfter) {
		if cur != nil {
			why = "the CA has expired"
		}
		return fresh(why, cfg, now, random)
	}
	next := *cur
	next.Trusted = slices.Clone(cur.Trusted)
	var reasons []string

	// A CA leaves the bundle when it has expired: nothing it signed can be
	// served any more.
	next.Trusted = slices.DeleteFunc(next.Trusted, func(c *x509.Certificate) bool {
		if c != next.CA && !now.Before(c.NotAfter) {
			reasons = append(reasons, fmt.Sprintf("an expired CA (serial %s) left the bundle", c.SerialNumber.Text(16)))
			return true
		}
		return false
	})
	if !now.Before(renewal(next.CA, cfg.CAValidity)) {
		ca, key, err := newCA(cfg, now, random)
		if err != nil {
			return Decision{}, err
		}
		next.CA, next.CAKey, next.TrustedSince = ca, key, now
		next.Trusted = append([]*x509.Certificate{ca}, next.Trusted...)
		reasons = append(reasons, "the CA is due for renewal; the new CA joined the bundle")
	}
	leafExpired := !now.Before(next.Leaf.NotAfter)
	propagated := !now.Before(next.TrustedSince.Add(cfg.Propagation))
	switch {
	case next.Leaf.CheckSignatureFrom(next.CA) != nil:
		// Signed by an older CA: move to the current one once the
		// apiserver has had time to trust it.
		if propagated || leafExpired {
			reasons = append(reasons, "the serving certificate moved to the current CA")
			if err := next.issue(cfg, now, random); err != nil {
				return Decision{}, err
			}
		}
	case leafExpired:
		reasons = append(reasons, "the serving certificate had expired")
		if err := next.issue(cfg, now, random); err != nil {
			return Decision{}, err
		}
	case !now.Before(renewal(next.Leaf, cfg.CertValidity)):
		reasons = append(reasons, "the serving certificate is due for renewal")
		if err := next.issue(cfg, now, random); err != nil {
			return Decision{}, err
		}
	case !coversHosts(next.Leaf, cfg.Hosts):
		reasons = append(reasons, "the serving certificate does not name every host")
		if err := next.issue(cfg, now, random); err != nil {
			return Decision{}, err
		}
	}
	d := Decision{State: &next, Changed: len(reasons) > 0, Reasons: reasons}
	d.Wake = next.wake(cfg, now)
	return d, nil
}

// fresh starts over: a new CA, trusted alone, and a serving certificate.
func fresh(why string, cfg Config, now time.Time, random io.Reader) (Decision, error) {
	ca, key, err := newCA(cfg, now, random)
	if err != nil {
		return Decision{}, err
	}
	s := &State{CA: ca, CAKey: key, Trusted: []*x509.Certificate{ca}, TrustedSince: now}
	if err := s.issue(cfg, now, random); err != nil {
		return Decision{}, err
	}
	return Decision{State: s, Changed: true, Reasons: []string{"new CA and serving certificate: " + why}, Wake: s.wake(cfg, now)}, nil
}

// wake is when the state next needs a decision.
func (s *State) wake(cfg Config, now time.Time) time.Time {
	times := []time.Time{renewal(s.CA, cfg.CAValidity), renewal(s.Leaf, cfg.CertValidity), s.Leaf.NotAfter}
	if s.Leaf.CheckSignatureFrom(s.CA) != nil {
		times = append(times, s.TrustedSince.Add(cfg.Propagation))
	}
	for _, c := range s.Trusted {
		if c != s.CA {
			times = append(times, c.NotAfter)
		}
	}
	w := slices.MinFunc(times, time.Time.Compare)
	// Never sooner than a second: a decision made at w moves w on.
	if floor := now.Add(time.Second); w.Before(floor) {
		w = floor
	}
	return w
}

// renewal is when c is due: a third of its lifetime before it expires. The
// lifetime is the configured one, or c's own when shorter (a serving
// certificate cut short by its CA's expiry), so a renewal never falls due
// at once again.
func renewal(c *x509.Certificate, validity time.Duration) time.Time {
	life := min(validity, c.NotAfter.Sub(c.NotBefore.Add(backdate)))
	return c.NotAfter.Add(-life / 3)
}

// newCA makes a CA valid for cfg.CAValidity.
func newCA(cfg Config, now time.Time, random io.Reader) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), random)
	if err != nil {
		return nil, nil, fmt.Errorf("generating a CA key: %w", err)
	}
	serial, err := serialNumber(random)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "apiwarden-webhook-ca", Organization: []string{"apiwarden"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(cfg.CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(random, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the CA: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

// issue replaces the serving certificate with a new one signed by s.CA,
// valid for cfg.CertValidity or until the CA expires, whichever is sooner.
func (s *State) issue(cfg Config, now time.Time, random io.Reader) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), random)
	if err != nil {
		return fmt.Errorf("generating a serving key: %w", err)
	}
	serial, err := serialNumber(random)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cfg.Hosts[0], Organization: []string{"apiwarden"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(cfg.CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(s.CA.NotAfter) {
		tmpl.NotAfter = s.CA.NotAfter
	}
	for _, h := range cfg.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(random, tmpl, s.CA, key.Public(), s.CAKey)
	if err != nil {
		return fmt.Errorf("signing the serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	s.Leaf, s.LeafKey = leaf, key
	return nil
}

// coversHosts reports whether c is valid for every one of hosts. A
// certificate naming more is kept: during a rolling upgrade that changes the
// hosts, replicas of both versions then accept the same certificate instead
// of reissuing it in turn.
func coversHosts(c *x509.Certificate, hosts []string) bool {
	have := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		have = append(have, ip.String())
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		if !slices.Contains(have, h) {
			return false
		}
	}
	return true
}

// MovesToNewCA reports whether next serves a certificate signed by a CA
// that did not sign cur's: the apiserver must trust that CA first.
func MovesToNewCA(cur, next *State) bool {
	return cur != nil && !bytes.Equal(cur.Leaf.Raw, next.Leaf.Raw) && cur.Leaf.CheckSignatureFrom(next.CA) != nil
}

func serialNumber(random io.Reader) (*big.Int, error) {
	n, err := rand.Int(random, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("drawing a serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM-encoded key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block of type %q is not a private key", block.Type)
	}
	if err != nil {
		// The parser's error names the encoding, never the key's bytes.
		return nil, fmt.Errorf("unreadable private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("the private key cannot sign")
	}
	return signer, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding a private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
