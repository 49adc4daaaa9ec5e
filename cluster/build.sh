#!/usr/bin/env bash
# Build the local cluster's upstream binaries from the Go module proxy into a
# per-version cache under ~/.cache (never into the repo). Idempotent: a binary
# that is already cached is not rebuilt.
#
#   cluster/build.sh [all|kube|etcd|kwok|helm|pause|ollama|crds]...
#
# `ollama` is not part of `all` (the cluster does not need it): the Ollama
# server for the real node's LLM example, with cgo (llama.cpp/ggml for CPU).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cluster/lib.sh
. "${here}/lib.sh"

require_go() {
  # GO names the toolchain; else go on PATH, else Go's default install dir.
  local go_bin=${GO:-$(command -v go || true)}
  [[ -z "${go_bin}" && -x /usr/local/go/bin/go ]] && go_bin=/usr/local/go/bin/go
  [[ -n "${go_bin}" && -x "${go_bin}" ]] ||
    die "no Go toolchain (${GO:-go not on PATH nor in /usr/local/go/bin}): the cluster's binaries are built from source. Install Go >= 1.24 (e.g. apt-get install golang-go), or set AI_SERVING_CACHE_DIR to a cache that already holds the binaries."
  PATH="$(dirname "${go_bin}"):${PATH}"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
  export GOMODCACHE="${CACHE_DIR}/gomod"
  export GOCACHE="${CACHE_DIR}/gobuild"
}

# go list against the proxy; a clear message when it is unreachable.
check_proxy() {
  local mod=$1
  if ! go list -m -json "${mod}" >/dev/null 2>"${CACHE_DIR}/proxy-check.log"; then
    die "cannot fetch ${mod} from the Go module proxy ($(go env GOPROXY)): $(tail -n 1 "${CACHE_DIR}/proxy-check.log"). Check network access to the proxy or set GOPROXY."
  fi
}

# The control plane and the real node's kubelet and kube-proxy come from one
# module (same pin, same dependency versions); only missing binaries are built.
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

build_kube() {
  local out="${BIN_DIR}/kube-${KUBE_VERSION}" cmd todo=()
  for cmd in "${KUBE_CMDS[@]}"; do
    [[ -x "${out}/${cmd}" ]] || todo+=("${cmd}")
  done
  ((${#todo[@]})) || return 0
  require_go
  check_proxy "k8s.io/kubernetes@${KUBE_VERSION}"
  local mod="${CACHE_DIR}/src/kube-${KUBE_VERSION}"
  mkdir -p "${mod}" "${out}"
  log "building ${todo[*]} ${KUBE_VERSION} (cold: 15-30 min on 2 cores)"
  # k8s.io/kubernetes replaces its staging modules with ./staging paths, so it
  # cannot be `go install`ed; a module of ours pins each of them to its v0.X tag.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local staging_version="v0${KUBE_VERSION#v1}"
  {
    echo "module local/kube-build"
    echo
    grep -E '^go [0-9]' "${gomod}"
    grep -E '^godebug ' "${gomod}" || true
    echo
    echo "require k8s.io/kubernetes ${KUBE_VERSION}"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"${staging_version}"'#p' "${gomod}"
    echo ")"
  } >"${mod}/go.mod"
  (
    cd "${mod}"
    local pkgs=("${todo[@]/#/k8s.io/kubernetes/cmd/}")
    go get "${pkgs[@]/%/@${KUBE_VERSION}}" >/dev/null 2>>"${CACHE_DIR}/go-get.log"
    local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
    local ldflags="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
      ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
    done
    for pkg in "${pkgs[@]}"; do
      log "  go build ${pkg##*/}"
      go build -trimpath -tags selinux,notest -ldflags "${ldflags}" -o "${out}/${pkg##*/}.tmp" "${pkg}"
      mv "${out}/${pkg##*/}.tmp" "${out}/${pkg##*/}"
    done
  )
}

build_etcd() {
  local out="${BIN_DIR}/etcd-${ETCD_VERSION}"
  [[ -x "${out}/etcd" ]] && return 0
  require_go
  check_proxy "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  local mod="${CACHE_DIR}/src/etcd-${ETCD_VERSION}"
  mkdir -p "${mod}" "${out}"
  log "building etcd ${ETCD_VERSION}"
  (
    cd "${mod}"
    # server/v3 carries replace lines too, so it is built from a module of ours.
    printf 'module local/etcd-build\n\ngo 1.23\n' >go.mod
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null 2>>"${CACHE_DIR}/go-get.log"
    go build -trimpath -ldflags "-s -w" -o "${out}/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "${out}/etcd.tmp" "${out}/etcd"
  )
}

build_kwok() {
  local out="${BIN_DIR}/kwok-${KWOK_VERSION}"
  [[ -x "${out}/kwok" && -x "${out}/kwokctl" ]] && return 0
  require_go
  check_proxy "sigs.k8s.io/kwok@${KWOK_VERSION}"
  mkdir -p "${out}"
  log "building kwok and kwokctl ${KWOK_VERSION}"
  GOBIN="${out}" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}"
}

build_helm() {
  local out="${BIN_DIR}/helm-${HELM_VERSION}"
  [[ -x "${out}/helm" ]] && return 0
  require_go
  check_proxy "helm.sh/helm/v3@${HELM_VERSION}"
  mkdir -p "${out}"
  log "building helm ${HELM_VERSION}"
  GOBIN="${out}" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
}

# The pause container (sandbox) of the real node: pause.c from the pinned
# k8s.io/kubernetes module, linked statically so the image holds one file.
build_pause() {
  local out="${BIN_DIR}/pause-${KUBE_VERSION}"
  [[ -x "${out}/pause" ]] && return 0
  command -v gcc >/dev/null || die "gcc not found (the pause image is built from pause.c): run hack/deps.sh"
  require_go
  check_proxy "k8s.io/kubernetes@${KUBE_VERSION}"
  local dir
  dir=$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "${out}"
  log "building pause (${KUBE_VERSION}, gcc -static)"
  gcc -Os -static -Wall -Werror -o "${out}/pause.tmp" "${dir}/build/pause/linux/pause.c" ||
    die "gcc could not build ${dir}/build/pause/linux/pause.c (static: needs libc6-dev)"
  strip "${out}/pause.tmp"
  mv "${out}/pause.tmp" "${out}/pause"
}

# The module zip of github.com/ollama/ollama has no llama/llama.cpp/vendor/
# (Go module zips leave out every directory named vendor), whose header-only
# libraries its cgo code includes: nlohmann/json and stb come from Debian
# (nlohmann-json3-dev, libstb-dev: on the system include path), miniaudio from
# the sdist of PyPI's `miniaudio` (MINIAUDIO_SDIST_VERSION), which carries
# miniaudio/miniaudio.h: no Debian package has it. Prints the include directory.
ollama_vendor() {
  local dir="${CACHE_DIR}/src/ollama-vendor-miniaudio-${MINIAUDIO_SDIST_VERSION}" tmp
  [[ -f /usr/include/nlohmann/json_fwd.hpp && -f /usr/include/stb/stb_image.h ]] ||
    die "nlohmann/json or stb headers missing (llama.cpp's vendor/ is not in Ollama's module zip): run hack/deps.sh (nlohmann-json3-dev, libstb-dev)"
  if [[ ! -s "${dir}/miniaudio/miniaudio.h" ]]; then
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
      "miniaudio==${MINIAUDIO_SDIST_VERSION}" -d "${tmp}" >&2 ||
      die "could not download the sdist of PyPI's miniaudio ${MINIAUDIO_SDIST_VERSION} (it carries miniaudio.h)"
    mkdir -p "${dir}/miniaudio"
    tar -xzf "${tmp}/miniaudio-${MINIAUDIO_SDIST_VERSION}.tar.gz" -O "miniaudio-${MINIAUDIO_SDIST_VERSION}/miniaudio/miniaudio.h" \
      >"${dir}/miniaudio/miniaudio.h.tmp" || die "no miniaudio/miniaudio.h in the miniaudio ${MINIAUDIO_SDIST_VERSION} sdist"
    mv "${dir}/miniaudio/miniaudio.h.tmp" "${dir}/miniaudio/miniaudio.h"
    rm -rf "${tmp}"
  fi
  echo "${dir}"
}

# Ollama for the real node: `go install` of the pinned tag (its go.mod has no
# replace lines), with cgo: llama.cpp and ggml's CPU backend are compiled in
# (C/C++ from the module zip, gcc/g++ from Debian). No GPU backend. The build
# time and the binary's size are written beside it (build.txt).
build_ollama() {
  local out="${BIN_DIR}/ollama-${OLLAMA_VERSION}"
  [[ -x "${out}/ollama" ]] && return 0
  command -v gcc >/dev/null && command -v g++ >/dev/null ||
    die "gcc and g++ are needed (Ollama compiles llama.cpp with cgo): run hack/deps.sh"
  require_go
  check_proxy "github.com/ollama/ollama@${OLLAMA_VERSION}"
  mkdir -p "${out}"
  local vendor started=${SECONDS} tmp
  vendor=$(ollama_vendor)
  log "building ollama ${OLLAMA_VERSION} with cgo for CPU (cold: 10-30 min on 2 cores)"
  tmp=$(mktemp -d "${out}/gobin.XXXXXX")
  # The version ldflags of upstream's scripts/env.sh: `ollama --version` and the
  # server's /api/version report the tag, and gin runs in release mode.
  # miniaudio.h through gcc's own include path: a CGO_CPPFLAGS change would be part of every
  # cgo package's build cache key and rebuild all of llama.cpp.
  CGO_ENABLED=1 CPLUS_INCLUDE_PATH="${vendor}${CPLUS_INCLUDE_PATH:+:${CPLUS_INCLUDE_PATH}}" GOBIN="${tmp}" go install -trimpath \
    -ldflags "-s -w -X github.com/ollama/ollama/version.Version=${OLLAMA_VERSION#v} -X github.com/ollama/ollama/server.mode=release" \
    "github.com/ollama/ollama@${OLLAMA_VERSION}" 2>"${out}/build.log" || {
    tail -n 20 "${out}/build.log" >&2
    rm -rf "${tmp}"
    die "could not build ollama ${OLLAMA_VERSION} (log: ${out}/build.log)"
  }
  mv "${tmp}/ollama" "${out}/ollama"
  rm -rf "${tmp}"
  printf 'version=%s\nbuild_seconds=%s\nsize_bytes=%s\ngo=%s\ngcc=%s\n' "${OLLAMA_VERSION}" "$((SECONDS - started))" \
    "$(stat -c %s "${out}/ollama")" "$(go env GOVERSION)" "$(gcc -dumpfullversion)" >"${out}/build.txt"
  log "ollama ${OLLAMA_VERSION} built in $((SECONDS - started)) s: ${out}/ollama ($(du -h "${out}/ollama" | cut -f1))"
}

# The CRDs of the canary's route splits (issue 15), fetched as Go modules (nothing is built): Gateway API's
# standard channel (sigs.k8s.io/gateway-api config/crd/standard) and Istio's (istio.io/api
# kubernetes/customresourcedefinitions.gen.yaml), copied to ${BIN_DIR}/crds-<versions>/ and that path printed.
# The tests install them in a test cluster; no data plane runs them here.
build_crds() {
  local out="${BIN_DIR}/crds-gateway-${GATEWAY_API_VERSION}-istio-${ISTIO_API_VERSION}"
  if [[ ! -f "${out}/.complete" ]]; then
    require_go
    check_proxy "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}"
    local gateway istio
    gateway=$(go mod download -json "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    istio=$(go mod download -json "istio.io/api@${ISTIO_API_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "${out}"
    mkdir -p "${out}"
    cp "${gateway}"/config/crd/standard/*.yaml "${out}/"
    cp "${istio}/kubernetes/customresourcedefinitions.gen.yaml" "${out}/istio.yaml"
    chmod u+w "${out}"/*.yaml
    touch "${out}/.complete"
    log "CRDs of Gateway API ${GATEWAY_API_VERSION} and Istio (istio.io/api ${ISTIO_API_VERSION}) in ${out}"
  fi
  echo "${out}"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(all)
for t in "${targets[@]}"; do
  case "${t}" in
    all) build_etcd; build_kwok; build_kube; build_helm; build_pause ;;
    kube) build_kube ;;
    pause) build_pause ;;
    etcd) build_etcd ;;
    kwok) build_kwok ;;
    helm) build_helm ;;
    ollama) build_ollama ;;
    crds) build_crds ;;
    *) die "unknown build target '${t}': use all, kube, etcd, kwok, helm, pause, ollama or crds" ;;
  esac
done
