// Wrapper module that pins Envoy Gateway's egctl, whose `x translate` is the
// peer check of the Envoy Gateway renderer. Built by hack/egctl.sh; not part
// of apiwarden.
module github.com/apiwarden/apiwarden/hack/egctl

go 1.26.7

require github.com/envoyproxy/gateway v1.9.1
