// Wrapper module that pins Helm, used by `make helm`, the chart tests
// (test/chart) and `make chart-docs`' peers. Built by hack/helm.sh; not part
// of apiwarden.
module github.com/apiwarden/apiwarden/hack/helm

go 1.26.7

require helm.sh/helm/v3 v3.22.0
