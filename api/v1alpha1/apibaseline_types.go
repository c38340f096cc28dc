package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EnforcementAction says what happens to an object that breaks a baseline.
// +kubebuilder:validation:Enum=Deny;Warn;Audit
type EnforcementAction string

const (
	// EnforcementActionDeny rejects the object at admission.
	EnforcementActionDeny EnforcementAction = "Deny"
	// EnforcementActionWarn admits the object and returns admission warnings,
	// which kubectl prints.
	EnforcementActionWarn EnforcementAction = "Warn"
	// EnforcementActionAudit admits the object silently; violations appear
	// only in status, Events, metrics and PolicyReports.
	EnforcementActionAudit EnforcementAction = "Audit"
)

// AdmissionMode says how the apiserver enforces a baseline at admission.
// +kubebuilder:validation:Enum=Webhook;CEL;Both
type AdmissionMode string

const (
	// AdmissionModeWebhook enforces the baseline through apiwarden's
	// validating webhook: every rule, exact and immediate, at the cost of a
	// webhook call per admitted object.
	AdmissionModeWebhook AdmissionMode = "Webhook"
	// AdmissionModeCEL enforces the baseline inside the apiserver, through
	// ValidatingAdmissionPolicies that apiwarden compiles from the baseline
	// and per-namespace params it keeps current: no webhook hop, and no
	// fail-open when apiwarden is down. The webhook skips the baseline.
	AdmissionModeCEL AdmissionMode = "CEL"
	// AdmissionModeBoth enforces the baseline both ways: the policies as
	// the first line, the webhook as the second (and for what CEL cannot
	// decide).
	AdmissionModeBoth AdmissionMode = "Both"
)

// Control names one requirement of a baseline, so an exemption can waive some
// requirements and keep the others.
// +kubebuilder:validation:Enum=TLS;Authentication;RateLimit;RequestBody;CORS
type Control string

const (
	// ControlTLS is the TLS requirement.
	ControlTLS Control = "TLS"
	// ControlAuthentication is the authentication requirement.
	ControlAuthentication Control = "Authentication"
	// ControlRateLimit is the rate-limit requirement.
	ControlRateLimit Control = "RateLimit"
	// ControlRequestBody is the request-body-limit requirement.
	ControlRequestBody Control = "RequestBody"
	// ControlCORS is the CORS requirement.
	ControlCORS Control = "CORS"
)

// TLSRequirement requires TLS on every exposed listener, host and port.
type TLSRequirement struct {
	// minVersion is the lowest TLS version a covering APIPolicy may allow.
	// +optional
	// +kubebuilder:default="1.2"
	MinVersion TLSVersion `json:"minVersion,omitempty"`
}

// AuthenticationRequirement requires every exposed API to authenticate clients.
type AuthenticationRequirement struct {
	// methods lists the authentication methods that satisfy the requirement;
	// a covering APIPolicy must configure at least one of them.
	// +optional
	// +listType=set
	// +kubebuilder:default={APIKey,JWT,MTLS}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	Methods []AuthenticationMethod `json:"methods,omitempty"`
}

// RateLimitRequirement requires every exposed API to be rate limited.
type RateLimitRequirement struct {
	// ceiling, when set, is the highest rate a covering APIPolicy may allow;
	// each of its limits must be at or below it.
	// +optional
	Ceiling *RequestRate `json:"ceiling,omitempty"`
}

// RequestBodyRequirement requires a request body limit.
type RequestBodyRequirement struct {
	// maxBytes is the largest maxBodyBytes a covering APIPolicy may set.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1073741824
	MaxBytes int64 `json:"maxBytes"`
}

// CORSRequirement restricts the CORS settings of covering APIPolicies.
type CORSRequirement struct {
	// wildcardOrigins, when Disabled, forbids "*" among allowed origins.
	// A wildcard origin with credentials is always forbidden.
	// +optional
	// +kubebuilder:default=Disabled
	WildcardOrigins Feature `json:"wildcardOrigins,omitempty"`
}

// BaselineRequirements lists what every exposed API must have. A requirement
// that is omitted is not checked.
type BaselineRequirements struct {
	// tls requires TLS, at or above a minimum version.
	// +optional
	TLS *TLSRequirement `json:"tls,omitempty"`

	// authentication requires an APIPolicy with one of the allowed methods.
	// +optional
	Authentication *AuthenticationRequirement `json:"authentication,omitempty"`

	// rateLimit requires an APIPolicy with a rate limit, optionally under a ceiling.
	// +optional
	RateLimit *RateLimitRequirement `json:"rateLimit,omitempty"`

	// requestBody requires an APIPolicy with a request body limit.
	// +optional
	RequestBody *RequestBodyRequirement `json:"requestBody,omitempty"`

	// cors restricts CORS settings.
	// +optional
	CORS *CORSRequirement `json:"cors,omitempty"`
}

