#!/usr/bin/env bash
# System prerequisites for `make test` / `make demo` on a Debian machine.
# Installs what apt can provide; names what it cannot.
set -euo pipefail
missing=()
# need COMMAND PACKAGE: the package that provides a command we run.
need() { command -v "$1" >/dev/null || missing+=("$2"); }
need python3 python3
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
need git git
need curl curl
# The image build test: podman/buildah build, Debian's registry serves, debootstrap
# makes the base image (hack/base_image.sh).
need podman podman
need buildah buildah
need docker-registry docker-registry
need debootstrap debootstrap
# The local cluster's real node (cluster/node.sh): container runtime, CNI
# plugins, the packet filter kube-proxy and `down` drive, gcc for the static pause.
need containerd containerd
need runc runc
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap ]] ||
  missing+=(containernetworking-plugins)
need iptables iptables
need conntrack conntrack
need ipset ipset
need ip iproute2
need gcc gcc
# The pods' way to the API server (it listens on 127.0.0.1): a forwarder on the bridge.
need socat socat
[[ -f /usr/include/stdio.h ]] || missing+=(libc6-dev)
# A real Prometheus for the canary analysis test (tests/integration/prometheus_tools.py starts
# its own process on a free port): Debian's package, whose own service must not start. (It has no
# Kubernetes service discovery: the test gives it the pods over http_sd_configs.)
need prometheus prometheus
# Ollama for the real node (cluster/build.sh ollama) compiles llama.cpp's C++ with cgo.
need g++ g++
# Its module zip lacks llama.cpp's vendor/: nlohmann/json and stb from Debian.
[[ -f /usr/include/nlohmann/json_fwd.hpp ]] || missing+=(nlohmann-json3-dev)
[[ -f /usr/include/stb/stb_image.h ]] || missing+=(libstb-dev)
# Runs as a pipe: the lists are sorted so a package named by two checks appears once.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sed '/^$/d' | sort -u)
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "[deps] installing ${missing[*]}" >&2
    apt-get update -qq
    # One clear error naming what the configured Debian sources do not have.
    unknown=()
    for pkg in "${missing[@]}"; do
      apt-cache show "${pkg}" >/dev/null 2>&1 || unknown+=("${pkg}")
    done
    if ((${#unknown[@]})); then
      echo "[deps] ERROR: no Debian package ${unknown[*]} in the apt sources of this machine; add the Debian bookworm main repository or install it by hand" >&2
      exit 1
    fi
    # Debian's prometheus starts a service on :9090 at install: refused through policy-rc.d, Debian's switch
    # for what an install may start (one already there, as in containers, is left as it is).
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e ${policy} ]]; then
      # invoke-rc.d passes the script's name after --quiet, deb-systemd-invoke the unit's: 101 is "do not run".
      printf '#!/bin/sh\nfor arg; do case $arg in prometheus|prometheus.service) exit 101 ;; esac; done\nexit 0\n' \
        >"${policy}"
      chmod 755 "${policy}"
      trap 'rm -f "${policy}"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for pkg in "${missing[@]}"; do
      # Nor started at the next boot (the package enables its unit); systemctl disable works without systemd running.
      if [[ ${pkg} == prometheus ]] && command -v systemctl >/dev/null; then
        systemctl disable prometheus.service >/dev/null 2>&1 ||
          echo "[deps] WARNING: could not disable prometheus.service: run systemctl disable --now prometheus" >&2
      fi
    done
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
