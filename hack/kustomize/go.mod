// Wrapper module that pins kustomize, used by `make install-manifest` and the
// manifest tests (test/install). Built by hack/kustomize.sh; not part of
// apiwarden.
module github.com/apiwarden/apiwarden/hack/kustomize

go 1.26.7

require sigs.k8s.io/kustomize/kustomize/v5 v5.8.2
