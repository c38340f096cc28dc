#!/usr/bin/env bash
# kustomize.sh prints the path of a kustomize binary, and nothing else on
# stdout. kustomize is pinned by hack/kustomize/go.mod and built once per
# machine by hack/gotool.sh; `make install-manifest` and test/install use it.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/gotool.sh" kustomize sigs.k8s.io/kustomize/kustomize/v5 sigs.k8s.io/kustomize/kustomize/v5
