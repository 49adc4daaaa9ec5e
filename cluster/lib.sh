# Shared by cluster/*.sh: versions, cache locations, logging.
# shellcheck shell=bash
_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cluster/versions.env
. "${_lib_dir}/versions.env"

CACHE_DIR=${AI_SERVING_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/creativeflow-ai-serving}
BIN_DIR="${CACHE_DIR}/bin"
mkdir -p "${CACHE_DIR}" "${BIN_DIR}"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }
