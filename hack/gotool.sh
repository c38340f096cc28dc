#!/usr/bin/env bash
# gotool.sh NAME MODULE PACKAGE [GONOSUMDB]
#
# Prints the path of a tool built from the Go module proxy, and nothing else
# on stdout; progress goes to stderr. The tool is pinned by the wrapper
# module hack/NAME (its go.mod requires MODULE at one version, its go.sum pins
# the hashes) and built once per machine into
# ${XDG_CACHE_HOME:-$HOME/.cache}/apiwarden/NAME/<version>. Concurrent callers
# wait on a lock instead of building twice. GONOSUMDB, when given, names the
# modules the checksum database does not know, for this build only.
set -euo pipefail

NAME="$1" MODULE="$2" PACKAGE="$3" NOSUMDB="${4:-}"
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WRAPPER="${HACK_DIR}/${NAME}"
VERSION="$(awk -v m="${MODULE}" '$1 == "require" && $2 == m {print $3} $1 == m {print $2}' "${WRAPPER}/go.mod" | head -1)"
[[ -n "${VERSION}" ]] || { echo "gotool.sh: no version of ${MODULE} pinned in hack/${NAME}/go.mod" >&2; exit 1; }
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/apiwarden/${NAME}/${VERSION}"
# The binary is named after the package's last path element, or the one
# before it when that is a major-version suffix (sigs.k8s.io/kustomize/kustomize/v5).
BASE="${PACKAGE##*/}"
if [[ "${BASE}" =~ ^v[0-9]+$ ]]; then
	BASE="${PACKAGE%/*}"
	BASE="${BASE##*/}"
fi
BIN="${CACHE_DIR}/${BASE}"

if [[ -x "${BIN}" ]]; then
	echo "gotool.sh: using cache ${BIN}" >&2
	echo "${BIN}"
	exit 0
fi
mkdir -p "${CACHE_DIR}"
exec 9>"${CACHE_DIR}/.lock"
flock 9
if [[ ! -x "${BIN}" ]]; then
	echo "gotool.sh: building ${PACKAGE} ${VERSION} from the Go module proxy (minutes, once per machine)" >&2
	tmp="$(mktemp "${CACHE_DIR}/.build.XXXXXX")"
	(cd "${WRAPPER}" && GOWORK=off GOFLAGS=-mod=mod GONOSUMDB="${NOSUMDB}" \
		go build -trimpath -o "${tmp}" "${PACKAGE}") || { rm -f "${tmp}"; exit 1; }
	mv "${tmp}" "${BIN}"
fi
echo "${BIN}"
