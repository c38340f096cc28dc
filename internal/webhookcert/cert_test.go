package webhookcert

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

var testConfig = Config{
	Hosts:        []string{"apiwarden-webhook.apiwarden-system.svc", "127.0.0.1"},
	CertValidity: 90 * time.Minute,
	CAValidity:   6 * time.Hour,
	Propagation:  10 * time.Minute,
}

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func decide(t *testing.T, cur *State, cfg Config, now time.Time) Decision {
	t.Helper()
	d, err := Decide(cur, "test", cfg, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// roundTrip encodes a state as the Secret would hold it and parses it back.
func roundTrip(t *testing.T, s *State) *State {
	t.Helper()
	data, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data, s.Annotations())
	if err != nil {
		t.Fatalf("parsing what Data wrote: %v", err)
	}
	return got
}

// verifies reports whether leaf chains to bundle for every host at now.
func verifies(leaf *x509.Certificate, bundle []*x509.Certificate, hosts []string, now time.Time) error {
	pool := x509.NewCertPool()
	for _, c := range bundle {
		pool.AddCert(c)
	}
	for _, h := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: h, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return err
		}
	}
	return nil
}

func TestDecideFresh(t *testing.T) {
	d := decide(t, nil, testConfig, t0)
	if !d.Changed || len(d.State.Trusted) != 1 || d.State.Trusted[0] != d.State.CA {
		t.Fatalf("fresh state: changed=%v, %d trusted", d.Changed, len(d.State.Trusted))
	}
	if err := verifies(d.State.Leaf, d.State.Trusted, testConfig.Hosts, t0); err != nil {
		t.Fatalf("the serving certificate does not verify for its hosts: %v", err)
	}
	if got := d.State.Leaf.NotAfter.Sub(t0); got != testConfig.CertValidity {
		t.Errorf("serving certificate valid for %s, want %s", got, testConfig.CertValidity)
	}
	if want := t0.Add(testConfig.CertValidity * 2 / 3); !d.Wake.Equal(want) {
		t.Errorf("wake at %s, want the renewal at %s", d.Wake, want)
	}
	got := roundTrip(t, d.State)
	if !bytes.Equal(got.Leaf.Raw, d.State.Leaf.Raw) || !bytes.Equal(got.BundlePEM(), d.State.BundlePEM()) || !got.TrustedSince.Equal(t0) {
		t.Error("the Secret's data does not round-trip")
	}
	if again := decide(t, got, testConfig, t0.Add(time.Minute)); again.Changed {
		t.Errorf("a fresh state changed a minute later: %v", again.Reasons)
	}
}

func TestDecideRenewsTheServingCertificateWithTheSameCA(t *testing.T) {
	s := decide(t, nil, testConfig, t0).State
	due := t0.Add(testConfig.CertValidity * 2 / 3)
	if d := decide(t, s, testConfig, due.Add(-time.Nanosecond)); d.Changed {
		t.Fatalf("renewed before it was due: %v", d.Reasons)
	}
	d := decide(t, s, testConfig, due)
	if !d.Changed || bytes.Equal(d.State.Leaf.Raw, s.Leaf.Raw) {
		t.Fatal("not renewed when due")
	}
	if !bytes.Equal(d.State.BundlePEM(), s.BundlePEM()) {
		t.Error("renewing the serving certificate changed the CA bundle")
	}
	if err := verifies(d.State.Leaf, s.Trusted, testConfig.Hosts, due); err != nil {
		t.Errorf("the new certificate does not verify against the bundle already injected: %v", err)
	}
}

