package exposure

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// This file compiles an APIBaseline into ValidatingAdmissionPolicies: the
// engine's rules (this package's analysis, resolve and checkAPI), written
// once more as CEL that the apiserver evaluates against the object under
// admission and the params of its namespace (Params). It lives beside the
// engine so that one change updates both, and the differential test
// (test/admission) runs every case of the engine's table through both and
// requires the same verdict and message.

// CELKinds are the kinds a CEL-mode baseline compiles a policy for, with
// their resource and group.
var CELKinds = []struct{ Kind, Group, Resource string }{
	{"Ingress", GroupNetworking, "ingresses"},
	{"Service", GroupCore, "services"},
	{"Gateway", GroupGateway, "gateways"},
	{"HTTPRoute", GroupGateway, "httproutes"},
	{"GRPCRoute", GroupGateway, "grpcroutes"},
}

// AdmissionPolicyLabel marks the ValidatingAdmissionPolicies and bindings
// apiwarden compiles, with the baseline's name as value.
const AdmissionPolicyLabel = "apiwarden.io/baseline"

// AdmissionPolicyName is the name of the policy (and its binding) compiled
// for baseline and kind; names too long for the API are shortened with a
// digest.
func AdmissionPolicyName(baseline, kind string) string {
	n := "apiwarden-" + baseline + "-" + strings.ToLower(kind)
	if len(n) <= 253 {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	return n[:236] + "-" + hex.EncodeToString(sum[:8])
}

// AdmissionPolicy compiles baseline b's rules for one kind (a CELKinds
// entry) at time now (exemptions that have expired are left out; the
// controller compiles again at the next expiry). ownNamespace is never
// governed. The binding takes its params from the namespace of the object
// (paramRef without a namespace) and denies when they are missing.
func AdmissionPolicy(b *apiwardenv1alpha1.APIBaseline, kind string, now time.Time, ownNamespace string) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding, error) {
	var group, resource string
	for _, k := range CELKinds {
		if k.Kind == kind {
			group, resource = k.Group, k.Resource
		}
	}
	if resource == "" {
		return nil, nil, fmt.Errorf("exposure: no admission policy for kind %q", kind)
	}
	c := &celCompiler{b: b, kind: kind, req: requirements(b)}
	vars := []admissionregistrationv1.Variable{
		{Name: "levels", Expression: "has(params.data) && " + lit(LevelsKey) + " in params.data ? params.data[" + lit(LevelsKey) + "] : ''"},
		{Name: "ns", Expression: "request.namespace"},
		{Name: "labels", Expression: "has(object.metadata.labels) ? object.metadata.labels : {}"},
	}
	for _, ctl := range []apiwardenv1alpha1.Control{apiwardenv1alpha1.ControlTLS, apiwardenv1alpha1.ControlAuthentication,
		apiwardenv1alpha1.ControlRateLimit, apiwardenv1alpha1.ControlRequestBody, apiwardenv1alpha1.ControlCORS} {
		vars = append(vars, admissionregistrationv1.Variable{Name: "ex" + string(ctl), Expression: c.exempt(ctl, now)})
	}
	kindVars := c.kindVariables()
	vars = append(vars, kindVars...)
	// The fields of each scope's levels, then the fields resolved from
	// them; Ingresses and Services check TLS and the API protections on
	// the same scopes.
	tlsAlias := false
	for _, kv := range kindVars {
		tlsAlias = tlsAlias || (kv.Name == "tlsScopes" && kv.Expression == sameScopes)
	}
	vars = append(vars,
		admissionregistrationv1.Variable{Name: "apiLv", Expression: scopeLevels("apiScopes")},
		admissionregistrationv1.Variable{Name: "apiRes", Expression: resolvedFields("apiLv")})
	if tlsAlias {
		vars = append(vars,
			admissionregistrationv1.Variable{Name: "tlsLv", Expression: "variables.apiLv"},
			admissionregistrationv1.Variable{Name: "tlsRes", Expression: "variables.apiRes"})
	} else {
		vars = append(vars,
			admissionregistrationv1.Variable{Name: "tlsLv", Expression: scopeLevels("tlsScopes")},
			admissionregistrationv1.Variable{Name: "tlsRes", Expression: resolvedFields("tlsLv")})
	}
	vars = append(vars,
		admissionregistrationv1.Variable{Name: "pass", Expression: c.pass()},
		admissionregistrationv1.Variable{Name: "apiResolved", Expression: resolved("apiScopes", "apiRes", "apiLv")},
		admissionregistrationv1.Variable{Name: "tlsResolved", Expression: resolved("tlsScopes", "tlsRes", "tlsLv")},
		admissionregistrationv1.Variable{Name: "violations", Expression: c.violations()})
	action := b.Spec.EnforcementAction
	if action == "" {
		action = apiwardenv1alpha1.EnforcementActionDeny
	}
	vap, binding := compiled(b, kind, ownNamespace, celPolicy{
		group: group, resource: resource,
		operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		// The fast path: an object the params show to be compliant
		// without looking further does not match, so the apiserver
		// evaluates nothing else for it (it evaluates the message of
		// every matching request too, each with variables of its own).
		matchConditions: []admissionregistrationv1.MatchCondition{{Name: "not-known-compliant", Expression: "!(" + c.fast() + ")"}},
		variables:       vars,
		validation: admissionregistrationv1.Validation{
			// Updates of an object being deleted remove finalizers; the
			// webhook admits them too. "pass" is true exactly when
			// "violations" is empty (TestCELInProcessMatchesEngine and
			// the apiserver test hold them to the engine's verdict) and
			// builds no text, so a compliant object costs only the
			// checks.
			Expression: "has(object.metadata.deletionTimestamp) || variables.pass",
			// The webhook lists one violation per line; the apiserver
			// refuses a message with line breaks, so a space separates
			// them here. The apiserver evaluates the message of every
			// request, passing or not, with variables of its own, so
			// "pass" comes first.
			MessageExpression: "variables.pass ? '' : variables.violations.transformList(i, v, i < " + strconv.Itoa(maxListedCEL) + ", v).join(' ') + (size(variables.violations) > " + strconv.Itoa(maxListedCEL) + " ? ' … and ' + string(size(variables.violations) - " + strconv.Itoa(maxListedCEL) + ") + ' more violations; run `apiwarden check` on the manifest to see them all.' : '')",
		},
		paramNotFound: admissionregistrationv1.DenyAction,
		action:        admissionregistrationv1.ValidationAction(action),
	})
	return vap, binding, nil
}

// maxListedCEL is the webhook's maxListed: how many violations a denial lists.
const maxListedCEL = 10

// celPolicy is what differs between the policies compiled from a baseline.
type celPolicy struct {
	group, resource string
	operations      []admissionregistrationv1.OperationType
	matchConditions []admissionregistrationv1.MatchCondition
	variables       []admissionregistrationv1.Variable
	validation      admissionregistrationv1.Validation
	paramNotFound   admissionregistrationv1.ParameterNotFoundActionType
	action          admissionregistrationv1.ValidationAction
}

// compiled builds the policy named for baseline b and kind, failing closed
// and reading the params of the object's namespace, and its binding over
// the namespaces b governs.
func compiled(b *apiwardenv1alpha1.APIBaseline, kind, ownNamespace string, c celPolicy) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	name := AdmissionPolicyName(b.Name, kind)
	labels := map[string]string{AdmissionPolicyLabel: b.Name, "app.kubernetes.io/managed-by": "apiwarden"}
	c.validation.Reason = ptr.To(metav1.StatusReasonForbidden)
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			ParamKind:     &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: c.operations,
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{c.group}, APIVersions: []string{"*"}, Resources: []string{c.resource}},
				}}}},
			MatchConditions: c.matchConditions,
			Variables:       c.variables,
			Validations:     []admissionregistrationv1.Validation{c.validation},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ParamRef:          &admissionregistrationv1.ParamRef{Name: ParamsName, ParameterNotFoundAction: ptr.To(c.paramNotFound)},
			MatchResources:    &admissionregistrationv1.MatchResources{NamespaceSelector: namespaceSelector(b, ownNamespace)},
			ValidationActions: []admissionregistrationv1.ValidationAction{c.action},
		},
	}
	return vap, binding
}

// namespaceSelector is the baseline's selector less the namespaces no
// baseline governs (governing): the system ones, apiwarden's own and those
// labelled apiwarden.io/exclude=true.
func namespaceSelector(b *apiwardenv1alpha1.APIBaseline, ownNamespace string) *metav1.LabelSelector {
	sel := &metav1.LabelSelector{}
	if b.Spec.NamespaceSelector != nil {
		sel = b.Spec.NamespaceSelector.DeepCopy()
	}
	never := make([]string, 0, len(systemNamespaces)+1)
	for ns := range systemNamespaces {
		never = append(never, ns)
	}
	if ownNamespace != "" {
		never = append(never, ownNamespace)
	}
	sort.Strings(never)
	sel.MatchExpressions = append(sel.MatchExpressions,
		metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: never},
		metav1.LabelSelectorRequirement{Key: ExcludeLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"}},
	)
	return sel
}

type celCompiler struct {
	b    *apiwardenv1alpha1.APIBaseline
	kind string
	req  requirementSet
}

// lit is a CEL string literal.
func lit(s string) string { return strconv.Quote(s) }

// suffix ends every violation's hint, as Evaluate writes it.
func (c *celCompiler) suffix() string {
	return lit(fmt.Sprintf(" or ask a platform owner for an exemption in APIBaseline %q.", c.b.Name))
}

// exempt is a CEL bool: an unexpired exemption of the baseline waives ctl
// for the object (exemptionFor). Exemptions for other kinds are dropped
// here, since the policy is for one kind.
func (c *celCompiler) exempt(ctl apiwardenv1alpha1.Control, now time.Time) string {
	var terms []string
	for i := range c.b.Spec.Exemptions {
		ex := &c.b.Spec.Exemptions[i]
		if !now.Before(ex.Expires.Time) || (ex.Target.Kind != "" && ex.Target.Kind != c.kind) {
			continue
		}
		if len(ex.Controls) > 0 && !containsControl(ex.Controls, ctl) {
			continue
		}
		t := []string{"variables.ns == " + lit(ex.Target.Namespace)}
		if ex.Target.Name != "" {
			t = append(t, "object.metadata.name == "+lit(ex.Target.Name))
		}
		if ex.Target.Selector != nil {
			t = append(t, selectorCEL(ex.Target.Selector))
		}
		terms = append(terms, "("+strings.Join(t, " && ")+")")
	}
	if len(terms) == 0 {
		return "false"
	}
	return strings.Join(terms, " || ")
}

// selectorCEL is a CEL bool: the object's labels match sel.
func selectorCEL(sel *metav1.LabelSelector) string {
	var t []string
	keys := make([]string, 0, len(sel.MatchLabels))
	for k := range sel.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t = append(t, fmt.Sprintf("(%s in variables.labels && variables.labels[%s] == %s)", lit(k), lit(k), lit(sel.MatchLabels[k])))
	}
	for _, r := range sel.MatchExpressions {
		vals := make([]string, len(r.Values))
		for i, v := range r.Values {
			vals[i] = lit(v)
		}
		list := "[" + strings.Join(vals, ", ") + "]"
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			t = append(t, fmt.Sprintf("(%s in variables.labels && variables.labels[%s] in %s)", lit(r.Key), lit(r.Key), list))
		case metav1.LabelSelectorOpNotIn:
			t = append(t, fmt.Sprintf("(!(%s in variables.labels) || !(variables.labels[%s] in %s))", lit(r.Key), lit(r.Key), list))
		case metav1.LabelSelectorOpExists:
			t = append(t, fmt.Sprintf("(%s in variables.labels)", lit(r.Key)))
		case metav1.LabelSelectorOpDoesNotExist:
			t = append(t, fmt.Sprintf("!(%s in variables.labels)", lit(r.Key)))
		default:
			// A malformed selector matches nothing, as
			// LabelSelectorAsSelector's error makes exemptionFor skip it.
			return "false"
		}
	}
	if len(t) == 0 {
		return "true"
	}
	return strings.Join(t, " && ")
}

