package authz

import (
	"strings"

	"github.com/apiwarden/apiwarden/internal/identity"
)

// XFCCHeader is Envoy's x-forwarded-client-cert header, which the gateway
// sets (mode SanitizeSet: the client's own value is replaced) to the details
// of the client certificate it verified.
const XFCCHeader = "x-forwarded-client-cert"

// maxXFCC bounds the header apiwarden parses; Envoy's element for one
// certificate with URI and Subject is a few hundred bytes.
const maxXFCC = 8 << 10

// xfccConsumer returns the apiwarden consumer of namespace that an XFCC
// value names: the URI of its last element (the certificate the gateway
// itself verified, with SanitizeSet the only one), when that URI is an
// apiwarden consumer URI of this namespace. It parses the value as Envoy
// writes it: elements separated by ',', key=value pairs by ';', values
// optionally in double quotes with backslash escapes.
func xfccConsumer(v, namespace string) (string, bool) {
	if len(v) == 0 || len(v) > maxXFCC {
		return "", false
	}
	elems := splitQuoted(v, ',')
	last := elems[len(elems)-1]
	uri := ""
	for _, kv := range splitQuoted(last, ';') {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "URI") {
			continue
		}
		if uri != "" {
			return "", false // two URIs: ambiguous, refuse
		}
		val, ok = unquote(strings.TrimSpace(val))
		if !ok {
			return "", false
		}
		uri = val
	}
	ns, consumer, ok := identity.ConsumerFromURI(uri)
	if !ok || ns != namespace {
		return "", false
	}
	return consumer, true
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unquote removes the double quotes of a quoted XFCC value and its
// backslash escapes; an unquoted value is returned as is.
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' {
		return s, !strings.ContainsAny(s, "\"\\")
	}
	if s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		if c == '\\' {
			i++
			if i >= len(s)-1 {
				return "", false
			}
			c = s[i]
		} else if c == '"' {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}
