package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/render"
)

// maxMessage bounds one condition message; the API allows 32 KiB, but a
// message is for people and must fit in `kubectl describe`.
const maxMessage = 2048

func clip(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}

// targetOutcome is one target's Accepted and Enforced conditions.
type targetOutcome struct {
	ref              apiwardenv1alpha1.PolicyTargetReference
	accepted         metav1.Condition
	enforced         metav1.Condition
	rendered         []apiwardenv1alpha1.RenderedObject
	enforcedSomewhat bool
}

// statusBuilder collects the outcome of a reconcile and turns it into status.
type statusBuilder struct {
	p        *apiwardenv1alpha1.APIPolicy
	gateway  string
	targets  []targetOutcome
	failures map[int]error
	missing  []string
	certs    []apiwardenv1alpha1.CertificateStatus
	certCond *metav1.Condition
	// paramsPending, when set, says why CEL admission does not know this
	// generation of the policy yet: Enforced stays False until it does.
	paramsPending string
}

// certificates records the client certificates' status and condition.
func (b *statusBuilder) certificates(certs []apiwardenv1alpha1.CertificateStatus, c *metav1.Condition) {
	b.certs, b.certCond = certs, c
}

func newStatusBuilder(p *apiwardenv1alpha1.APIPolicy, gateway string) *statusBuilder {
	return &statusBuilder{p: p, gateway: gateway, failures: map[int]error{}}
}

func cond(t string, ok bool, reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: clip(msg)}
}

// notInstalled reports that the gateway's CRDs are missing.
func (b *statusBuilder) notInstalled(missing []string) {
	b.missing = missing
	msg := fmt.Sprintf("the CRDs %s are not installed; apiwarden renders this policy for %s as soon as they are", strings.Join(missing, ", "), b.gateway)
	for _, ref := range b.p.Spec.TargetRefs {
		b.targets = append(b.targets, targetOutcome{ref: ref,
			accepted: cond(apiwardenv1alpha1.ConditionAccepted, true, apiwardenv1alpha1.ReasonAccepted, "the spec is valid; targets are resolved once the gateway's CRDs are installed"),
			enforced: cond(apiwardenv1alpha1.ConditionEnforced, false, apiwardenv1alpha1.ReasonGatewayNotInstalled, msg)})
	}
}

func (b *statusBuilder) applyFailed(i int, err error) { b.failures[i] = err }

// keep lists again the objects of the previous status that still exist and
// must be pruned later: under the same target when it is still a target,
// else under the first target (status has no entry for a removed target).
func (b *statusBuilder) keep(prev []apiwardenv1alpha1.PolicyTargetStatus, keep func(apiwardenv1alpha1.RenderedObject) bool) {
	if len(b.targets) == 0 {
		return
	}
	for _, pt := range prev {
		dst := &b.targets[0]
		for i := range b.targets {
			if equality.Semantic.DeepEqual(b.targets[i].ref, pt.TargetRef) {
				dst = &b.targets[i]
				break
			}
		}
		for _, ro := range pt.Rendered {
			// 32 is the API's bound per target; beyond it the owner
			// reference still lets the garbage collector clean up.
			if keep(ro) && !slices.Contains(dst.rendered, ro) && len(dst.rendered) < 32 {
				dst.rendered = append(dst.rendered, ro)
			}
		}
	}
}

