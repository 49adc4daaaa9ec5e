#!/usr/bin/env bash
# The base image of the local catalog's Ollama example (tiny-ollama-cpu): no
# registry we reach holds ollama/ollama, so it is the Debian Python base
# (hack/base_image.sh) plus the `ollama` binary cluster/build.sh ollama makes
# from the Go module (cgo, CPU) and curl (the model check's script runs on the
# same image). roles/ollama's Dockerfile takes it as BASE_IMAGE.
#   hack/ollama_image.sh [IMAGE]   (default localhost/ai-serving/ollama-base:$OLLAMA_VERSION)
# Built into the podman storage CONTAINERS_STORAGE_CONF names (the tests give it
# a vfs storage of their own), once: an existing IMAGE is kept.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=cluster/lib.sh
. "${root}/cluster/lib.sh"
image=${1:-localhost/ai-serving/ollama-base:${OLLAMA_VERSION}}
base=localhost/ai-serving/python-base:bookworm

podman image exists "${image}" && exit 0
"${root}/cluster/build.sh" ollama
"${root}/hack/base_image.sh" "${base}"
context=$(mktemp -d)
trap 'rm -rf "${context}"' EXIT
cp "${BIN_DIR}/ollama-${OLLAMA_VERSION}/ollama" "${context}/ollama"
cat >"${context}/Containerfile" <<EOF
FROM ${base}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY ollama /usr/local/bin/ollama
# The cgo build links libstdc++ and glibc dynamically: the base must have them.
RUN if ldd /usr/local/bin/ollama | grep 'not found'; then echo 'ollama: shared libraries missing in ${base}' >&2; exit 1; fi
LABEL org.opencontainers.image.title=ollama-base org.opencontainers.image.version=${OLLAMA_VERSION}
EOF
log "building ${image} (${base} + curl + ollama ${OLLAMA_VERSION})"
started=${SECONDS}
podman build --quiet --format docker -t "${image}" -f "${context}/Containerfile" "${context}" >/dev/null
log "${image} built in $((SECONDS - started)) s, $(podman image inspect --format '{{.Size}}' "${image}" | awk '{printf "%.0f MB", $1 / 1e6}')"