// fast is a CEL bool, for matchConditions (which see params but no
// variables): the object passes for reasons the params' FastKey list of
// the baseline shows at once. It may be false for a compliant object (the
// full check then runs) but never true for one with violations, and it
// builds no text. Per kind:
//   - Ingress: its own level is complete, and (when TLS is required) it
//     has no default backend and every rule's host is listed in spec.tls as
//     written. Every scope of an Ingress starts at its own level.
//   - Service: not external (neither LoadBalancer nor NodePort, no
//     externalIPs), so not exposed.
//   - Gateway: no plain-HTTP listener and, when TLS 1.3 is required, its
//     own level complete (its only scope).
//   - HTTPRoute, GRPCRoute: no query parameter matches (HTTPRoute, when
//     authentication is required), and either its own level is complete, or
//     no Enforce-mode policy targets it and every parent is a whole
//     Gateway whose level is complete.
func (c *celCompiler) fast() string {
	// The list, or its shard for object name n (maxUnshardedFast).
	key := lit(FastKey(c.b))
	list := func(n string) string {
		return "(params == null || !has(params.data) ? '' : (" + key + " in params.data ? params.data[" + key + "] : params.data[?" + key + " + '.' + " + n + ".substring(size(" + n + ") - 1)].orValue('')))"
	}
	completeAt := func(n, l string) string {
		return list(n) + ".contains(" + recordSepCEL + " + 'c:' + " + l + " + " + recordSepCEL + ")"
	}
	name := "object.metadata.name"
	self := lit(c.kind+"_") + " + request.namespace + '_' + object.metadata.name + '_'"
	tls := c.req.requires(apiwardenv1alpha1.ControlTLS)
	switch c.kind {
	case "Ingress":
		terms := []string{completeAt(name, self)}
		if tls {
			terms = append(terms, "!has(object.spec.defaultBackend)",
				"(!has(object.spec.rules) || sets.contains(has(object.spec.tls) ? object.spec.tls.map(t, has(t.hosts) ? t.hosts : []).flatten() : [], object.spec.rules.map(r, has(r.host) ? r.host : '')))")
		}
		return strings.Join(terms, " && ")
	case "Service":
		return "!(has(object.spec.type) && (object.spec.type == 'LoadBalancer' || object.spec.type == 'NodePort')) && !(has(object.spec.externalIPs) && size(object.spec.externalIPs) > 0)"
	case "Gateway":
		if !tls {
			return "true"
		}
		terms := []string{"!object.spec.listeners.exists(l, l.protocol == 'HTTP')"}
		if tlsRank(minTLS(c.req.TLS)) > tlsRank(apiwardenv1alpha1.TLSVersion12) {
			terms = append(terms, completeAt(name, self))
		}
		return strings.Join(terms, " && ")
	default: // HTTPRoute, GRPCRoute
		gwns := "(has(pr.namespace) && pr.namespace != '' ? pr.namespace : request.namespace)"
		parents := "(has(object.spec.parentRefs) ? object.spec.parentRefs : []).filter(pr, (!has(pr.group) || pr.group == 'gateway.networking.k8s.io') && (!has(pr.kind) || pr.kind == 'Gateway'))"
		covered := "(" + completeAt(name, self) + " || (!" + list(name) + ".contains(':' + " + self + " + " + recordSepCEL + ") && " +
			parents + ".all(pr, !has(pr.sectionName) && " + completeAt("pr.name", "'Gateway_' + "+gwns+" + '_' + pr.name + '_'") + ")))"
		if c.kind == "HTTPRoute" && c.req.requires(apiwardenv1alpha1.ControlAuthentication) {
			return "(!has(object.spec.rules) || object.spec.rules.all(r, !has(r.matches) || r.matches.all(m, !has(m.queryParams)))) && " + covered
		}
		return covered
	}
}

// ref is the CEL for a.ref(): "<Kind> <namespace>/<name>".
func (c *celCompiler) ref() string {
	return lit(c.kind+" ") + " + variables.ns + '/' + object.metadata.name"
}

// selfLevel is the CEL for the object's own level id (no section).
func (c *celCompiler) selfLevel() string {
	return lit(c.kind+"_") + " + variables.ns + '_' + object.metadata.name + '_'"
}

