package policyreport

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/coverage"
	"github.com/apiwarden/apiwarden/internal/exposure"
)

const (
	// Name is the name of apiwarden's PolicyReport in each namespace.
	Name = "apiwarden"
	// Source is the results' source, as Policy Reporter filters on it.
	Source = "apiwarden"
	// CRDName is the name of the PolicyReport CRD.
	CRDName = "policyreports.wgpolicyk8s.io"
	// DefaultMaxResults bounds the results of one report, so that a report
	// stays far below etcd's object size limit in the largest namespace.
	DefaultMaxResults = 1000
	// OmittedAnnotation, on a report, counts the results left out because of
	// the bound (the passes first, then the skips); the summary still
	// counts every result.
	OmittedAnnotation = "apiwarden.io/omitted-results"
	// ManagedByLabel marks the reports apiwarden writes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// HashAnnotation holds Hash of the report's content, so that the
	// controller can tell from metadata alone whether a report is current.
	HashAnnotation = "apiwarden.io/content-hash"
)

// GVK is the PolicyReport kind apiwarden writes.
var GVK = schema.GroupVersionKind{Group: "wgpolicyk8s.io", Version: "v1alpha2", Kind: "PolicyReport"}

//go:embed crds/wgpolicyk8s.io_policyreports.yaml
var crdYAML []byte

// CRD returns the PolicyReport CRD, as Kyverno ships it (copied from the
// github.com/kyverno/kyverno module by `make policyreport-crd`).
func CRD() (*apiextensionsv1.CustomResourceDefinition, error) {
	data := crdYAML
	if i := bytes.Index(data, []byte("\napiVersion:")); i >= 0 {
		data = data[i+1:] // past the header comment and the document marker
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, crd); err != nil {
		return nil, fmt.Errorf("decoding the embedded PolicyReport CRD: %w", err)
	}
	if crd.Name != CRDName {
		return nil, fmt.Errorf("the embedded PolicyReport CRD is named %q, not %q", crd.Name, CRDName)
	}
	return crd, nil
}

// Result values, as the PolicyReport API defines them.
const (
	ResultPass = "pass"
	ResultFail = "fail"
	ResultSkip = "skip"
)

// Timestamp is a result's time, in the API's protobuf-like form.
type Timestamp struct {
	Seconds int64 `json:"seconds"`
	Nanos   int32 `json:"nanos"`
}

// Result is one (object, APIBaseline, requirement) finding.
type Result struct {
	Policy     string                   `json:"policy"`
	Rule       string                   `json:"rule,omitempty"`
	Result     string                   `json:"result,omitempty"`
	Scored     bool                     `json:"scored,omitempty"`
	Severity   string                   `json:"severity,omitempty"`
	Category   string                   `json:"category,omitempty"`
	Source     string                   `json:"source,omitempty"`
	Message    string                   `json:"message,omitempty"`
	Properties map[string]string        `json:"properties,omitempty"`
	Resources  []corev1.ObjectReference `json:"resources,omitempty"`
	Timestamp  Timestamp                `json:"timestamp"`
}

// Summary counts results by value.
type Summary struct {
	Pass  int `json:"pass"`
	Fail  int `json:"fail"`
	Warn  int `json:"warn"`
	Error int `json:"error"`
	Skip  int `json:"skip"`
}

// Report is the content of one namespace's PolicyReport.
type Report struct {
	Namespace string
	Results   []Result
	Summary   Summary
	// Omitted counts the results left out by the bound.
	Omitted int
}

// severity and category per requirement: OWASP API Security Top 10 (2023)
// is the vocabulary API security dashboards group by.
var ruleInfo = map[apiwardenv1alpha1.Control]struct{ severity, category string }{
	apiwardenv1alpha1.ControlTLS:            {"high", "OWASP API8:2023 Security Misconfiguration"},
	apiwardenv1alpha1.ControlAuthentication: {"high", "OWASP API2:2023 Broken Authentication"},
	apiwardenv1alpha1.ControlRateLimit:      {"medium", "OWASP API4:2023 Unrestricted Resource Consumption"},
	apiwardenv1alpha1.ControlRequestBody:    {"medium", "OWASP API4:2023 Unrestricted Resource Consumption"},
	apiwardenv1alpha1.ControlCORS:           {"medium", "OWASP API8:2023 Security Misconfiguration"},
}

// controlOrder is the order of rules in a report.
var controlOrder = []apiwardenv1alpha1.Control{
	apiwardenv1alpha1.ControlTLS, apiwardenv1alpha1.ControlAuthentication, apiwardenv1alpha1.ControlRateLimit,
	apiwardenv1alpha1.ControlRequestBody, apiwardenv1alpha1.ControlCORS,
}

