#!/usr/bin/env bash
# System prerequisites for `make test` / `make demo` on a Debian machine.
# Installs what apt can provide; names what it cannot.
set -euo pipefail
missing=()
command -v python3 >/dev/null || missing+=(python3 python3-venv)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v git >/dev/null || missing+=(git)
command -v curl >/dev/null || missing+=(curl)
# The image build test: podman/buildah build, Debian's registry serves, debootstrap
# makes the base image (hack/base_image.sh).
command -v podman >/dev/null || missing+=(podman)
command -v buildah >/dev/null || missing+=(buildah)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "[deps] installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[deps] ERROR: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
command -v kubectl >/dev/null || {
  echo "[deps] ERROR: kubectl not found: install kubectl 1.32 or 1.33 (the local cluster runs Kubernetes 1.33)" >&2
  exit 1
}
# Go builds the cluster's binaries (cluster/build.sh checks for it and the proxy).
exit 0
