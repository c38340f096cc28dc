package authz

import (
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

func TestXFCCConsumer(t *testing.T) {
	const uri = "spiffe://apiwarden.io/ns/b2b/consumer/acme"
	for _, tc := range []struct {
		v, want string
		ok      bool
	}{
		{`Hash=abc;URI=` + uri, "acme", true},
		{`By=spiffe://gw;Hash=abc;Subject="CN=acme,O=Acme, Inc.";URI=` + uri, "acme", true},
		{`Subject="CN=x";URI="` + uri + `"`, "acme", true},
		// the last element is the one the gateway verified
		{`URI=spiffe://apiwarden.io/ns/b2b/consumer/forged,Hash=1;URI=` + uri, "acme", true},
		{`URI=` + uri + `,Hash=1`, "", false},
		{`URI=spiffe://apiwarden.io/ns/other/consumer/acme`, "", false}, // another namespace
		{`URI=spiffe://evil.example/ns/b2b/consumer/acme`, "", false},
		{`URI=` + uri + `;URI=spiffe://apiwarden.io/ns/b2b/consumer/b`, "", false}, // ambiguous
		{`URI="` + uri, "", false},                                                 // unterminated quote
		{`URI=` + uri + `"`, "", false},
		{``, "", false},
		{`Hash=abc`, "", false},
	} {
		got, ok := xfccConsumer(tc.v, "b2b")
		if got != tc.want || ok != tc.ok {
			t.Errorf("xfccConsumer(%q) = %q, %v; want %q, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzXFCCConsumer(f *testing.F) {
	f.Add(`By=spiffe://gw;Hash=abc;Subject="CN=acme";URI=spiffe://apiwarden.io/ns/b2b/consumer/acme`)
	f.Add(`URI="spiffe://apiwarden.io/ns/b2b/consumer/a\"b"`)
	f.Add(`,,;;=="\`)
	f.Fuzz(func(t *testing.T, v string) {
		c, ok := xfccConsumer(v, "b2b")
		if ok && (c == "" || len(c) > 63) {
			t.Fatalf("%q gave consumer %q", v, c)
		}
	})
}

// A policy that authenticates by client certificate: the consumer comes
// from the verified certificate the gateway forwards, and the authorization
// rules apply to it.
func TestCheckClientCertificate(t *testing.T) {
	s := NewStore(testHome, nil)
	s.MarkSynced()
	if err := s.SetPepper(testPepper); err != nil {
		t.Fatal(err)
	}
	p := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "b2b", Name: "partners"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		Authentication: &apiwardenv1alpha1.Authentication{MTLS: &apiwardenv1alpha1.MTLSAuthentication{IssuerRef: apiwardenv1alpha1.IssuerReference{Name: "ca"}}},
		Authorization: &apiwardenv1alpha1.Authorization{DefaultAction: apiwardenv1alpha1.AuthorizationActionDeny, Rules: []apiwardenv1alpha1.AuthorizationRule{
			{Name: "acme-reads", Action: apiwardenv1alpha1.AuthorizationActionAllow, Consumers: []string{"acme"}, Methods: []apiwardenv1alpha1.HTTPMethod{"GET"}},
		}},
	}}
	s.UpsertPolicy(p)
	check := func(method, xfcc string) Result {
		h := http.Header{}
		if xfcc != "" {
			h.Set("X-Forwarded-Client-Cert", xfcc)
		}
		in := req(method, "/invoices", h)
		in.Policy = "b2b/partners"
		return s.Check(in, time.Now())
	}
	acme := "Hash=1;URI=spiffe://apiwarden.io/ns/b2b/consumer/acme"
	if r := check("GET", acme); r.Code != Allowed || r.Consumer != "acme" || r.Rule != "acme-reads" {
		t.Errorf("acme GET: %+v", r)
	}
	if r := check("POST", acme); r.Code != Forbidden {
		t.Errorf("acme POST: %s", r.Code)
	}
	if r := check("GET", "Hash=1;URI=spiffe://apiwarden.io/ns/b2b/consumer/globex"); r.Code != Forbidden {
		t.Errorf("globex: %s", r.Code)
	}
	for _, bad := range []string{"", "Hash=1", "URI=spiffe://apiwarden.io/ns/shop/consumer/acme"} {
		if r := check("GET", bad); r.Code != CertMissing || r.Code.Status() != 401 {
			t.Errorf("XFCC %q: %s", bad, r.Code)
		}
	}
}
