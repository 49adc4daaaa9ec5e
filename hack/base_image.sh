#!/usr/bin/env bash
# A Python base image made locally from Debian packages, for the image build
# tests: no registry holds python:3.11-slim for us here.
#   hack/base_image.sh [IMAGE]   (default localhost/ai-serving/python-base:bookworm)
# debootstrap (minbase) + python3, pip and venv, cached as a tarball under
# ~/.cache/creativeflow-ai-serving/images, imported into the podman storage
# that CONTAINERS_STORAGE_CONF names (the tests give it a vfs storage of its own).
# Needs root (debootstrap) and Debian's mirror.
set -euo pipefail
image=${1:-localhost/ai-serving/python-base:bookworm}
suite=bookworm
mirror=${AI_SERVING_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${AI_SERVING_CACHE_DIR:-${HOME}/.cache/creativeflow-ai-serving}/images
tarball="${cache}/python-base-${suite}.tar"

log() { printf '[base-image] %s\n' "$*" >&2; }

if podman image exists "${image}"; then
  exit 0
fi
if [[ ! -s "${tarball}" ]]; then
  command -v debootstrap >/dev/null || { log "ERROR: debootstrap not found: apt-get install debootstrap"; exit 1; }
  [[ $(id -u) -eq 0 ]] || { log "ERROR: debootstrap needs root"; exit 1; }
  mkdir -p "${cache}"
  rootfs=$(mktemp -d "${cache}/rootfs.XXXXXX")
  trap 'rm -rf "${rootfs}"' EXIT
  chmod 0755 "${rootfs}"  # it becomes the image's /: mktemp made it 0700
  log "debootstrap ${suite} (minbase + python3) from ${mirror}"
  if ! debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
      "${suite}" "${rootfs}" "${mirror}" >"${cache}/debootstrap.log" 2>&1; then
    log "ERROR: debootstrap failed; see ${cache}/debootstrap.log"; tail -5 "${cache}/debootstrap.log" >&2; exit 1
  fi
  rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* \
    "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/locale/*
  # This machine's trust store: pip inside the build must trust whatever
  # (proxy) certificates the host trusts to reach PyPI.
  cp /etc/ssl/certs/ca-certificates.crt "${rootfs}/etc/ssl/certs/ca-certificates.crt"
  tar -C "${rootfs}" --numeric-owner -cf "${tarball}.tmp" .
  mv "${tarball}.tmp" "${tarball}"
fi
log "importing ${tarball} as ${image}"
podman import --quiet --change 'CMD ["python3"]' "${tarball}" "${image}" >/dev/null
