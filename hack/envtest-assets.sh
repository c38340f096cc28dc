#!/usr/bin/env bash
# envtest-assets.sh prints a directory that holds the kube-apiserver and etcd
# binaries envtest needs, and nothing else on stdout. Progress goes to stderr.
#
# It tries, in order:
#   1. $KUBEBUILDER_ASSETS, when it already holds both binaries;
#   2. the per-user cache ${XDG_CACHE_HOME:-$HOME/.cache}/apiwarden/envtest/<version>;
#   3. setup-envtest, when it is on PATH (it downloads release binaries, which
#      fails on machines that reach only package registries);
#   4. a build from the Go module proxy at the versions pinned in
#      hack/envtest/{kube-apiserver,etcd}/go.mod, installed into the cache.
#
# Two runs at once are safe: the cache is guarded by flock(1) and filled by an
# atomic rename, so a second run waits and then reuses the first one's result.
set -euo pipefail

K8S_VERSION="${ENVTEST_K8S_VERSION:-1.37.2}"
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/apiwarden/envtest"
CACHE_DIR="${CACHE_ROOT}/${K8S_VERSION}"

log() { printf 'envtest-assets: %s\n' "$*" >&2; }
die() { printf 'envtest-assets: error: %s\n' "$*" >&2; exit 1; }

has_assets() {
	[[ -n "$1" && -x "$1/kube-apiserver" && -x "$1/etcd" ]]
}

# 1. An explicit KUBEBUILDER_ASSETS wins, as it does for envtest itself.
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
	if has_assets "${KUBEBUILDER_ASSETS}"; then
		log "using KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS}"
		echo "${KUBEBUILDER_ASSETS}"
		exit 0
	fi
	log "KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS} lacks kube-apiserver or etcd; ignoring it"
fi

# 2. The per-user cache, outside the repository so clones share it.
if has_assets "${CACHE_DIR}"; then
	log "using cache ${CACHE_DIR}"
	echo "${CACHE_DIR}"
	exit 0
fi

mkdir -p "${CACHE_ROOT}"
exec 9>"${CACHE_ROOT}/.${K8S_VERSION}.lock"
log "waiting for the cache lock ${CACHE_ROOT}/.${K8S_VERSION}.lock"
flock 9
# Another run may have filled the cache while this one waited.
if has_assets "${CACHE_DIR}"; then
	log "using cache ${CACHE_DIR} (filled by a concurrent run)"
	echo "${CACHE_DIR}"
	exit 0
fi

STAGE="$(mktemp -d "${CACHE_ROOT}/.stage-${K8S_VERSION}.XXXXXX")"
trap 'rm -rf "${STAGE}"' EXIT

install_stage() {
	chmod 0755 "${STAGE}/kube-apiserver" "${STAGE}/etcd"
	rm -rf "${CACHE_DIR}"
	mv "${STAGE}" "${CACHE_DIR}"
	trap - EXIT
	log "installed into ${CACHE_DIR}"
	echo "${CACHE_DIR}"
}

# 3. setup-envtest, when present. Bounded in time: on a machine without access
# to the release bucket it fails, and the build below takes over.
if command -v setup-envtest >/dev/null 2>&1; then
	log "trying setup-envtest for ${K8S_VERSION}"
	if dir="$(timeout 120 setup-envtest use "${K8S_VERSION}" -p path 2>/dev/null)" && has_assets "${dir}"; then
		cp "${dir}/kube-apiserver" "${dir}/etcd" "${STAGE}/"
		install_stage
		exit 0
	fi
	log "setup-envtest could not provide ${K8S_VERSION}; building from the Go module proxy"
else
	log "setup-envtest is not on PATH; building from the Go module proxy"
fi

# 4. Build both binaries from the Go module proxy at pinned versions. -mod=mod
# is not used: go.sum is committed, so the build is reproducible and verified.
command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go 1.26 first"
ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION}"
ldflags+=" -X k8s.io/component-base/version.gitMajor=${K8S_VERSION%%.*}"
minor="${K8S_VERSION#*.}"
ldflags+=" -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"

start=$(date +%s)
log "building etcd (hack/envtest/etcd, $(awk '/go.etcd.io\/etcd\/server/ {print $3}' "${HACK_DIR}/envtest/etcd/go.mod"))"
(cd "${HACK_DIR}/envtest/etcd" && GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${STAGE}/etcd" .) \
	|| die "building etcd failed (see the go output above); the Go module proxy must be reachable"
log "etcd built in $(( $(date +%s) - start ))s"

start=$(date +%s)
log "building kube-apiserver v${K8S_VERSION} (hack/envtest/kube-apiserver); about 7 minutes cold on 2 cores"
(cd "${HACK_DIR}/envtest/kube-apiserver" && GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${STAGE}/kube-apiserver" .) \
	|| die "building kube-apiserver failed (see the go output above); the Go module proxy must be reachable"
log "kube-apiserver built in $(( $(date +%s) - start ))s"

"${STAGE}/etcd" --version >/dev/null 2>&1 || die "the built etcd does not run"
"${STAGE}/kube-apiserver" --version >/dev/null 2>&1 || die "the built kube-apiserver does not run"
install_stage