// plans turns the plans into per-target outcomes; applied holds the objects
// actually applied.
func (b *statusBuilder) plans(plans []render.TargetPlan, applied map[apiwardenv1alpha1.RenderedObject]bool) {
	for i, tp := range plans {
		t := targetOutcome{ref: tp.Ref}
		for _, o := range tp.Result.Objects {
			if ro := renderedRef(o); applied[ro] {
				t.rendered = append(t.rendered, ro)
			}
		}
		if ro, ok := annotatedRef(tp.Ref); ok && len(tp.Result.TargetAnnotations) > 0 && applied[ro] {
			// The target itself, annotated for the gateway.
			t.rendered = append(t.rendered, ro)
		}
		acc := func(ok bool, reason, msg string) {
			t.accepted = cond(apiwardenv1alpha1.ConditionAccepted, ok, reason, msg)
		}
		enf := func(ok bool, reason, msg string) {
			t.enforced = cond(apiwardenv1alpha1.ConditionEnforced, ok, reason, msg)
		}
		switch tp.Outcome {
		case render.OutcomeTargetNotFound:
			acc(false, apiwardenv1alpha1.ReasonTargetNotFound, tp.Message)
			enf(false, apiwardenv1alpha1.ReasonTargetNotFound, tp.Message)
		case render.OutcomeConflicted:
			acc(false, apiwardenv1alpha1.ReasonConflicted, tp.Message)
			enf(false, apiwardenv1alpha1.ReasonConflicted, tp.Message)
		case render.OutcomeInvalid:
			acc(false, apiwardenv1alpha1.ReasonInvalid, tp.Message)
			enf(false, apiwardenv1alpha1.ReasonInvalid, tp.Message)
		case render.OutcomeUnsupported:
			acc(true, apiwardenv1alpha1.ReasonAccepted, "the policy is attached")
			enf(false, apiwardenv1alpha1.ReasonUnsupportedTarget, tp.Message)
		default:
			acc(true, apiwardenv1alpha1.ReasonAccepted, "the policy is attached")
			notes := noteText(tp.Result.Unsupported)
			switch {
			case b.failures[i] != nil:
				enf(false, apiwardenv1alpha1.ReasonReconcileError, b.failures[i].Error())
			case tp.Result.NotEnforced != "":
				msg := tp.Result.NotEnforced
				if notes != "" {
					msg += "; " + notes
				}
				enf(false, apiwardenv1alpha1.ReasonClientCertificatesNotValidated, msg)
			case b.p.Spec.Mode == apiwardenv1alpha1.PolicyModeDryRun:
				msg := "DryRun: nothing that blocks traffic is rendered"
				if len(tp.Result.WouldBlock) > 0 {
					msg += "; Enforce would block: " + strings.Join(tp.Result.WouldBlock, "; ")
				}
				if notes != "" {
					msg += "; " + notes
				}
				enf(false, apiwardenv1alpha1.ReasonDryRun, msg)
			case notes != "":
				enf(true, apiwardenv1alpha1.ReasonPartiallyEnforced, notes)
				t.enforcedSomewhat = true
			default:
				enf(true, apiwardenv1alpha1.ReasonEnforced, fmt.Sprintf("%s is programmed with %d object(s)", b.gateway, len(t.rendered)))
				t.enforcedSomewhat = true
			}
		}
		b.targets = append(b.targets, t)
	}
}

func noteText(ns []render.Note) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = n.Field + ": " + n.Message
	}
	return strings.Join(parts, "; ")
}

func targetName(ref apiwardenv1alpha1.PolicyTargetReference) string {
	s := ref.Kind + " " + ref.Name
	if ref.SectionName != nil {
		s += " (section " + *ref.SectionName + ")"
	}
	return s
}

// policyConditions summarises the targets: Accepted is true when every
// target is; Enforced is true when every accepted target is enforced (reason
// Enforced), true with reason PartiallyEnforced when some are or some fields
// are not enforceable, and false otherwise with the first target's reason.
func (b *statusBuilder) policyConditions() (acc, enf metav1.Condition) {
	acc = cond(apiwardenv1alpha1.ConditionAccepted, true, apiwardenv1alpha1.ReasonAccepted, "the policy is valid and attached to every target")
	for _, t := range b.targets {
		if t.accepted.Status != metav1.ConditionTrue {
			acc = cond(apiwardenv1alpha1.ConditionAccepted, false, t.accepted.Reason, targetName(t.ref)+": "+t.accepted.Message)
			break
		}
	}
	var full, some int
	var firstBad, firstPartial *targetOutcome
	for i := range b.targets {
		t := &b.targets[i]
		switch {
		case t.enforced.Status == metav1.ConditionTrue && t.enforced.Reason == apiwardenv1alpha1.ReasonEnforced:
			full++
			some++
		case t.enforcedSomewhat:
			some++
			if firstPartial == nil {
				firstPartial = t
			}
		default:
			if firstBad == nil {
				firstBad = t
			}
		}
	}
	switch {
	case len(b.targets) > 0 && full == len(b.targets):
		enf = cond(apiwardenv1alpha1.ConditionEnforced, true, apiwardenv1alpha1.ReasonEnforced, fmt.Sprintf("%s is programmed for every target", b.gateway))
	case some > 0:
		msg := fmt.Sprintf("%d of %d targets enforced", some, len(b.targets))
		if firstBad != nil {
			msg += "; " + targetName(firstBad.ref) + ": " + firstBad.enforced.Message
		} else if firstPartial != nil {
			msg += "; " + targetName(firstPartial.ref) + ": " + firstPartial.enforced.Message
		}
		enf = cond(apiwardenv1alpha1.ConditionEnforced, true, apiwardenv1alpha1.ReasonPartiallyEnforced, msg)
	case firstBad != nil:
		enf = cond(apiwardenv1alpha1.ConditionEnforced, false, firstBad.enforced.Reason, targetName(firstBad.ref)+": "+firstBad.enforced.Message)
	default:
		enf = cond(apiwardenv1alpha1.ConditionEnforced, false, apiwardenv1alpha1.ReasonTargetNotFound, "the policy has no target")
	}
	// A policy applied before its route (TargetNotFound) waits too: GitOps
	// tools count that state as ready for the route to follow.
	if b.paramsPending != "" && (enf.Status == metav1.ConditionTrue || enf.Reason == apiwardenv1alpha1.ReasonTargetNotFound) {
		enf = cond(apiwardenv1alpha1.ConditionEnforced, false, apiwardenv1alpha1.ReasonAdmissionParamsPending, b.paramsPending)
	}
	return acc, enf
}

