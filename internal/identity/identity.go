// Package identity names consumers in client certificates: apiwarden's
// client certificates carry the URI SAN
// "spiffe://apiwarden.io/ns/<namespace>/consumer/<name>", which the gateway
// validates and forwards (x-forwarded-client-cert) and the authz service
// reads back.
package identity

import (
	"net/url"
	"strings"
)

// ConsumerURI is the URI SAN that identifies a consumer in its client
// certificate: "spiffe://apiwarden.io/ns/<namespace>/consumer/<name>".
func ConsumerURI(namespace, consumer string) string {
	return (&url.URL{Scheme: "spiffe", Host: "apiwarden.io", Path: "/ns/" + namespace + "/consumer/" + consumer}).String()
}

// ConsumerFromURI is the inverse of ConsumerURI: it returns the namespace
// and consumer a URI SAN names, and false for any other URI.
func ConsumerFromURI(uri string) (namespace, consumer string, ok bool) {
	rest, found := strings.CutPrefix(uri, "spiffe://apiwarden.io/ns/")
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != "consumer" || !isLabel(parts[0]) || !isLabel(parts[2]) {
		return "", "", false
	}
	return parts[0], parts[2], true
}

// isLabel reports whether s is a DNS label, what namespace and consumer
// names are.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