// ExemptionTarget selects the objects an exemption covers.
// +kubebuilder:validation:XValidation:rule="!(has(self.name) && has(self.selector))",message="name and selector are mutually exclusive"
// +kubebuilder:validation:XValidation:rule="!has(self.name) || has(self.kind)",message="name requires kind"
type ExemptionTarget struct {
	// namespace is the namespace of the exempted objects.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`

	// kind narrows the exemption to one kind. When omitted every kind matches.
	// +optional
	// +kubebuilder:validation:Enum=HTTPRoute;GRPCRoute;Gateway;Ingress;Service
	Kind string `json:"kind,omitempty"`

	// name narrows the exemption to one object. It requires kind.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name,omitempty"`

	// selector narrows the exemption to objects with matching labels.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// Exemption waives some or all requirements for some objects, for a stated
// reason and until a stated time. Exemptions come only from an APIBaseline,
// which platform owners control; annotations on the object itself never exempt it.
type Exemption struct {
	// name identifies the exemption in status, Events and reports.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// target selects the exempted objects.
	// +required
	Target ExemptionTarget `json:"target"`

	// controls lists the requirements waived. When omitted all are waived.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5
	Controls []Control `json:"controls,omitempty"`

	// reason says why the exemption exists, for auditors; a ticket reference
	// is a good start.
	// +required
	// +kubebuilder:validation:MinLength=10
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`

	// expires is when the exemption stops counting, in admission, in the
	// background scan and in the CLI alike.
	// +required
	Expires metav1.Time `json:"expires"`
}

// APIBaselineSpec says what every exposed API in the governed namespaces must have.
type APIBaselineSpec struct {
	// enforcementAction is Deny (reject at admission), Warn (admit with
	// warnings) or Audit (admit, report only).
	// +optional
	// +kubebuilder:default=Deny
	EnforcementAction EnforcementAction `json:"enforcementAction,omitempty"`

	// admission says how the baseline is enforced at admission: Webhook
	// (apiwarden's validating webhook), CEL (ValidatingAdmissionPolicies
	// that apiwarden compiles and keeps current; the webhook skips the
	// baseline) or Both. enforcementAction applies in every mode.
	// +optional
	// +kubebuilder:default=Webhook
	Admission AdmissionMode `json:"admission,omitempty"`

	// namespaceSelector selects the governed namespaces. When omitted every
	// namespace is governed. kube-system, kube-public, kube-node-lease and
	// apiwarden's own namespace are never governed, whatever the selector says.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// require lists what every exposed API must have. The default requires
	// TLS 1.2 or later, authentication by any method and a rate limit.
	// +optional
	// +kubebuilder:default={tls:{minVersion:"1.2"},authentication:{methods:{APIKey,JWT,MTLS}},rateLimit:{}}
	Require *BaselineRequirements `json:"require,omitempty"`

	// exemptions waive requirements for some objects until they expire.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Exemptions []Exemption `json:"exemptions,omitempty"`
}

// ExposureCounts counts exposed objects by outcome.
type ExposureCounts struct {
	// exposed is the number of objects that expose an API.
	// +optional
	Exposed int32 `json:"exposed"`
	// protected is the number of exposed objects that meet every requirement.
	// +optional
	Protected int32 `json:"protected"`
	// exempt is the number of exposed objects that fall short only where an
	// unexpired exemption waives the requirement.
	// +optional
	Exempt int32 `json:"exempt"`
	// violating is the number of exposed objects that break a requirement.
	// +optional
	Violating int32 `json:"violating"`
}

// ViolationSummary describes one object that breaks the baseline.
type ViolationSummary struct {
	// kind of the violating object.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// namespace of the violating object.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// name of the violating object.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// code is the stable violation code, such as TLSMissing.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Code string `json:"code"`
	// message says what is missing and how to fix it.
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`
}

// APIBaselineStatus is the observed state of an APIBaseline.
type APIBaselineStatus struct {
	// observedGeneration is the metadata.generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions describe the baseline's state (Ready, Compliant).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// counts summarises the last coverage scan.
	// +optional
	Counts *ExposureCounts `json:"counts,omitempty"`

	// violations lists the first violations found, in a stable order.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	Violations []ViolationSummary `json:"violations,omitempty"`

	// lastScanTime is when the coverage scan last completed.
	// +optional
	LastScanTime *metav1.Time `json:"lastScanTime,omitempty"`
}

// APIBaseline says what every exposed API in a set of namespaces must have,
// what happens to objects that fall short, and which objects are exempt, why
// and until when. It is cluster-scoped: platform owners keep it in Git.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=abl,categories=apiwarden
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.enforcementAction`
// +kubebuilder:printcolumn:name="Exposed",type=integer,JSONPath=`.status.counts.exposed`
// +kubebuilder:printcolumn:name="Violating",type=integer,JSONPath=`.status.counts.violating`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type APIBaseline struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what exposed APIs must have.
	// +required
	Spec APIBaselineSpec `json:"spec"`

	// status is the observed state, written by apiwarden.
	// +optional
	Status APIBaselineStatus `json:"status,omitempty"`
}

// APIBaselineList is a list of APIBaselines.
// +kubebuilder:object:root=true
type APIBaselineList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the APIBaselines.
	Items []APIBaseline `json:"items"`
}
