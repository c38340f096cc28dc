package authz

import (
	"context"
	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"net/http"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// PolicyContextKey is the ext_authz context extension naming the APIPolicy,
// as "<namespace>/<name>". Envoy Gateway sets it from
// SecurityPolicy.spec.extAuth.contextExtensions, so a client cannot choose it.
const PolicyContextKey = "apiwarden.io/policy"

// ModeContextKey is the ext_authz context extension in which a rendered
// DryRun policy says so ("DryRun"). The service then lets a request through
// even when it cannot decide (not ready, or the policy not yet known): a
// DryRun policy must never block traffic, whatever the service's state.
const ModeContextKey = "apiwarden.io/mode"

// envoyHeaders reads the headers of an ext_authz CheckRequest: the map Envoy
// fills by default (lower-case keys, repeated headers joined by ","), or the
// header map it sends when encode_raw_headers is on.
type envoyHeaders struct {
	m  map[string]string
	hm []*corev3.HeaderValue
}

func (h *envoyHeaders) Get(lower, _ string) (string, int) {
	if h.hm != nil {
		first, n := "", 0
		for _, hv := range h.hm {
			if hv.GetKey() == lower {
				if n == 0 {
					first = hv.GetValue()
					if first == "" {
						first = string(hv.GetRawValue())
					}
				}
				n++
			}
		}
		return first, n
	}
	v, ok := h.m[lower]
	if !ok {
		return "", 0
	}
	return v, 1
}

// GRPCServer implements envoy.service.auth.v3.Authorization.
type GRPCServer struct {
	authv3.UnimplementedAuthorizationServer
	store *Store
	now   func() time.Time
}

// NewGRPCServer returns the ext_authz service over s.
func NewGRPCServer(s *Store, now func() time.Time) *GRPCServer {
	return &GRPCServer{store: s, now: now}
}

// Check implements Authorization.Check.
func (g *GRPCServer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := g.now()
	attrs := req.GetAttributes()
	hr := attrs.GetRequest().GetHttp()
	hdrs := envoyHeaders{m: hr.GetHeaders()}
	if hm := hr.GetHeaderMap(); hm != nil {
		hdrs.hm = hm.GetHeaders()
	}
	in := Input{
		Policy:  attrs.GetContextExtensions()[PolicyContextKey],
		Method:  hr.GetMethod(),
		Path:    hr.GetPath(),
		Headers: &hdrs,
		Client:  attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
	}
	res := g.store.Check(&in, start)
	res.allowUndecided(attrs.GetContextExtensions()[ModeContextKey] == string(apiwardenv1alpha1.PolicyModeDryRun),
		res.Code == NotReady || res.Code == PolicyUnknown)
	resp := grpcResponse(&res)
	g.store.Observe(GRPC, &in, &res, g.now().Sub(start))
	return resp, nil
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

var (
	okStatus     = &rpcstatus.Status{Code: int32(codes.OK)}
	jsonHeader   = header("content-type", "application/json")
	noStoreHdr   = header("cache-control", "no-store")
	retryHdr     = header("retry-after", "1")
	deniedStatus = map[int]*rpcstatus.Status{
		http.StatusUnauthorized:       {Code: int32(codes.Unauthenticated)},
		http.StatusForbidden:          {Code: int32(codes.PermissionDenied)},
		http.StatusBadRequest:         {Code: int32(codes.InvalidArgument)},
		http.StatusServiceUnavailable: {Code: int32(codes.Unavailable)},
	}
)

func grpcResponse(res *Result) *authv3.CheckResponse {
	if res.Code == Allowed && res.DryRun == Allowed && res.entry != nil {
		// The allowed response depends only on the key and the policy's
		// header: build it once per key and reuse it (messages are only
		// read while being marshalled, so sharing them is safe).
		_, lower := res.KeyHeader()
		if c := res.entry.okResp.Load(); c != nil && c.header == lower {
			return c.resp
		}
		resp := buildOK(res)
		res.entry.okResp.Store(&cachedOK{header: lower, resp: resp})
		return resp
	}
	if res.Code == Allowed {
		return buildOK(res)
	}
	return buildDenied(res)
}

// cachedOK is an allowed response kept on a key entry.
type cachedOK struct {
	header string
	resp   *authv3.CheckResponse
}

func buildOK(res *Result) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
		header("x-apiwarden-consumer", res.Consumer),
		header("x-apiwarden-key-id", res.KeyID),
	}}
	if _, lower := res.KeyHeader(); lower != "" {
		ok.HeadersToRemove = []string{lower}
	}
	if res.DryRun != Allowed {
		ok.Headers = append(ok.Headers, header("x-apiwarden-dry-run", res.DryRun.String()))
	} else {
		// A client must not be able to pretend a DryRun verdict.
		ok.HeadersToRemove = append(ok.HeadersToRemove, "x-apiwarden-dry-run")
	}
	return &authv3.CheckResponse{Status: okStatus, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}
}

func buildDenied(res *Result) *authv3.CheckResponse {
	status := res.Code.Status()
	denied := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
		Headers: []*corev3.HeaderValueOption{jsonHeader, noStoreHdr},
		Body:    res.Body(),
	}
	switch status {
	case http.StatusUnauthorized:
		denied.Headers = append(denied.Headers, header("www-authenticate", res.WWWAuthenticate()))
	case http.StatusServiceUnavailable:
		denied.Headers = append(denied.Headers, retryHdr)
	}
	st := deniedStatus[status]
	if st == nil {
		st = &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: strconv.Itoa(status)}
	}
	return &authv3.CheckResponse{Status: st, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied}}
}