// kindVariables computes, per kind, "exposed", "findings" (the texts of
// the object's own failures whose control the baseline requires and no
// exemption waives, in the engine's order), "tlsScopes" and "apiScopes".
// A scope is a list of four strings: the subject in messages, the targets
// hint, the first level id and the second (empty when none).
func (c *celCompiler) kindVariables() []admissionregistrationv1.Variable {
	v := func(name, expr string) admissionregistrationv1.Variable {
		return admissionregistrationv1.Variable{Name: name, Expression: expr}
	}
	tls := c.req.requires(apiwardenv1alpha1.ControlTLS)
	auth := c.req.requires(apiwardenv1alpha1.ControlAuthentication)
	gate := func(required bool, ctl apiwardenv1alpha1.Control, list string) string {
		if !required {
			return "[]"
		}
		return "(variables.ex" + string(ctl) + " ? [] : " + list + ")"
	}
	sfx := c.suffix()
	switch c.kind {
	case "Ingress":
		noHost := lit(" exposes a rule without a host, which answers on every host, without TLS: spec.tls has no entry without hosts for it. Set a host on the rule and add it to spec.tls, or add a spec.tls entry without hosts (the controller's default certificate),")
		// Cheap tests first: most hosts are covered, so the duplicate
		// search (indexOf) runs only for the uncovered ones.
		lh := "variables.lhosts[i]"
		covered := "(" + lh + " in variables.tlsHosts || (!" + lh + ".startsWith('*.') && " + lh + ".indexOf('.') > 0 && ('*' + " + lh + ".substring(" + lh + ".indexOf('.'))) in variables.tlsHosts))"
		ruleFindings := "variables.hosts.transformList(i, h, " +
			"h == '' ? (!variables.defaultCert && variables.hosts.indexOf('') == i) : (!" + covered + " && variables.hosts.indexOf(h) == i), " +
			"h == '' ? " + c.ref() + " + " + noHost + " + " + sfx +
			" : " + c.ref() + " + ' exposes host ' + h + ' without TLS: spec.tls has no entry for it. Add a TLS entry,' + " + sfx + ")"
		defaultBackend := "(has(object.spec.defaultBackend) && !variables.defaultCert ? [" + c.ref() +
			" + " + lit(" exposes its default backend on every host without TLS: spec.tls has no entry without hosts. Add rules with hosts and matching spec.tls entries, or a spec.tls entry without hosts,") + " + " + sfx + "] : [])"
		backends := "((has(object.spec.defaultBackend) && has(object.spec.defaultBackend.service) ? [object.spec.defaultBackend.service.name] : []) + " +
			"variables.rules.map(r, has(r.http) ? r.http.paths.map(x, has(x.backend.service) ? x.backend.service.name : '') : []).flatten()).filter(n, n != '').distinct()"
		scopes := "size(variables.backends) == 0 ? [[" + c.ref() + ", 'Ingress ' + object.metadata.name, " + c.selfLevel() + ", '']] : " +
			"variables.backends.map(b, [" + c.ref() + " + (size(variables.backends) > 1 ? ' for backend Service ' + b : ''), " +
			"'Ingress ' + object.metadata.name + ' or Service ' + b, " + c.selfLevel() + ", 'Service_' + variables.ns + '_' + b + '_'])"
		return []admissionregistrationv1.Variable{
			v("exposed", "true"),
			v("rules", "has(object.spec.rules) ? object.spec.rules : []"),
			v("tlsEntries", "has(object.spec.tls) ? object.spec.tls : []"),
			v("defaultCert", "variables.tlsEntries.exists(t, !has(t.hosts) || size(t.hosts) == 0)"),
			v("tlsHosts", "variables.tlsEntries.map(t, has(t.hosts) ? t.hosts : []).flatten().map(h, h.lowerAscii())"),
			v("hosts", "variables.rules.map(r, has(r.host) ? r.host : '')"),
			v("lhosts", "variables.hosts.map(h, h.lowerAscii())"),
			v("findings", gate(tls, apiwardenv1alpha1.ControlTLS, "("+ruleFindings+" + "+defaultBackend+")")),
			v("backends", backends),
			v("apiScopes", scopes),
			v("tlsScopes", sameScopes),
		}
	case "Service":
		name := "(has(pt.name) ? pt.name.lowerAscii() : '')"
		ap := "(has(pt.appProtocol) ? pt.appProtocol.lowerAscii() : '')"
		httpAPs := sortedKeys(httpAppProtocols)
		speaks := "((!has(pt.protocol) || pt.protocol == '' || pt.protocol == 'TCP') && (" +
			"(" + ap + " != '' && " + ap + " in " + listLit(httpAPs) + ") ? true : " +
			"(" + ap + " != '' && " + listLit(nonHTTPAppProtocolPrefixes) + ".exists(x, " + ap + ".startsWith(x))) ? false : " +
			"(['http', 'https', 'grpc', 'h2c'].exists(x, " + name + ".startsWith(x))) ? true : " +
			"((" + name + " == '' || !" + listLit(otherProtocolNamePrefixes) + ".exists(x, " + name + ".startsWith(x))) ? pt.port in [80, 443, 8080, 8443] : false)))"
		ann := func(k string) string {
			return "(has(object.metadata.annotations) && " + lit(k) + " in object.metadata.annotations ? object.metadata.annotations[" + lit(k) + "] : '')"
		}
		listed := func(list string, emptyAll bool) string {
			return "(" + list + ".trim() == '' ? " + strconv.FormatBool(emptyAll) + " : " + list +
				".split(',').exists(it, it.trim() == '*' || it.trim() == string(pt.port) || (has(pt.name) && pt.name != '' && it.trim() == pt.name)))"
		}
		portTLS := "(" + ap + " in ['https', 'grpcs', 'kubernetes.io/wss'] || ['https', 'grpcs'].exists(x, " + name + ".startsWith(x)) || " +
			"(variables.type == 'LoadBalancer' && (" +
			"(" + ann(annAWSSSLCert) + " != '' && " + listed(ann(annAWSSSLPorts), true) + ") || " +
			"(" + ann(annDOCertID) + " != '' && " + listed(ann(annDOTLSPorts), false) + ") || " +
			"(" + ann(annOCITLSSecret) + " != '' && " + listed(ann(annOCISSLPorts), false) + "))))"
		portName := "(has(pt.name) && pt.name != '' ? strings.quote(pt.name) + ' (' + string(pt.port) + ')' : string(pt.port))"
		how := "(variables.type == 'NodePort' ? \"on every node's NodePort\" : (variables.type == 'LoadBalancer' ? 'on its load balancer' : 'on its externalIPs'))"
		findings := "variables.ports.transformList(i, pt, " + speaks + " && !" + portTLS + ", " + c.ref() + " + ' exposes plain-HTTP port ' + " + portName + " + ' ' + " + how +
			" + ' without TLS.' + " + lit(" Terminate TLS on the port (appProtocol https, or the load balancer's TLS annotation), or put the API behind a Gateway or Ingress with TLS,") + " + " + sfx + ")"
		scope := "[[" + c.ref() + ", 'Service ' + object.metadata.name, " + c.selfLevel() + ", '']]"
		return []admissionregistrationv1.Variable{
			v("type", "has(object.spec.type) ? object.spec.type : 'ClusterIP'"),
			v("ports", "has(object.spec.ports) ? object.spec.ports : []"),
			v("external", "variables.type == 'LoadBalancer' || variables.type == 'NodePort' || (has(object.spec.externalIPs) && size(object.spec.externalIPs) > 0)"),
			v("exposed", "variables.external && variables.ports.exists(pt, "+speaks+")"),
			v("findings", "!variables.exposed ? [] : "+gate(tls, apiwardenv1alpha1.ControlTLS, findings)),
			v("apiScopes", "variables.exposed ? "+scope+" : "+noScopes),
			v("tlsScopes", sameScopes),
		}
	case "Gateway":
		sec := "'Gateway_' + variables.ns + '_' + object.metadata.name + '_' + l.name"
		lvl := "(" + listedCEL(sec) + " ? " + sec + " : 'Gateway_' + variables.ns + '_' + object.metadata.name + '_')"
		tlsField, dryField := lookupCEL(lvl)+"[0]", lookupCEL(lvl)+"[6]"
		redirected := "(" + tlsField + " != '' && " + tlsField + ".substring(1).split('|')[1] != 'Disabled')"
		dry := "(" + dryField + " == '' ? [] : " + dryField + ".substring(1).split(',').sortBy(n, n))"
		msg := c.ref() + " + ' has plain-HTTP listener ' + strings.quote(l.name) + ' on port ' + string(l.port) + ' and no APIPolicy redirects it to HTTPS' + " + dryNoteCEL(dry)
		findings := "object.spec.listeners.transformList(i, l, l.protocol == 'HTTP' && !" + redirected + ", " + msg +
			" + ' Change the listener to HTTPS, or attach an APIPolicy targeting Gateway ' + object.metadata.name + ' (section ' + l.name + ') with spec.tls.httpRedirect: Enabled,' + " + sfx + ")"
		return []admissionregistrationv1.Variable{
			v("exposed", "object.spec.listeners.exists(l, l.protocol in ['HTTPS', 'TLS', 'HTTP'])"),
			v("findings", "!variables.exposed ? [] : "+gate(tls, apiwardenv1alpha1.ControlTLS, findings)),
			v("apiScopes", noScopes),
			v("tlsScopes", "variables.exposed ? [["+c.ref()+", 'Gateway ' + object.metadata.name, "+c.selfLevel()+", '']] : "+noScopes),
		}
	default: // HTTPRoute, GRPCRoute
		gwns := "(has(pr.namespace) && pr.namespace != '' ? pr.namespace : variables.ns)"
		sec := "(has(pr.sectionName) ? pr.sectionName : '')"
		gwl := "(" + listedCEL("'Gateway_' + "+gwns+" + '_' + pr.name + '_' + "+sec) + " ? 'Gateway_' + " + gwns + " + '_' + pr.name + '_' + " + sec + " : 'Gateway_' + " + gwns + " + '_' + pr.name + '_')"
		scopes := "variables.parents.map(pr, [" + c.ref() + " + (size(variables.parents) > 1 ? ' through Gateway ' + " + gwns + " + '/' + pr.name + (" + sec + " != '' ? ' listener ' + " + sec + " : '') : ''), " +
			lit(c.kind+" ") + " + object.metadata.name + ' or Gateway ' + pr.name + (" + gwns + " != variables.ns ? ' (in namespace ' + " + gwns + " + ')' : ''), " +
			c.selfLevel() + ", " + gwl + "])"
		findings := "[]"
		if c.kind == "HTTPRoute" {
			findings = gate(auth, apiwardenv1alpha1.ControlAuthentication,
				"(has(object.spec.rules) ? object.spec.rules : []).map(r, has(r.matches) ? r.matches.map(m, has(m.queryParams) ? m.queryParams.filter(q, q.name.lowerAscii() in "+listLit(sortedKeys(credentialParams))+").map(q, "+
					c.ref()+" + ' matches requests on query parameter ' + strings.quote(q.name) + ', which puts credentials in URLs, where logs, browser history and Referer headers keep them.' + "+
					lit(" Send the key in a header (APIPolicy spec.authentication.apiKey.header) and remove the query match,")+" + "+sfx+") : []).flatten() : []).flatten()")
		}
		return []admissionregistrationv1.Variable{
			v("parents", "(has(object.spec.parentRefs) ? object.spec.parentRefs : []).filter(pr, (!has(pr.group) || pr.group == 'gateway.networking.k8s.io') && (!has(pr.kind) || pr.kind == 'Gateway'))"),
			v("exposed", "size(variables.parents) > 0"),
			v("findings", "!variables.exposed ? [] : "+findings),
			v("apiScopes", scopes),
			v("tlsScopes", noScopes),
		}
	}
}

// sameScopes is the tlsScopes of a kind whose TLS scopes are its API
// scopes (Ingress, Service): AdmissionPolicy then resolves their levels once.
const sameScopes = "variables.apiScopes"

// noScopes is an empty list of scopes, typed as one.
const noScopes = "[['', '', '', '']].filter(x, false)"

// dryNoteCEL is withDryRun's ending in CEL for the DryRun policy names dry
// (a CEL list): "." when there are none, else the note.
func dryNoteCEL(dry string) string {
	return "(size(" + dry + ") == 0 ? '.' : (size(" + dry + ") == 1 ? ' (APIPolicy ' + strings.quote(" + dry + "[0]) + ' is in DryRun mode and does not count).' : ' (APIPolicies ' + " + dry + ".map(n, strings.quote(n)).join(', ') + ' are in DryRun mode and do not count).'))"
}

func listLit(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = lit(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// violations is the CEL list of every violation text, in Evaluate's order:
// the object's findings, the TLS version of each TLS scope, then the API
// protections of each API scope.
func (c *celCompiler) violations() string {
	parts := []string{"variables.findings"}
	if r := c.req.TLS; r != nil {
		parts = append(parts, "(variables.exTLS ? [] : variables.tlsResolved.map(s, "+c.tlsVersion(r)+").flatten())")
	}
	parts = append(parts, "variables.apiResolved.map(s, "+c.checkAPI()+").flatten()")
	return "!variables.exposed ? [] : " + strings.Join(parts, " + ")
}

// sepCEL is ParamsSeparator as a CEL string literal.
const sepCEL = "'\\u001f'"

// lookupCEL is the CEL list of the seven fields the params hold for level
// id l (a CEL string), each empty when the level does not set it and
// otherwise "+" and the value (Params); seven empty strings when the params
// do not list the level. split finds the record with a substring search,
// without converting the params to runes as indexOf and substring would.
func lookupCEL(l string) string {
	return "variables.levels.split(" + recordSepCEL + " + " + l + " + " + sepCEL + ", 2)[?1].orValue(" + noFieldsCEL + ").split(" + recordSepCEL + ", 2)[0].split(" + sepCEL + ")"
}

// noFieldsCEL is a record of seven empty fields.
const noFieldsCEL = "'\\u001f\\u001f\\u001f\\u001f\\u001f\\u001f'"

// noFieldsList is lookupCEL's answer for an absent level, as a list.
const noFieldsList = "['', '', '', '', '', '', '']"

// listedCEL is a CEL bool: the params list level id l.
func listedCEL(l string) string {
	return "variables.levels.contains(" + recordSepCEL + " + " + l + " + " + sepCEL + ")"
}

// scopeLevels maps the scopes in variable v ([subject, hint, level,
// level]) to the fields of their two levels.
func scopeLevels(v string) string {
	return "variables." + v + ".map(s, [" + lookupCEL("s[2]") + ", s[3] == '' ? " + noFieldsList + " : " + lookupCEL("s[3]") + "])"
}

// resolvedFields maps the level fields in variable lv to what resolve
// computes for each scope: each field from the first level that sets it
// (the seventh, DryRun policies, is collected from both by dryScope
// instead).
func resolvedFields(lv string) string {
	return "variables." + lv + ".map(ab, ab[0].transformList(i, x, x != '' ? x : ab[1][i]))"
}

// resolved is, for the messages, each scope of variable scopes with its
// resolved fields (res) and DryRun note (from its levels, lv): [subject,
// hint, then TLS, authentication methods, the policy that sets them, rate
// limits, maxBodyBytes, CORS, and the DryRun note].
func resolved(scopes, res, lv string) string {
	items := []string{"s[0]", "s[1]"}
	for i := 0; i < 6; i++ {
		items = append(items, "variables."+res+"[i]["+strconv.Itoa(i)+"]")
	}
	items = append(items, dryNoteCEL(dryScope(lv)))
	return "variables." + scopes + ".transformList(i, s, [" + strings.Join(items, ", ") + "])"
}

// Fields of a resolved scope s.
const (
	rTLS     = "s[2]"
	rAuth    = "s[3]"
	rAuthPol = "s[4]"
	rRate    = "s[5]"
	rReq     = "s[6]"
	rCORS    = "s[7]"
	rDryNote = "s[8]"
)

// withDry is withDryRun over resolved scope s, for msg without its final ".".
func withDry(msgNoDot string) string {
	return msgNoDot + " + " + rDryNote
}

// dryScope is the CEL list of the DryRun policies at the levels of scope i
// of variable lv, as resolve collects them.
func dryScope(lv string) string {
	return "[variables." + lv + "[i][0][6], variables." + lv + "[i][1][6]].filter(d, d != '').map(d, d.substring(1).split(',')).flatten().sortBy(n, n)"
}

// tlsGot is the CEL for the minimum TLS version a resolved TLS field
// (tls, a CEL string) accepts.
func tlsGot(tls string) string {
	return "(" + tls + " == '' || " + tls + ".substring(1).split('|')[0] == '' ? '1.2' : " + tls + ".substring(1).split('|')[0])"
}

// tlsMeets is a CEL bool: the resolved TLS field tls meets minimum want.
func tlsMeets(tls string, want apiwardenv1alpha1.TLSVersion) string {
	got := tlsGot(tls)
	return "(" + got + " == '1.2' ? 12 : (" + got + " == '1.3' ? 13 : 0)) >= " + strconv.Itoa(tlsRank(want))
}

// minTLS is the minimum TLS version r requires.
func minTLS(r *apiwardenv1alpha1.TLSRequirement) apiwardenv1alpha1.TLSVersion {
	if r.MinVersion == "" {
		return apiwardenv1alpha1.TLSVersion12
	}
	return r.MinVersion
}

// authNames is the authentication methods r accepts, as the params name
// them.
func authNames(r *apiwardenv1alpha1.AuthenticationRequirement) []string {
	allowed := r.Methods
	if len(allowed) == 0 {
		allowed = allMethods
	}
	names := make([]string, len(allowed))
	for i, m := range allowed {
		names[i] = string(m)
	}
	return names
}

// ceilingCEL is the rate limit ceiling, in requests per second, as a CEL
// double literal.
func ceilingCEL(r *apiwardenv1alpha1.RateLimitRequirement) string {
	return "double('" + strconv.FormatFloat(r.Ceiling.PerSecond(), 'g', -1, 64) + "')"
}

// corsFound is the CEL condition on origin x (the first item of o, the
// credentials flag, is skipped by the callers) that the CORS requirement r
// refuses.
func corsFound(o string, r *apiwardenv1alpha1.CORSRequirement) string {
	wildOK := strconv.FormatBool(r.WildcardOrigins == apiwardenv1alpha1.FeatureEnabled)
	return "((" + o + "[0] == '1' && x.contains('*')) || (x == '*' && !" + wildOK + "))"
}

// pass is the CEL bool that violations is empty, computed without
// building any text: the object's own findings (which build text only for
// failures), then each requirement over the resolved fields of each scope.
func (c *celCompiler) pass() string {
	terms := []string{"size(variables.findings) == 0"}
	if r := c.req.TLS; r != nil {
		terms = append(terms, "(variables.exTLS || variables.tlsRes.all(r, "+tlsMeets("r[0]", minTLS(r))+"))")
	}
	var api []string
	if r := c.req.Authentication; r != nil {
		api = append(api, "(variables.exAuthentication || (r[1] != '' && r[1] != '+' && r[1].substring(1).split(',').exists(m, m in "+listLit(authNames(r))+")))")
	}
	if r := c.req.RateLimit; r != nil {
		within := ""
		if r.Ceiling != nil {
			within = " && !r[3].substring(1).split(';').exists(l, double(l.split(':')[3]) > " + ceilingCEL(r) + ")"
		}
		api = append(api, "(variables.exRateLimit || (r[3] != ''"+within+"))")
	}
	if r := c.req.RequestBody; r != nil {
		api = append(api, "(variables.exRequestBody || (r[4] != '' && r[4] != '+' && !(int(r[4].substring(1)) > "+strconv.FormatInt(r.MaxBytes, 10)+")))")
	}
	if r := c.req.CORS; r != nil {
		o := "r[5].substring(1).split('\\n')"
		api = append(api, "(variables.exCORS || r[5] == '' || !"+o+".exists(i, x, i > 0 && "+corsFound(o, r)+"))")
	}
	if len(api) > 0 {
		terms = append(terms, "variables.apiRes.all(r, "+strings.Join(api, " && ")+")")
	}
	return "!variables.exposed || (" + strings.Join(terms, " && ") + ")"
}

func (c *celCompiler) tlsVersion(r *apiwardenv1alpha1.TLSRequirement) string {
	want := minTLS(r)
	msg := "s[0] + ' accepts TLS ' + " + tlsGot(rTLS) + " + ', below the required minimum TLS " + string(want) + "'"
	return "(" + tlsMeets(rTLS, want) + " ? [] : [" + withDry(msg) +
		" + ' Attach an APIPolicy targeting ' + s[1] + ' with spec.tls.minVersion: " + strings.ReplaceAll(lit(string(want)), `"`, `\"`) + ",' + " + c.suffix() + "])"
}

// checkAPI is checkAPI in CEL, over scope s: a list of violation texts.
func (c *celCompiler) checkAPI() string {
	sfx := c.suffix()
	var parts []string
	if r := c.req.Authentication; r != nil {
		allowed := r.Methods
		if len(allowed) == 0 {
			allowed = allMethods
		}
		got := rAuth + ".substring(1).split(',')"
		gotList := "(size(" + got + ") == 1 ? " + got + "[0] : (size(" + got + ") == 2 ? " + got + "[0] + ' or ' + " + got + "[1] : " + got + "[0] + ', ' + " + got + "[1] + ' or ' + " + got + "[2]))"
		missing := withDry("s[0] + ' is exposed without authentication: no APIPolicy in Enforce mode targeting ' + s[1] + ' sets spec.authentication'") +
			" + ' Attach an APIPolicy targeting ' + s[1] + ' with spec.authentication (" + methodList(allowed) + "),' + " + sfx
		notAllowed := "s[0] + ' authenticates with ' + " + gotList + " + ' only, which the baseline does not accept. Configure one of " + methodList(allowed) +
			" in APIPolicy ' + strings.quote(" + rAuthPol + ".substring(1)) + ',' + " + sfx
		parts = append(parts, "(variables.exAuthentication ? [] : ("+rAuth+" == '' || "+rAuth+" == '+' ? ["+missing+"] : (!"+got+".exists(m, m in "+listLit(authNames(r))+") ? ["+notAllowed+"] : [])))")
	}
	if r := c.req.RateLimit; r != nil {
		missing := withDry("s[0] + ' is exposed without a rate limit: no APIPolicy in Enforce mode targeting ' + s[1] + ' sets spec.rateLimit'") +
			" + ' Attach an APIPolicy targeting ' + s[1] + ' with spec.rateLimit.limits,' + " + sfx
		above := "[]"
		if r.Ceiling != nil {
			over := rRate + ".substring(1).split(';').filter(l, double(l.split(':')[3]) > " + ceilingCEL(r) + ").map(l, s[0] + ' allows ' + l.split(':')[0] + ' requests per ' + l.split(':')[1] + ' by ' + l.split(':')[2] + " +
				lit(fmt.Sprintf(", above the ceiling of %d per %s.", r.Ceiling.Requests, strings.ToLower(string(r.Ceiling.Unit)))) + " + ' Lower the limit in the covering APIPolicy,' + " + sfx + ")"
			above = "(size(" + over + ") > 0 ? [" + over + "[0]] : [])"
		}
		parts = append(parts, "(variables.exRateLimit ? [] : ("+rRate+" == '' ? ["+missing+"] : "+above+"))")
	}
	if r := c.req.RequestBody; r != nil {
		max := strconv.FormatInt(r.MaxBytes, 10)
		missing := withDry("s[0] + ' has no request body limit: no APIPolicy in Enforce mode targeting ' + s[1] + ' sets spec.request.maxBodyBytes'") +
			" + ' Set spec.request.maxBodyBytes to at most " + max + " in an APIPolicy targeting ' + s[1] + ',' + " + sfx
		tooLarge := "s[0] + ' accepts request bodies of ' + " + rReq + ".substring(1) + ' bytes, above the maximum of " + max + ". Lower spec.request.maxBodyBytes in the covering APIPolicy,' + " + sfx
		parts = append(parts, "(variables.exRequestBody ? [] : ("+rReq+" == '' || "+rReq+" == '+' ? ["+missing+"] : (int("+rReq+".substring(1)) > "+max+" ? ["+tooLarge+"] : [])))")
	}
	if r := c.req.CORS; r != nil {
		o := rCORS + ".substring(1).split('\\n')"
		text := "(" + o + "[0] == '1' && x.contains('*')) ? s[0] + ' allows credentials in cross-origin requests from a wildcard origin (' + strings.quote(x) + ').' + ' List the trusted origins in spec.cors.allowOrigins of the covering APIPolicy, or drop allowCredentials,' + " + sfx +
			" : s[0] + ' allows cross-origin requests from any origin (\"*\").' + ' List the trusted origins in spec.cors.allowOrigins of the covering APIPolicy,' + " + sfx
		found := o + ".transformList(i, x, i > 0 && " + corsFound(o, r) + ", " + text + ")"
		parts = append(parts, "(variables.exCORS || "+rCORS+" == '' ? [] : (size("+found+") > 0 ? ["+found+"[0]] : []))")
	}
	if len(parts) == 0 {
		return "[]"
	}
	return strings.Join(parts, " + ")
}

// GuardKind is the name AdmissionPolicyName gives the CEL guard on
// APIPolicy deletion and weakening.
const GuardKind = "APIPolicy"

// AdmissionGuardPolicy compiles the CEL guard of a Deny baseline: deleting
// an APIPolicy, or updating it so that it loses what it alone provides
// (weakensCEL), is denied while the params of its namespace list it under
// GuardKey (Guard computes them), with the webhook guard's message. Other
// baselines have no guard (nil, nil).
func AdmissionGuardPolicy(b *apiwardenv1alpha1.APIBaseline, ownNamespace string) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	if b.Spec.EnforcementAction != "" && b.Spec.EnforcementAction != apiwardenv1alpha1.EnforcementActionDeny {
		return nil, nil
	}
	// The record of the policy: its name is a DNS subdomain, where only
	// "." means something in a regular expression.
	rec := "variables.guard.find(" + recordSepCEL + " + oldObject.metadata.name.replace('.', '\\\\.') + " + sepCEL + " + '[^' + " + recordSepCEL + " + ']*')"
	return compiled(b, GuardKind, ownNamespace, celPolicy{
		group: apiwardenv1alpha1.GroupVersion.Group, resource: "apipolicies",
		operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Delete, admissionregistrationv1.Update},
		variables: []admissionregistrationv1.Variable{
			{Name: "guard", Expression: "has(params.data) && " + lit(GuardKey) + " in params.data ? params.data[" + lit(GuardKey) + "] : ''"},
			{Name: "record", Expression: rec},
			{Name: "weakens", Expression: weakensCEL},
		},
		validation: admissionregistrationv1.Validation{
			Expression: "variables.record == '' || !variables.weakens",
			MessageExpression: "(request.operation == 'DELETE' ? 'Deleting' : 'Updating') + ' APIPolicy ' + request.namespace + '/' + oldObject.metadata.name + ' would leave exposed objects without the protection a Deny baseline requires: ' + " +
				"variables.record.split(" + sepCEL + ")[1] + '. Attach another APIPolicy that provides it first, or remove the exposure.'",
		},
		// A namespace without params has nothing the guard protects.
		paramNotFound: admissionregistrationv1.AllowAction,
		action:        admissionregistrationv1.Deny,
	})
}

