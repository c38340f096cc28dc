// Package gatewayapi renders what plain Gateway API can express of an
// APIPolicy: the HTTP to HTTPS redirect of a Gateway's plain-HTTP listeners.
// Authentication, rate limits and the rest need an implementation's own
// policy kinds (see package envoygateway), so this renderer reports them as
// unsupported instead of dropping them silently.
package gatewayapi

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/render"
)

// Name is the renderer's name for --gateway.
const Name = "gateway-api"

// Renderer renders Gateway API objects.
type Renderer struct{}

var _ render.Renderer = Renderer{}

// Name implements render.Renderer.
func (Renderer) Name() string { return Name }

// Kinds implements render.Renderer.
func (Renderer) Kinds() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{gatewayv1.SchemeGroupVersion.WithKind("HTTPRoute")}
}

// Supports implements render.Renderer.
func (Renderer) Supports(group, kind string) bool {
	return group == render.GatewayGroup && (kind == "Gateway" || kind == "HTTPRoute" || kind == "GRPCRoute")
}

// Render implements render.Renderer: the redirects, and a note for every
// other field, which plain Gateway API cannot enforce.
func (Renderer) Render(in render.Input) (render.Result, error) {
	res, err := Redirects(in)
	if err != nil {
		return res, err
	}
	s := in.Spec
	for _, f := range []struct {
		set   bool
		field string
	}{
		{s.Authentication != nil, "spec.authentication"},
		{s.Authorization != nil, "spec.authorization"},
		{s.RateLimit != nil, "spec.rateLimit"},
		{s.Request != nil, "spec.request"},
		{s.CORS != nil, "spec.cors"},
		{s.Versioning != nil, "spec.versioning"},
		{s.TLS != nil && s.TLS.HSTS != nil, "spec.tls.hsts"},
		{s.TLS != nil && s.TLS.MinVersion != "", "spec.tls.minVersion"},
	} {
		if f.set {
			res.Notef(f.field, "plain Gateway API has no standard field for this; use --gateway envoy-gateway")
		}
	}
	return res, nil
}

// Redirects renders, for a Gateway target whose effective tls.httpRedirect is
// Enabled, one HTTPRoute per plain-HTTP listener (only the listener named by
// sectionName, when set) that answers every request with a 301 to the same
// URL over HTTPS. A route target gets nothing: the redirect is a property of
// the Gateway's listener, and the admission engine requires it there.
//
// The redirect route matches every path of the listener's hostname with the
// lowest precedence Gateway API allows, so a route attached to the same HTTP
// listener without a sectionName still wins for the paths it matches; attach
// application routes to the HTTPS listener by sectionName (documented in
// docs/enforcement.md).
func Redirects(in render.Input) (render.Result, error) {
	var res render.Result
	gw, ok := in.Object.(*gatewayv1.Gateway)
	if !ok || in.Spec.TLS == nil || in.Spec.TLS.HTTPRedirect != apiwardenv1alpha1.FeatureEnabled {
		return res, nil
	}
	httpsPort := gatewayv1.PortNumber(443)
	for _, l := range gw.Spec.Listeners {
		if l.Protocol == gatewayv1.HTTPSProtocolType {
			httpsPort = l.Port
			break
		}
	}
	for _, l := range gw.Spec.Listeners {
		if l.Protocol != gatewayv1.HTTPProtocolType {
			continue
		}
		if in.Target.SectionName != nil && string(l.Name) != *in.Target.SectionName {
			continue
		}
		if in.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun {
			res.WouldBlockf("plain-HTTP requests on listener %q would be redirected to HTTPS", l.Name)
			continue
		}
		ref := in.Target
		ref.SectionName = ptr.To(string(l.Name))
		route := &gatewayv1.HTTPRoute{
			TypeMeta: metav1.TypeMeta{APIVersion: gatewayv1.SchemeGroupVersion.String(), Kind: "HTTPRoute"},
			ObjectMeta: metav1.ObjectMeta{
				Name:      render.ObjectName(in.Policy.Name, ref, "https-redirect", 253),
				Namespace: in.Policy.Namespace,
				Labels:    render.Labels(in.Policy.Name),
			},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
					Group: ptr.To(gatewayv1.Group(render.GatewayGroup)), Kind: ptr.To(gatewayv1.Kind("Gateway")),
					Name: gatewayv1.ObjectName(gw.Name), SectionName: ptr.To(l.Name),
				}}},
				Rules: []gatewayv1.HTTPRouteRule{{
					Filters: []gatewayv1.HTTPRouteFilter{{
						Type: gatewayv1.HTTPRouteFilterRequestRedirect,
						RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{
							Scheme:     ptr.To("https"),
							Port:       redirectPort(httpsPort),
							StatusCode: ptr.To(301),
						},
					}},
				}},
			},
		}
		if l.Hostname != nil {
			route.Spec.Hostnames = []gatewayv1.Hostname{*l.Hostname}
		}
		res.Objects = append(res.Objects, route)
	}
	return res, nil
}

// redirectPort omits the port when it is HTTPS's default, so Location
// headers carry no ":443".
func redirectPort(p gatewayv1.PortNumber) *gatewayv1.PortNumber {
	if p == 443 {
		return nil
	}
	return ptr.To(p)
}
