package v1alpha1

// Condition types and reasons used in the status of apiwarden's kinds. They
// follow Gateway API's policy conventions: Accepted says the spec was
// understood and attached, Enforced says the data plane is programmed.
const (
	// ConditionAccepted is true when an APIPolicy is valid, its targets exist
	// and it does not conflict with another policy.
	ConditionAccepted = "Accepted"
	// ConditionEnforced is true when the gateway serving the targets is
	// programmed with the policy.
	ConditionEnforced = "Enforced"
	// ConditionReady is true when an APIBaseline or APIKeySet is fully
	// reconciled.
	ConditionReady = "Ready"
	// ConditionRotationDue is true when an APIKeySet has a consumer whose
	// active key is past its rotation time and was not replaced.
	ConditionRotationDue = "RotationDue"
	// ConditionCertificatesReady is true when every client certificate an
	// APIPolicy asks cert-manager for is issued and current.
	ConditionCertificatesReady = "CertificatesReady"
	// ConditionCompliant is true when every exposed object an APIBaseline
	// governs meets it or is exempt.
	ConditionCompliant = "Compliant"
)

const (
	// ReasonAccepted: the policy is valid and attached to its targets.
	ReasonAccepted = "Accepted"
	// ReasonEnforced: the gateway is programmed with the policy.
	ReasonEnforced = "Enforced"
	// ReasonTargetNotFound: a targetRef names an object that does not exist.
	ReasonTargetNotFound = "TargetNotFound"
	// ReasonConflicted: an older policy at the same level targets the same object.
	ReasonConflicted = "Conflicted"
	// ReasonGatewayNotInstalled: the CRDs of the gateway serving a target are
	// not installed.
	ReasonGatewayNotInstalled = "GatewayNotInstalled"
	// ReasonInvalid: the spec cannot be rendered as written.
	ReasonInvalid = "Invalid"
	// ReasonDryRun: the policy is in DryRun mode and blocks nothing.
	ReasonDryRun = "DryRun"
	// ReasonPartiallyEnforced: some fields are not supported by the gateway.
	ReasonPartiallyEnforced = "PartiallyEnforced"
	// ReasonAdmissionParamsPending: a CEL-mode baseline governs the
	// namespace, and its admission params do not include this generation
	// of the policy yet, so routes it protects would still be denied.
	ReasonAdmissionParamsPending = "AdmissionParamsPending"
	// ReasonReconciled: the object is fully reconciled.
	ReasonReconciled = "Reconciled"
	// ReasonReconcileError: reconciling failed; the message says why.
	ReasonReconcileError = "ReconcileError"
	// ReasonOnSchedule: every key is younger than its rotation period.
	ReasonOnSchedule = "OnSchedule"
	// ReasonOverdue: some key is older than its rotation period.
	ReasonOverdue = "Overdue"
	// ReasonViolations: some governed objects break the baseline.
	ReasonViolations = "Violations"
	// ReasonAllCompliant: every governed object meets the baseline or is exempt.
	ReasonAllCompliant = "AllCompliant"
)

const (
	// ReasonUnsupportedTarget: the configured gateway cannot program this
	// kind of target (admission still counts the policy for it).
	ReasonUnsupportedTarget = "UnsupportedTarget"
	// ReasonClientCertificatesNotValidated: the policy asks for mTLS on a
	// route whose Gateway does not validate client certificates.
	ReasonClientCertificatesNotValidated = "ClientCertificatesNotValidated"
	// ReasonIssued: every client certificate is issued and current.
	ReasonIssued = "Issued"
	// ReasonCertificatesNotReady: some client certificate is not (yet) issued.
	ReasonCertificatesNotReady = "CertificatesNotReady"
	// ReasonCertManagerNotInstalled: the policy asks for client
	// certificates and cert-manager's CRDs are not installed.
	ReasonCertManagerNotInstalled = "CertManagerNotInstalled"
)
