// Package policyreport turns the coverage scan of one namespace into a
// wgpolicyk8s.io/v1alpha2 PolicyReport, in the form Kyverno writes and
// Policy Reporter and its dashboards read: one result per exposed object,
// governing APIBaseline (the report's "policy") and requirement of that
// baseline (the "rule": TLS, Authentication, RateLimit, RequestBody, CORS),
// with the result pass, fail or skip (an exemption), the object as the
// result's resource, a severity and an OWASP API Top 10 category.
//
// It is pure: the PolicyReport controller feeds it the scan and writes the
// report. It also carries the PolicyReport CRD, copied from Kyverno's module,
// for clusters that do not have it yet.
package policyreport
