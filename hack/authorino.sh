#!/usr/bin/env bash
# authorino.sh prints the path of an Authorino binary, for the authz
# comparison benchmark (go run ./test/bench/authz -authorino), and nothing
# else on stdout. Progress goes to stderr.
#
# Authorino is built once per machine from the Go module proxy, at the
# version pinned in hack/authorino/go.mod (with its go.sum), into
# ${XDG_CACHE_HOME:-$HOME/.cache}/apiwarden/authorino/<version>. The checksum
# database does not know github.com/kuadrant/authorino, so GONOSUMDB names
# that module, for this build only; every other module is checked as usual,
# and the committed go.sum pins Authorino's own hash.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="$(awk '$1 == "require" && $2 == "github.com/kuadrant/authorino" {print $3}' "${HACK_DIR}/authorino/go.mod")"
[[ -n "${VERSION}" ]] || { echo "authorino.sh: no version pinned in hack/authorino/go.mod" >&2; exit 1; }
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/apiwarden/authorino/${VERSION}"
BIN="${CACHE_DIR}/authorino"

if [[ -x "${BIN}" ]]; then
	echo "authorino.sh: using cache ${BIN}" >&2
	echo "${BIN}"
	exit 0
fi
mkdir -p "${CACHE_DIR}"
exec 9>"${CACHE_DIR}/.lock"
flock 9
if [[ ! -x "${BIN}" ]]; then
	echo "authorino.sh: building Authorino ${VERSION} from the Go module proxy (a few minutes, once per machine)" >&2
	tmp="$(mktemp "${CACHE_DIR}/.authorino.XXXXXX")"
	(cd "${HACK_DIR}/authorino" && GOWORK=off GOFLAGS=-mod=mod GONOSUMDB=github.com/kuadrant/authorino \
		go build -trimpath -o "${tmp}" github.com/kuadrant/authorino) || { rm -f "${tmp}"; exit 1; }
	mv "${tmp}" "${BIN}"
fi
echo "${BIN}"
