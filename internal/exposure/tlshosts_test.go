package exposure

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

func TestTLSHostSetCovers(t *testing.T) {
	s := newTLSHostSet([]networkingv1.IngressTLS{{Hosts: []string{"*.Example.com", "api.shop.io", "a.b", "*.z.org"}}, {Hosts: []string{"!weird", "~tilde"}}})
	cases := map[string]bool{
		"x.example.com": true, "X.EXAMPLE.COM": true, "example.com": false, "a.x.example.com": false,
		"api.shop.io": true, "www.shop.io": false, "a.b": true, "q.z.org": true, "*.z.org": true, "*.y.org": false,
		"z.org": false, ".example.com": false, "": false, "!weird": true, "~tilde": true, "a": false,
	}
	defer s.release()
	for host, want := range cases {
		if got := s.covers(host); got != want {
			t.Errorf("covers(%q) = %v, want %v", host, got, want)
		}
	}
}

// naiveCovers is the obvious definition covers must agree with.
func naiveCovers(host string, tlsHosts []string) bool {
	host = strings.ToLower(host)
	for _, t := range tlsHosts {
		t = strings.ToLower(t)
		if t == host {
			return true
		}
		if suffix, ok := strings.CutPrefix(t, "*."); ok && !strings.HasPrefix(host, "*.") {
			if first, rest, found := strings.Cut(host, "."); found && first != "" && rest == suffix {
				return true
			}
		}
	}
	return false
}

func FuzzTLSHostSetCovers(f *testing.F) {
	f.Add("x.example.com", "*.example.com", "api.example.com")
	f.Add("*.a", "*.a", "")
	f.Add("A.b.C", "*.B.c", "a.b.c")
	f.Fuzz(func(t *testing.T, host, tls1, tls2 string) {
		s := newTLSHostSet([]networkingv1.IngressTLS{{Hosts: []string{tls1, tls2}}})
		defer s.release()
		if got, want := s.covers(host), naiveCovers(host, []string{tls1, tls2}); got != want {
			t.Fatalf("covers(%q) with %q, %q = %v, want %v", host, tls1, tls2, got, want)
		}
	})
}