// writeStatus writes the new status when it differs from the current one,
// keeping lastTransitionTime of conditions whose status did not change, and
// records an Event for each condition that changed.
func (r *APIPolicyReconciler) writeStatus(ctx context.Context, p *apiwardenv1alpha1.APIPolicy, b *statusBuilder) error {
	next := p.Status.DeepCopy()
	next.ObservedGeneration = p.Generation
	acc, enf := b.policyConditions()
	for _, c := range []metav1.Condition{acc, enf} {
		c.ObservedGeneration = p.Generation
		meta.SetStatusCondition(&next.Conditions, c)
	}
	if b.certCond != nil {
		c := *b.certCond
		c.ObservedGeneration = p.Generation
		meta.SetStatusCondition(&next.Conditions, c)
	} else {
		meta.RemoveStatusCondition(&next.Conditions, apiwardenv1alpha1.ConditionCertificatesReady)
	}
	next.Certificates = b.certs
	targets := make([]apiwardenv1alpha1.PolicyTargetStatus, 0, len(b.targets))
	for _, t := range b.targets {
		ts := apiwardenv1alpha1.PolicyTargetStatus{TargetRef: t.ref, Rendered: t.rendered}
		for _, old := range p.Status.Targets {
			if equality.Semantic.DeepEqual(old.TargetRef, t.ref) {
				ts.Conditions = append(ts.Conditions, old.Conditions...)
			}
		}
		for _, c := range []metav1.Condition{t.accepted, t.enforced} {
			c.ObservedGeneration = p.Generation
			meta.SetStatusCondition(&ts.Conditions, c)
		}
		targets = append(targets, ts)
	}
	next.Targets = targets
	if equality.Semantic.DeepEqual(&p.Status, next) {
		return nil
	}
	prev := p.Status.DeepCopy()
	p.Status = *next
	if err := r.Client.Status().Update(ctx, p); err != nil {
		return fmt.Errorf("writing status: %w", err)
	}
	// One Event per change, naming both conditions, rather than one per
	// condition: Events are writes too, and two per policy doubled them.
	var changed []string
	typ := corev1.EventTypeNormal
	reason := enf.Reason
	for _, c := range []metav1.Condition{acc, enf} {
		old := meta.FindStatusCondition(prev.Conditions, c.Type)
		if old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
			continue
		}
		changed = append(changed, fmt.Sprintf("%s=%s: %s", c.Type, c.Status, c.Message))
		if c.Status != metav1.ConditionTrue && c.Reason != apiwardenv1alpha1.ReasonDryRun {
			typ = corev1.EventTypeWarning
		}
	}
	if acc.Status != metav1.ConditionTrue {
		reason = acc.Reason
	}
	if len(changed) > 0 {
		r.Recorder.Event(p, typ, reason, clip(strings.Join(changed, "; ")))
	}
	return nil
}
