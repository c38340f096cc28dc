package authz

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// ForwardAuthPrefix is the path of the HTTP forward-auth endpoint; the
// APIPolicy follows it as "<namespace>/<name>", e.g.
// /v1/forward-auth/shop/orders-api.
const ForwardAuthPrefix = "/v1/forward-auth/"

// ModeQuery is the query parameter of the forward-auth URL in which a
// rendered DryRun policy says so (mode=DryRun), as ModeContextKey does for
// ext_authz: the service then lets a request through even when it cannot
// decide. The proxy's configuration sets the URL, so a client cannot.
const ModeQuery = "mode"

// httpHeaders reads net/http headers.
type httpHeaders http.Header

func (h httpHeaders) Get(_, canonical string) (string, int) {
	v := h[canonical]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}

// HTTPHandler serves HTTP forward-auth: the request shape of Traefik's
// ForwardAuth (X-Forwarded-Method, X-Forwarded-Uri) and of ingress-nginx's
// auth-url (X-Original-Method, X-Original-Url), with the client's headers
// copied. It answers 200 with the consumer in X-Apiwarden-Consumer, which
// the proxy copies upstream (Traefik authResponseHeaders, ingress-nginx
// auth-response-headers), or the refusal the proxy returns to the client.
func HTTPHandler(s *Store, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := now()
		policy, ok := strings.CutPrefix(r.URL.Path, ForwardAuthPrefix)
		if !ok || strings.Count(policy, "/") != 1 || strings.HasPrefix(policy, "/") || strings.HasSuffix(policy, "/") {
			http.Error(w, "not found: use "+ForwardAuthPrefix+"<namespace>/<apipolicy>", http.StatusNotFound)
			return
		}
		in := Input{Policy: policy, Headers: httpHeaders(r.Header), Client: forwardedClient(r)}
		in.Method, in.Path = forwardedRequest(r.Header)
		var res Result
		if in.Path == "" {
			// Without the original request target neither the query nor the
			// path can be checked: fail closed and say why.
			res = Result{Code: PathRejected}
		} else {
			res = s.Check(&in, start)
		}
		// Over forward-auth a request without its original URI is
		// undecided too: the proxy's request, not the client's, lacks it.
		res.allowUndecided(r.URL.RawQuery != "" && r.URL.Query().Get(ModeQuery) == string(apiwardenv1alpha1.PolicyModeDryRun),
			res.Code == NotReady || res.Code == PolicyUnknown || in.Path == "")
		writeHTTP(w, &res)
		s.Observe(HTTP, &in, &res, now().Sub(start))
	})
}

func writeHTTP(w http.ResponseWriter, res *Result) {
	h := w.Header()
	h["Cache-Control"] = noStore
	if res.Code == Allowed {
		h[ConsumerHeader] = []string{res.Consumer}
		h[KeyIDHeader] = []string{res.KeyID}
		if res.DryRun != Allowed {
			h[DryRunHeader] = []string{res.DryRun.String()}
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	h["Content-Type"] = jsonType
	if res.Code.Status() == http.StatusUnauthorized {
		h["Www-Authenticate"] = []string{res.WWWAuthenticate()}
	}
	if res.Code == NotReady {
		h["Retry-After"] = retryAfter
	}
	w.WriteHeader(res.Code.Status())
	_, _ = io.WriteString(w, res.Body())
}

var (
	noStore    = []string{"no-store"}
	jsonType   = []string{"application/json"}
	retryAfter = []string{"1"}
)

// forwardedRequest returns the original method and request target.
func forwardedRequest(h http.Header) (method, target string) {
	if v := h["X-Forwarded-Uri"]; len(v) == 1 {
		target = v[0]
	} else if v := h["X-Original-Url"]; len(v) == 1 {
		// ingress-nginx sends the full URL: keep the path and query.
		target = v[0]
		if i := strings.Index(target, "://"); i >= 0 {
			rest := target[i+3:]
			if j := strings.IndexByte(rest, '/'); j >= 0 {
				target = rest[j:]
			} else {
				target = "/"
			}
		}
	}
	if v := h["X-Forwarded-Method"]; len(v) == 1 {
		method = v[0]
	} else if v := h["X-Original-Method"]; len(v) == 1 {
		method = v[0]
	}
	return method, target
}

// forwardedClient is the client address the proxy reports: the last
// X-Forwarded-For entry (the one the proxy in front of this service added;
// the entries to its left are whatever the client sent), else X-Real-Ip,
// else the peer. A value that is not an IP address is passed over, so a
// client can neither choose the address its refusals are counted under
// nor lengthen the log line that names it.
func forwardedClient(r *http.Request) string {
	if v := r.Header["X-Forwarded-For"]; len(v) > 0 {
		last := v[len(v)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
			return a.String()
		}
	}
	if v := r.Header["X-Real-Ip"]; len(v) > 0 {
		if a, err := netip.ParseAddr(strings.TrimSpace(v[0])); err == nil {
			return a.String()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