// Required returns the requirements a baseline checks, in report order
// (an omitted require means the API's default: TLS, authentication and a
// rate limit).
func Required(b *apiwardenv1alpha1.APIBaseline) []apiwardenv1alpha1.Control {
	r := b.Spec.Require
	if r == nil {
		return controlOrder[:3]
	}
	var out []apiwardenv1alpha1.Control
	for _, c := range controlOrder {
		switch {
		case c == apiwardenv1alpha1.ControlTLS && r.TLS != nil,
			c == apiwardenv1alpha1.ControlAuthentication && r.Authentication != nil,
			c == apiwardenv1alpha1.ControlRateLimit && r.RateLimit != nil,
			c == apiwardenv1alpha1.ControlRequestBody && r.RequestBody != nil,
			c == apiwardenv1alpha1.ControlCORS && r.CORS != nil:
			out = append(out, c)
		}
	}
	return out
}

// apiVersions of the kinds the engine evaluates.
var apiVersions = map[string]string{
	"Ingress": "networking.k8s.io/v1", "Service": "v1",
	"Gateway": "gateway.networking.k8s.io/v1", "HTTPRoute": "gateway.networking.k8s.io/v1", "GRPCRoute": "gateway.networking.k8s.io/v1",
}

// Build makes the report of one namespace: for every exposed object there
// and every APIBaseline that governs it, one result per requirement of that
// baseline: fail when the object breaks it (every violation code, field and
// message of that requirement folded into the one result), skip when an
// unexpired exemption waives it, pass otherwise. Results are ordered by
// outcome (fail, skip, pass), then kind, name, baseline and requirement,
// and bounded by max (DefaultMaxResults when max <= 0): what is left out is
// passes first. A result that did not change since previous keeps its
// timestamp, so an unchanged namespace builds an identical report.
func Build(namespace string, objs []coverage.Object, baselines []*apiwardenv1alpha1.APIBaseline, previous *Report, now time.Time, max int) Report {
	if max <= 0 {
		max = DefaultMaxResults
	}
	required := make(map[string][]apiwardenv1alpha1.Control, len(baselines))
	for _, b := range baselines {
		required[b.Name] = Required(b)
	}
	type key struct {
		uid          types.UID
		policy, rule string
	}
	prev := map[key]Result{}
	if previous != nil {
		for _, r := range previous.Results {
			if len(r.Resources) == 1 {
				prev[key{r.Resources[0].UID, r.Policy, r.Rule}] = r
			}
		}
	}
	rep := Report{Namespace: namespace}
	for _, o := range objs {
		v := &o.Verdict
		if o.Namespace != namespace || !v.Exposed {
			continue
		}
		ref := corev1.ObjectReference{APIVersion: apiVersions[o.Kind], Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, UID: o.UID}
		for _, baseline := range v.Governed {
			for _, c := range required[baseline] {
				r := result(baseline, c, v, ref)
				if p, ok := prev[key{o.UID, r.Policy, r.Rule}]; ok && sameFinding(p, r) {
					r.Timestamp = p.Timestamp
				} else {
					r.Timestamp = Timestamp{Seconds: now.Unix(), Nanos: int32(now.Nanosecond())}
				}
				rep.Results = append(rep.Results, r)
			}
		}
	}
	rank := map[string]int{ResultFail: 0, ResultSkip: 1, ResultPass: 2}
	sort.Slice(rep.Results, func(i, j int) bool {
		a, b := &rep.Results[i], &rep.Results[j]
		if rank[a.Result] != rank[b.Result] {
			return rank[a.Result] < rank[b.Result]
		}
		ra, rb := a.Resources[0], b.Resources[0]
		if ra.Kind != rb.Kind {
			return ra.Kind < rb.Kind
		}
		if ra.Name != rb.Name {
			return ra.Name < rb.Name
		}
		if a.Policy != b.Policy {
			return a.Policy < b.Policy
		}
		return controlIndex(a.Rule) < controlIndex(b.Rule)
	})
	for _, r := range rep.Results {
		switch r.Result {
		case ResultFail:
			rep.Summary.Fail++
		case ResultSkip:
			rep.Summary.Skip++
		case ResultPass:
			rep.Summary.Pass++
		}
	}
	if len(rep.Results) > max {
		rep.Omitted = len(rep.Results) - max
		rep.Results = rep.Results[:max]
	}
	return rep
}

func controlIndex(rule string) int {
	for i, c := range controlOrder {
		if string(c) == rule {
			return i
		}
	}
	return len(controlOrder)
}

