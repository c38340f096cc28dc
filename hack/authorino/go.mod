// Wrapper module that pins Authorino for the authz comparison benchmark
// (test/bench/authz -authorino). Built by hack/authorino.sh; not part of
// apiwarden.
module github.com/apiwarden/apiwarden/hack/authorino

go 1.26.0

require github.com/kuadrant/authorino v0.20.0
