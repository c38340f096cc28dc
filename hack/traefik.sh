#!/usr/bin/env bash
# traefik.sh prints the path of a Traefik binary, and nothing else on stdout.
# Traefik is pinned by hack/traefik/go.mod and built once per machine by
# hack/gotool.sh (about 6 minutes on 2 cores); test/e2e runs it out of
# cluster against the envtest apiserver.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/gotool.sh" traefik github.com/traefik/traefik/v3 github.com/traefik/traefik/v3/cmd/traefik