func TestDecideReissuesForNewHosts(t *testing.T) {
	s := decide(t, nil, testConfig, t0).State
	cfg := testConfig
	cfg.Hosts = []string{"other.apiwarden-system.svc"}
	// Fewer hosts than the certificate names: kept.
	fewer := testConfig
	fewer.Hosts = testConfig.Hosts[:1]
	if d := decide(t, s, fewer, t0.Add(time.Minute)); d.Changed {
		t.Errorf("a certificate naming more hosts than asked was reissued: %v", d.Reasons)
	}
	d := decide(t, s, cfg, t0.Add(time.Minute))
	if !d.Changed || d.State.CA != s.CA {
		t.Fatalf("changed=%v, same CA=%v", d.Changed, d.State.CA == s.CA)
	}
	if err := verifies(d.State.Leaf, d.State.Trusted, cfg.Hosts, t0.Add(time.Minute)); err != nil {
		t.Error(err)
	}
}

// TestRotationNeverOutrunsTheBundle walks a state through several CA
// lifetimes, deciding at every wake and at odd moments between, as a
// replica would. At every moment the served certificate must be valid, and
// signed by a CA that has been in the injected bundle for at least
// Propagation (the apiserver may still act on a bundle that old), except
// right after the very first issue.
func TestRotationNeverOutrunsTheBundle(t *testing.T) {
	cfg := testConfig
	end := t0.Add(4 * cfg.CAValidity)
	s := decide(t, nil, cfg, t0).State
	joined := map[string]time.Time{string(s.CA.Raw): t0}
	wake := t0
	var leaves, cas int
	lastCA := s.CA
	for now := t0; now.Before(end); {
		// Decide at the wake, or 7 minutes on, whichever is sooner.
		if next := now.Add(7 * time.Minute); next.Before(wake) {
			now = next
		} else {
			now = wake
		}
		if !now.After(t0) {
			now = now.Add(time.Second)
		}
		d := decide(t, roundTrip(t, s), cfg, now)
		if d.Changed {
			if !bytes.Equal(d.State.Leaf.Raw, s.Leaf.Raw) {
				leaves++
			}
			if !bytes.Equal(d.State.CA.Raw, lastCA.Raw) {
				cas++
				lastCA = d.State.CA
				joined[string(d.State.CA.Raw)] = now
			}
		}
		s, wake = d.State, d.Wake
		if !wake.After(now) {
			t.Fatalf("at %s the next wake %s is not in the future", now, wake)
		}
		if len(s.Trusted) > 2 {
			t.Fatalf("at %s the bundle holds %d CAs", now, len(s.Trusted))
		}
		if err := verifies(s.Leaf, s.Trusted, cfg.Hosts, now); err != nil {
			t.Fatalf("at %s the served certificate does not verify: %v", now, err)
		}
		// Every moment until the next decision is covered as well.
		if !s.Leaf.NotAfter.After(wake) {
			t.Fatalf("at %s the served certificate expires at %s, before the next decision at %s", now, s.Leaf.NotAfter, wake)
		}
		issuer := s.issuerOf(s.Leaf)
		since, ok := joined[string(issuer.Raw)]
		if !ok {
			t.Fatalf("at %s the served certificate's issuer never joined the bundle", now)
		}
		if since != t0 && now.Sub(since) < cfg.Propagation {
			t.Fatalf("at %s a certificate is served whose CA joined the bundle only at %s", now, since)
		}
	}
	if cas < 3 || leaves < 3*int(cfg.CAValidity/cfg.CertValidity) {
		t.Errorf("%d CA and %d serving rotations in 4 CA lifetimes; the walk did not exercise rotation", cas, leaves)
	}
}

