#!/usr/bin/env bash
# authorino.sh prints the path of an Authorino binary, for the authz
# comparison benchmark (go run ./test/bench/authz -authorino), and nothing
# else on stdout. Authorino is pinned by hack/authorino/go.mod and built once
# per machine by hack/gotool.sh. The checksum database does not know
# github.com/kuadrant/authorino, so GONOSUMDB names that module for this build
# only; every other module is checked as usual, and the committed go.sum pins
# Authorino's own hash.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/gotool.sh" authorino github.com/kuadrant/authorino github.com/kuadrant/authorino github.com/kuadrant/authorino