// weakensCEL is true when the request takes away something the guard
// record says the policy alone provides: a deletion; an update to DryRun;
// an update that drops a target; or one that removes a protection field
// the record names (the record lists, per object, what deleting the policy
// would lose, and removing the field loses the same, since the other
// levels stay). Weakening a field it keeps (a looser rate limit, another
// authentication method) is beyond CEL here: in Both mode the webhook's
// guard, which evaluates the new spec, refuses it.
var weakensCEL = "request.operation == 'DELETE' || " +
	"(has(object.spec.mode) && object.spec.mode == 'DryRun' && !(has(oldObject.spec.mode) && oldObject.spec.mode == 'DryRun')) || " +
	"oldObject.spec.targetRefs.exists(r, !object.spec.targetRefs.exists(n, n.group == r.group && n.kind == r.kind && n.name == r.name && " +
	"(has(n.sectionName) ? has(r.sectionName) && n.sectionName == r.sectionName : !has(r.sectionName)))) || " +
	strings.Join([]string{
		lost("authentication", "has(oldObject.spec.authentication) && !has(object.spec.authentication)"),
		lost("rate limit", "has(oldObject.spec.rateLimit) && !has(object.spec.rateLimit)"),
		lost("request body limit", "has(oldObject.spec.request) && has(oldObject.spec.request.maxBodyBytes) && !(has(object.spec.request) && has(object.spec.request.maxBodyBytes))"),
		lost("HTTP-to-HTTPS redirect", "has(oldObject.spec.tls) && has(oldObject.spec.tls.httpRedirect) && oldObject.spec.tls.httpRedirect == 'Enabled' && "+
			"!(has(object.spec.tls) && has(object.spec.tls.httpRedirect) && object.spec.tls.httpRedirect == 'Enabled')"),
		lost("minimum TLS version", "has(oldObject.spec.tls) && has(oldObject.spec.tls.minVersion) && !(has(object.spec.tls) && has(object.spec.tls.minVersion))"),
		lost("CORS origin restriction", "has(oldObject.spec.cors) && !has(object.spec.cors)"),
	}, " || ")

// lost is a CEL bool: the guard record names protection (as
// Code.Protection words it, inside "(…, …, required by …)") and removed
// holds.
func lost(protection, removed string) string {
	return "(variables.record.matches(" + lit(`(\(|, )`+regexp.QuoteMeta(protection)+`, `) + ") && " + removed + ")"
}

// recordSepCEL is RecordSeparator as a CEL string literal.
const recordSepCEL = "'\\u001e'"

// ParamsGuardName names the ValidatingAdmissionPolicy (and its binding)
// that keeps the params ConfigMaps apiwarden's alone.
const ParamsGuardName = "apiwarden-params-guard"

// ParamsGuardPolicy compiles the guard of the params: the CEL-mode
// policies admit what the params say is protected, so whoever could write
// a namespace's apiwarden-coverage ConfigMap (a namespace admin, usually)
// could admit anything there. The guard refuses every CREATE and UPDATE of
// a ConfigMap of that name, in any namespace, except by a service account
// of apiwarden's own namespace (ownNamespace; the manager's) and by
// members of system:masters (who can remove the guard anyway). Deleting the
// params is left alone: CEL mode then denies (parameterNotFoundAction:
// Deny), and the manager writes them again.
func ParamsGuardPolicy(ownNamespace string) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	allowed := "'system:masters' in request.userInfo.groups"
	who := "members of system:masters"
	if ownNamespace != "" {
		allowed = lit("system:serviceaccounts:"+ownNamespace) + " in request.userInfo.groups || " + allowed
		who = "apiwarden (the service accounts of namespace " + ownNamespace + ") and " + who
	}
	labels := map[string]string{"app.kubernetes.io/managed-by": "apiwarden"}
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: ParamsGuardName, Labels: labels},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				ResourceNames: []string{ParamsName},
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				}}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: allowed,
				Message: "ConfigMap " + ParamsName + " holds apiwarden's CEL admission params, which decide what the apiserver admits in this namespace; only " + who +
					" may write it. Change the APIPolicies instead; apiwarden recomputes the params from them.",
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: ParamsGuardName, Labels: labels},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        ParamsGuardName,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	return vap, binding
}
