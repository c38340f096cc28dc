package identity

import "testing"

func TestConsumerURIRoundTrip(t *testing.T) {
	u := ConsumerURI("shop", "mobile-app")
	if u != "spiffe://apiwarden.io/ns/shop/consumer/mobile-app" {
		t.Fatalf("ConsumerURI = %q", u)
	}
	ns, c, ok := ConsumerFromURI(u)
	if !ok || ns != "shop" || c != "mobile-app" {
		t.Fatalf("ConsumerFromURI = %q %q %v", ns, c, ok)
	}
	for _, bad := range []string{"", "spiffe://apiwarden.io/ns/shop", "spiffe://apiwarden.io/ns//consumer/x", "spiffe://evil.io/ns/shop/consumer/x",
		"spiffe://apiwarden.io/ns/shop/consumer/x/y", "spiffe://apiwarden.io/ns/shop/role/x", "https://apiwarden.io/ns/shop/consumer/x"} {
		if _, _, ok := ConsumerFromURI(bad); ok {
			t.Errorf("ConsumerFromURI(%q) accepted", bad)
		}
	}
}

func FuzzConsumerFromURI(f *testing.F) {
	f.Add("spiffe://apiwarden.io/ns/shop/consumer/mobile-app")
	f.Add("spiffe://apiwarden.io/ns/a/consumer/")
	f.Fuzz(func(t *testing.T, s string) {
		ns, c, ok := ConsumerFromURI(s)
		if ok && ConsumerURI(ns, c) != s {
			t.Fatalf("%q parsed as %q/%q, which renders differently", s, ns, c)
		}
	})
}
