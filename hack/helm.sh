#!/usr/bin/env bash
# helm.sh prints the path of a Helm binary, and nothing else on stdout. Helm
# is pinned by hack/helm/go.mod and built once per machine by hack/gotool.sh
# (a few minutes on 2 cores); the chart tests and `make chart` use it.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/gotool.sh" helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm
