#!/usr/bin/env bash
# egctl.sh prints the path of Envoy Gateway's egctl, pinned by
# hack/egctl/go.mod and built once per machine by hack/gotool.sh. The render
# tests use `egctl x translate` as a peer check of what apiwarden renders.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/gotool.sh" egctl github.com/envoyproxy/gateway github.com/envoyproxy/gateway/cmd/egctl
