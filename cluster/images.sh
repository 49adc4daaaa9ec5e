#!/usr/bin/env bash
# Images for the real node, built here and pushed to the local registry
# (`cluster.sh registry` prints its host:port). Nothing comes from a remote registry.
#
#   cluster/images.sh pause REF   the static pause (build.sh pause) as a one-file image
#   cluster/images.sh base REF    hack/base_image.sh's Debian Python base (debootstrap, cached)
#
# buildah/podman use a vfs storage of their own under the cache, chroot isolation.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cluster/lib.sh
. "${here}/lib.sh"

STORE="${CACHE_DIR}/cluster-images"
mkdir -p "${STORE}"
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' "${STORE}" "${STORE}" >"${STORE}/storage.conf"
export CONTAINERS_STORAGE_CONF="${STORE}/storage.conf" BUILDAH_ISOLATION=chroot

push() {
  local local_ref=$1 ref=$2
  buildah push --quiet --tls-verify=false "${local_ref}" "docker://${ref}" >"${STORE}/push.log" 2>&1 || {
    tail -n 5 "${STORE}/push.log" >&2
    die "could not push ${local_ref} to ${ref} (log: ${STORE}/push.log)"
  }
}

image_pause() {
  local ref=$1 local_ref="localhost/ai-serving/pause:${KUBE_VERSION}" ctr
  "${here}/build.sh" pause
  if ! buildah inspect --type image "${local_ref}" >/dev/null 2>&1; then
    log "building the pause image ${local_ref}"
    ctr=$(buildah from scratch)
    buildah copy --quiet "${ctr}" "${BIN_DIR}/pause-${KUBE_VERSION}/pause" /pause >/dev/null
    buildah config --entrypoint '["/pause"]' --user 65535:65535 "${ctr}"
    buildah commit --quiet --rm "${ctr}" "${local_ref}" >/dev/null
  fi
  push "${local_ref}" "${ref}"
}

image_base() {
  local ref=$1 local_ref=localhost/ai-serving/python-base:bookworm
  "${here}/../hack/base_image.sh" "${local_ref}"
  push "${local_ref}" "${ref}"
}

case "${1:-}" in
  pause) image_pause "${2:?usage: $0 pause REF}" ;;
  base) image_base "${2:?usage: $0 base REF}" ;;
  *) echo "usage: $0 pause|base REF" >&2; exit 2 ;;
esac