func TestDecideStartsOverWhenTheCAExpired(t *testing.T) {
	s := decide(t, nil, testConfig, t0).State
	d := decide(t, s, testConfig, s.CA.NotAfter)
	if !d.Changed || d.State.CA == s.CA || len(d.State.Trusted) != 1 {
		t.Fatal("an expired CA was kept")
	}
	if !strings.Contains(strings.Join(d.Reasons, " "), "expired") {
		t.Errorf("reasons %v do not say the CA expired", d.Reasons)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"no hosts":                func(c *Config) { c.Hosts = nil },
		"empty host":              func(c *Config) { c.Hosts = []string{""} },
		"tiny validity":           func(c *Config) { c.CertValidity = time.Second },
		"CA shorter than 2x":      func(c *Config) { c.CAValidity = c.CertValidity },
		"no propagation":          func(c *Config) { c.Propagation = 0 },
		"propagation too long":    func(c *Config) { c.Propagation = c.CertValidity / 5 },
		"propagation is negative": func(c *Config) { c.Propagation = -time.Second },
	} {
		c := testConfig
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := testConfig.Validate(); err != nil {
		t.Errorf("the test configuration is refused: %v", err)
	}
}

// TestParseRefusesInconsistentSecrets: every way a hand-edited Secret can
// be wrong is an error, and no error quotes key material.
func TestParseRefusesInconsistentSecrets(t *testing.T) {
	s := decide(t, nil, testConfig, t0).State
	good, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	other, err := decide(t, nil, testConfig, t0).State.Data()
	if err != nil {
		t.Fatal(err)
	}
	with := func(key string, value []byte) map[string][]byte {
		d := map[string][]byte{}
		for k, v := range good {
			d[k] = v
		}
		if value == nil {
			delete(d, key)
		} else {
			d[key] = value
		}
		return d
	}
	cases := map[string]map[string][]byte{
		"no bundle":                   with(KeyCABundle, nil),
		"garbage bundle":              with(KeyCABundle, []byte("not PEM")),
		"serving certificate as a CA": with(KeyCABundle, good[corev1.TLSCertKey]),
		"key in the bundle":           with(KeyCABundle, good[KeyCAKey]),
		"no CA key":                   with(KeyCAKey, nil),
		"CA key of another CA":        with(KeyCAKey, other[KeyCAKey]),
		"CA key is a certificate":     with(KeyCAKey, good[KeyCABundle]),
		"no serving certificate":      with(corev1.TLSCertKey, nil),
		"serving key of another pair": with(corev1.TLSPrivateKeyKey, other[corev1.TLSPrivateKeyKey]),
		"serving pair of another CA":  with(corev1.TLSPrivateKeyKey, other[corev1.TLSPrivateKeyKey]),
	}
	cases["serving pair of another CA"][corev1.TLSCertKey] = other[corev1.TLSCertKey]
	for name, data := range cases {
		_, err := Parse(data, s.Annotations())
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		for _, k := range []string{KeyCAKey, corev1.TLSPrivateKeyKey} {
			for _, src := range [][]byte{good[k], other[k]} {
				body := strings.Split(string(src), "\n")[1]
				if strings.Contains(err.Error(), body[:16]) {
					t.Errorf("%s: the error quotes key material: %v", name, err)
				}
			}
		}
	}
	if _, err := Parse(good, map[string]string{AnnotationTrustedSince: "yesterday"}); err == nil {
		t.Error("an unreadable trusted-since annotation was accepted")
	}
	if _, err := Parse(good, nil); err != nil {
		t.Errorf("a Secret without the annotation is refused: %v", err)
	}
	huge := bytes.Repeat(good[KeyCABundle], maxBundle+1)
	if _, err := Parse(with(KeyCABundle, huge), nil); err == nil {
		t.Error("a bundle of more than maxBundle CAs was accepted")
	}
}

// FuzzParse: whatever a Secret holds, Parse returns a state or an error,
// and a state it returns can be decided on.
func FuzzParse(f *testing.F) {
	s, err := Decide(nil, "seed", testConfig, t0, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	data, err := s.State.Data()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data[KeyCABundle], data[KeyCAKey], data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey], t0.Format(time.RFC3339))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte{}, []byte{}, []byte{}, "")
	f.Fuzz(func(t *testing.T, bundle, caKey, crt, key []byte, since string) {
		st, err := Parse(map[string][]byte{KeyCABundle: bundle, KeyCAKey: caKey, corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key},
			map[string]string{AnnotationTrustedSince: since})
		if err != nil {
			return
		}
		if _, err := Decide(st, "fuzz", testConfig, t0.Add(time.Hour), rand.Reader); err != nil {
			t.Fatalf("Decide on a parsed state: %v", err)
		}
	})
}
