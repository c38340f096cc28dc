// Package webhooks holds apiwarden's admission handlers, one file per
// admitted kind. Handlers decide nothing themselves: they ask
// internal/exposure and turn its verdict into an admission response. They
// never import the controllers package.
package webhooks
