package exposure

import (
	"sort"
	"strconv"
	"strings"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// ParamsName is the ConfigMap, in every namespace a CEL-mode baseline
// governs, that holds the admission params: what protects each attachment
// level there, as the engine resolves it.
const ParamsName = "apiwarden-coverage"

// maxParamKey is the longest ConfigMap key.
const maxParamKey = 253

// canonicalGroup is the group of each kind a policy may target; a targetRef
// with another group matches no object the engine evaluates.
var canonicalGroup = map[string]string{
	"HTTPRoute": GroupGateway, "GRPCRoute": GroupGateway, "Gateway": GroupGateway,
	"Ingress": GroupNetworking, "Service": GroupCore,
}

// levelID names an attachment level in the params: kind, namespace, name
// and section joined by "_", which no Kubernetes name contains.
func levelID(key TargetKey, section string) string {
	return key.Kind + "_" + key.Namespace + "_" + key.Name + "_" + section
}

// Params computes the admission params of namespace ns from every policy of
// the cluster: for each level an object of ns may be protected at (the
// targets of ns's policies, and Gateways of any namespace, which routes of
// ns may attach to), the winning Enforce-mode policy's protections and the
// DryRun policies there, exactly as the engine's resolution sees them
// (winner). The compiled ValidatingAdmissionPolicies (AdmissionPolicies)
// combine levels field by field as resolve does. Keys:
//
//	lvl_<L>      the level has policies
//	dry_<L>      DryRun policies there, comma-separated
//	tls_<L>      <minVersion>|<httpRedirect>
//	auth_<L>     authentication methods, comma-separated (may be empty)
//	authpol_<L>  the policy that sets authentication
//	rate_<L>     limits as <requests>:<unit>:<by>:<per second>, ';'-separated
//	req_<L>      maxBodyBytes, empty when the request limits set none
//	cors_<L>     1 or 0 (credentials), then each allowed origin, '\n'-separated
//	gen_<policy> the generation of each policy of ns the params reflect
//
// where <L> is kind_namespace_name_section. A level whose key would exceed a
// ConfigMap key's 253 characters is left out: objects protected only there
// are denied (fail closed), and the docs say so.
func Params(snap Snapshot, policies []*apiwardenv1alpha1.APIPolicy, ns string) map[string]string {
	type lv struct {
		key     TargetKey
		section string
	}
	seen := map[lv]bool{}
	var levels []lv
	for _, p := range policies {
		for _, ref := range p.Spec.TargetRefs {
			if g, ok := canonicalGroup[ref.Kind]; !ok || g != ref.Group {
				continue
			}
			if p.Namespace != ns && ref.Kind != "Gateway" {
				continue
			}
			key := TargetKey{Group: ref.Group, Kind: ref.Kind, Namespace: p.Namespace, Name: ref.Name}
			candidates := []lv{{key: key}}
			if ref.SectionName != nil && *ref.SectionName != "" {
				candidates = append(candidates, lv{key: key, section: *ref.SectionName})
			}
			for _, c := range candidates {
				if !seen[c] {
					seen[c] = true
					levels = append(levels, c)
				}
			}
		}
	}
	out := map[string]string{}
	for _, l := range levels {
		id := levelID(l.key, l.section)
		if len("authpol_")+len(id) > maxParamKey {
			continue
		}
		w, dry := winner(snap, level{key: l.key, section: l.section}, nil)
		if w == nil && len(dry) == 0 {
			continue
		}
		out["lvl_"+id] = ""
		if len(dry) > 0 {
			out["dry_"+id] = strings.Join(dry, ",")
		}
		if w == nil {
			continue
		}
		s := &w.Spec
		if s.TLS != nil {
			out["tls_"+id] = string(s.TLS.MinVersion) + "|" + string(s.TLS.HTTPRedirect)
		}
		if s.Authentication != nil {
			var buf [3]apiwardenv1alpha1.AuthenticationMethod
			ms := methods(s.Authentication, &buf)
			names := make([]string, len(ms))
			for i, m := range ms {
				names[i] = string(m)
			}
			out["auth_"+id] = strings.Join(names, ",")
			out["authpol_"+id] = w.Name
		}
		if s.RateLimit != nil && len(s.RateLimit.Limits) > 0 {
			limits := make([]string, len(s.RateLimit.Limits))
			for i, l := range s.RateLimit.Limits {
				limits[i] = strconv.Itoa(int(l.Requests)) + ":" + strings.ToLower(string(l.Unit)) + ":" + string(l.By) + ":" +
					strconv.FormatFloat(l.Rate().PerSecond(), 'g', -1, 64)
			}
			out["rate_"+id] = strings.Join(limits, ";")
		}
		if s.Request != nil {
			v := ""
			if s.Request.MaxBodyBytes != nil {
				v = strconv.FormatInt(*s.Request.MaxBodyBytes, 10)
			}
			out["req_"+id] = v
		}
		if s.CORS != nil {
			v := "0"
			if s.CORS.AllowCredentials != nil && *s.CORS.AllowCredentials {
				v = "1"
			}
			for _, o := range s.CORS.AllowOrigins {
				v += "\n" + o
			}
			out["cors_"+id] = v
		}
	}
	var own []*apiwardenv1alpha1.APIPolicy
	for _, p := range policies {
		if p.Namespace == ns {
			own = append(own, p)
		}
	}
	sort.Slice(own, func(i, j int) bool { return own[i].Name < own[j].Name })
	for _, p := range own {
		out["gen_"+p.Name] = strconv.FormatInt(p.Generation, 10)
	}
	return out
}
