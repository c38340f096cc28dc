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
		{Name: "p", Expression: "has(params.data) ? params.data : {}"},
		{Name: "ns", Expression: "request.namespace"},
		{Name: "labels", Expression: "has(object.metadata.labels) ? object.metadata.labels : {}"},
	}
	for _, ctl := range []apiwardenv1alpha1.Control{apiwardenv1alpha1.ControlTLS, apiwardenv1alpha1.ControlAuthentication,
		apiwardenv1alpha1.ControlRateLimit, apiwardenv1alpha1.ControlRequestBody, apiwardenv1alpha1.ControlCORS} {
		vars = append(vars, admissionregistrationv1.Variable{Name: "ex" + string(ctl), Expression: c.exempt(ctl, now)})
	}
	vars = append(vars, c.kindVariables()...)
	vars = append(vars,
		admissionregistrationv1.Variable{Name: "apiResolved", Expression: resolved("apiScopes")},
		admissionregistrationv1.Variable{Name: "tlsResolved", Expression: resolved("tlsScopes")})
	vars = append(vars, admissionregistrationv1.Variable{Name: "violations", Expression: c.violations()})
	action := b.Spec.EnforcementAction
	if action == "" {
		action = apiwardenv1alpha1.EnforcementActionDeny
	}
	vap, binding := compiled(b, kind, ownNamespace, celPolicy{
		group: group, resource: resource,
		operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		variables:  vars,
		validation: admissionregistrationv1.Validation{
			// Updates of an object being deleted remove finalizers; the
			// webhook admits them too.
			Expression: "has(object.metadata.deletionTimestamp) || size(variables.violations) == 0",
			// The webhook lists one violation per line; the apiserver
			// refuses a message with line breaks, so a space separates
			// them here.
			MessageExpression: "variables.violations.transformList(i, v, i < " + strconv.Itoa(maxListedCEL) + ", v).join(' ') + (size(variables.violations) > " + strconv.Itoa(maxListedCEL) + " ? ' … and ' + string(size(variables.violations) - " + strconv.Itoa(maxListedCEL) + ") + ' more violations; run `apiwarden check` on the manifest to see them all.' : '')",
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
			Variables:   c.variables,
			Validations: []admissionregistrationv1.Validation{c.validation},
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
			v("tlsScopes", "variables.apiScopes"),
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
			v("tlsScopes", "variables.apiScopes"),
		}
	case "Gateway":
		lvl := "(('L_Gateway_' + variables.ns + '_' + object.metadata.name + '_' + l.name) in variables.p ? 'Gateway_' + variables.ns + '_' + object.metadata.name + '_' + l.name : 'Gateway_' + variables.ns + '_' + object.metadata.name + '_')"
		tlsField, dryField := field(lvl, 0), field(lvl, 6)
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
		gwl := "(('L_Gateway_' + " + gwns + " + '_' + pr.name + '_' + " + sec + ") in variables.p ? 'Gateway_' + " + gwns + " + '_' + pr.name + '_' + " + sec + " : 'Gateway_' + " + gwns + " + '_' + pr.name + '_')"
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

// field is the CEL for field i of the params of level id l (a CEL string):
// empty when the level or the field is absent, else "+" and the value.
func field(l string, i int) string {
	return "(('L_' + " + l + ") in variables.p ? variables.p['L_' + " + l + "].split(" + sepCEL + ")[" + strconv.Itoa(i) + "] : '')"
}

// resolved maps the scopes in variable v ([subject, hint, level, level])
// to what resolve computes for each: [subject, hint, then, from the first
// level that sets it, TLS, authentication methods, the policy that sets
// them, rate limits, maxBodyBytes and CORS (each empty or "+value", as in the
// params), and the DryRun note]. It is computed once per scope.
func resolved(v string) string {
	items := []string{"s[0]", "s[1]"}
	for i := 0; i < 6; i++ {
		first, second := field("s[2]", i), field("s[3]", i)
		items = append(items, "("+first+" != '' ? "+first+" : (s[3] != '' ? "+second+" : ''))")
	}
	items = append(items, dryNoteCEL(dryScope))
	return "variables." + v + ".map(s, [" + strings.Join(items, ", ") + "])"
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

// dryScope is the CEL list of the DryRun policies at scope s's levels, as
// resolve collects them.
var dryScope = "[s[2], s[3]].filter(l, l != '').map(l, " + field("l", 6) + ").filter(d, d != '').map(d, d.substring(1).split(',')).flatten().sortBy(n, n)"

func (c *celCompiler) tlsVersion(r *apiwardenv1alpha1.TLSRequirement) string {
	want := r.MinVersion
	if want == "" {
		want = apiwardenv1alpha1.TLSVersion12
	}
	got := "(" + rTLS + " == '' || " + rTLS + ".substring(1).split('|')[0] == '' ? '1.2' : " + rTLS + ".substring(1).split('|')[0])"
	rank := "(" + got + " == '1.2' ? 12 : (" + got + " == '1.3' ? 13 : 0))"
	msg := "s[0] + ' accepts TLS ' + " + got + " + ', below the required minimum TLS " + string(want) + "'"
	return "(" + rank + " >= " + strconv.Itoa(tlsRank(want)) + " ? [] : [" + withDry(msg) +
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
		names := make([]string, len(allowed))
		for i, m := range allowed {
			names[i] = string(m)
		}
		got := rAuth + ".substring(1).split(',')"
		gotList := "(size(" + got + ") == 1 ? " + got + "[0] : (size(" + got + ") == 2 ? " + got + "[0] + ' or ' + " + got + "[1] : " + got + "[0] + ', ' + " + got + "[1] + ' or ' + " + got + "[2]))"
		missing := withDry("s[0] + ' is exposed without authentication: no APIPolicy in Enforce mode targeting ' + s[1] + ' sets spec.authentication'") +
			" + ' Attach an APIPolicy targeting ' + s[1] + ' with spec.authentication (" + methodList(allowed) + "),' + " + sfx
		notAllowed := "s[0] + ' authenticates with ' + " + gotList + " + ' only, which the baseline does not accept. Configure one of " + methodList(allowed) +
			" in APIPolicy ' + strings.quote(" + rAuthPol + ".substring(1)) + ',' + " + sfx
		parts = append(parts, "(variables.exAuthentication ? [] : ("+rAuth+" == '' || "+rAuth+" == '+' ? ["+missing+"] : (!"+got+".exists(m, m in "+listLit(names)+") ? ["+notAllowed+"] : [])))")
	}
	if r := c.req.RateLimit; r != nil {
		missing := withDry("s[0] + ' is exposed without a rate limit: no APIPolicy in Enforce mode targeting ' + s[1] + ' sets spec.rateLimit'") +
			" + ' Attach an APIPolicy targeting ' + s[1] + ' with spec.rateLimit.limits,' + " + sfx
		above := "[]"
		if r.Ceiling != nil {
			ceiling := strconv.FormatFloat(r.Ceiling.PerSecond(), 'g', -1, 64)
			over := rRate + ".substring(1).split(';').filter(l, double(l.split(':')[3]) > double('" + ceiling + "')).map(l, s[0] + ' allows ' + l.split(':')[0] + ' requests per ' + l.split(':')[1] + ' by ' + l.split(':')[2] + " +
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
		wildOK := strconv.FormatBool(r.WildcardOrigins == apiwardenv1alpha1.FeatureEnabled)
		cond := "((" + o + "[0] == '1' && x.contains('*')) || (x == '*' && !" + wildOK + "))"
		text := "(" + o + "[0] == '1' && x.contains('*')) ? s[0] + ' allows credentials in cross-origin requests from a wildcard origin (' + strings.quote(x) + ').' + ' List the trusted origins in spec.cors.allowOrigins of the covering APIPolicy, or drop allowCredentials,' + " + sfx +
			" : s[0] + ' allows cross-origin requests from any origin (\"*\").' + ' List the trusted origins in spec.cors.allowOrigins of the covering APIPolicy,' + " + sfx
		found := o + ".transformList(i, x, i > 0 && " + cond + ", " + text + ")"
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