// sameFinding reports whether two results say the same thing, timestamps
// aside.
func sameFinding(a, b Result) bool {
	a.Timestamp, b.Timestamp = Timestamp{}, Timestamp{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// result is the finding for one requirement c of baseline on an object.
func result(baseline string, c apiwardenv1alpha1.Control, v *exposure.Verdict, ref corev1.ObjectReference) Result {
	info := ruleInfo[c]
	r := Result{Policy: baseline, Rule: string(c), Scored: true, Severity: info.severity, Category: info.category,
		Source: Source, Resources: []corev1.ObjectReference{ref}}
	var failed, waived []exposure.Violation
	for _, x := range v.Violations {
		if x.Baseline == baseline && x.Control == c {
			failed = append(failed, x)
		}
	}
	for _, x := range v.Exempted {
		if x.Baseline == baseline && x.Control == c {
			waived = append(waived, x)
		}
	}
	switch {
	case len(failed) > 0:
		r.Result = ResultFail
		r.Message = messages(failed)
		r.Properties = properties(failed)
		r.Properties["enforcementAction"] = string(failed[0].Action)
	case len(waived) > 0:
		r.Result = ResultSkip
		x := waived[0]
		until := ""
		if x.ExemptionExpires != nil {
			until = " until " + x.ExemptionExpires.UTC().Format(time.RFC3339)
		}
		r.Message = coverage.Clip(fmt.Sprintf("Waived by exemption %q of APIBaseline %s%s: %s", x.Exemption, baseline, until, messages(waived)), maxMessage)
		r.Properties = properties(waived)
		r.Properties["exemption"] = x.Exemption
		if x.ExemptionExpires != nil {
			r.Properties["exemptionExpires"] = x.ExemptionExpires.UTC().Format(time.RFC3339)
		}
	default:
		r.Result = ResultPass
		r.Message = fmt.Sprintf("Meets the %s requirement of APIBaseline %s.", c, baseline)
	}
	return r
}

// maxMessage bounds a result's message, as APIBaseline status bounds its own.
const maxMessage = 1024

func messages(vs []exposure.Violation) string {
	parts := make([]string, 0, len(vs))
	for _, x := range vs {
		parts = append(parts, x.Text())
	}
	return coverage.Clip(strings.Join(parts, " "), maxMessage)
}

func properties(vs []exposure.Violation) map[string]string {
	var codes, fields []string
	for _, x := range vs {
		if !slices.Contains(codes, string(x.Code)) {
			codes = append(codes, string(x.Code))
		}
		if x.Field != "" && !slices.Contains(fields, x.Field) {
			fields = append(fields, x.Field)
		}
	}
	p := map[string]string{"codes": strings.Join(codes, ",")}
	if len(fields) > 0 {
		p["fields"] = coverage.Clip(strings.Join(fields, ","), maxMessage)
	}
	return p
}

// Unstructured returns the PolicyReport object for r, ready for a
// server-side apply.
func (r Report) Unstructured() (*unstructured.Unstructured, error) {
	body := map[string]any{
		"apiVersion": GVK.GroupVersion().String(),
		"kind":       GVK.Kind,
		"metadata": map[string]any{
			"name": Name, "namespace": r.Namespace,
			"labels":      map[string]any{ManagedByLabel: Source},
			"annotations": map[string]any{OmittedAnnotation: strconv.Itoa(r.Omitted), HashAnnotation: r.Hash()},
		},
		"summary": r.Summary,
		"results": r.Results,
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return u, nil
}

// FromUnstructured reads the report content of a PolicyReport object (as
// read back from the apiserver, so that Equal compares like with like).
func FromUnstructured(u *unstructured.Unstructured) (Report, error) {
	var body struct {
		Results []Result `json:"results"`
		Summary Summary  `json:"summary"`
	}
	data, err := u.MarshalJSON()
	if err != nil {
		return Report{}, err
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return Report{}, fmt.Errorf("decoding PolicyReport %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	omitted, _ := strconv.Atoi(u.GetAnnotations()[OmittedAnnotation])
	return Report{Namespace: u.GetNamespace(), Results: body.Results, Summary: body.Summary, Omitted: omitted}, nil
}

// Hash digests what a report says, timestamps aside: two builds of an
// unchanged namespace hash the same.
func (r Report) Hash() string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, x := range r.Results {
		x.Timestamp = Timestamp{}
		_ = enc.Encode(x)
	}
	_ = enc.Encode(r.Omitted)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Equal reports whether two reports have the same content.
func Equal(a, b Report) bool {
	if len(a.Results) == 0 && len(b.Results) == 0 {
		a.Results, b.Results = nil, nil
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
