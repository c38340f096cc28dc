// Package webhookcert keeps the admission webhook's serving certificate for
// clusters without cert-manager (--webhook-cert-mode=self-managed).
//
// One Secret holds a private CA, the serving certificate it signed, and the
// bundle of CAs the apiserver must trust. Decide, a pure function, says what
// that Secret should hold at a given time; Keeper, run by every webhook
// replica, writes Decide's answer (optimistic concurrency: one replica wins,
// the others re-read), serves the Secret's certificate from memory the
// moment it changes, and injects the bundle into the
// ValidatingWebhookConfiguration.
//
// Rotation never breaks admission:
//   - a serving certificate is renewed when a third of its lifetime is left,
//     by the same CA, which the apiserver already trusts;
//   - a CA is renewed when a third of its lifetime is left: the new CA joins
//     the bundle next to the old one, and only after Config.Propagation
//     (time for the apiserver to see the new bundle) does a serving
//     certificate signed by the new CA replace the old one; the old CA
//     leaves the bundle when it expires.
package webhookcert
