#!/usr/bin/env bash
# The local cluster: upstream kube-apiserver, kube-controller-manager,
# kube-scheduler and etcd (built by build.sh) run by `kwokctl --runtime binary`,
# with simulated nodes from topology.yaml and pod stages from stages.yaml.
#
#   cluster.sh up          build what is missing, start (or repair), create nodes;
#                          the last line printed is the kubeconfig path
#   cluster.sh down        stop everything it started and delete the cluster
#   cluster.sh kubeconfig  print the kubeconfig path (fails if there is no cluster)
#   cluster.sh status      components and nodes
#   cluster.sh nodes       make the nodes match the topology file again
#   cluster.sh registry    print the local image registry's host:port (the real node pulls from it)
#   cluster.sh pod-registry  the same registry as the real node's pods reach it (read-only, on
#                          the bridge's gateway: Ollama pulls its models from there)
#
# Beside the simulated nodes, `up` starts one real node (node.sh) unless
# AI_SERVING_REAL_NODE=0 or the topology file has no real_node.
#
# Environment: AI_SERVING_CLUSTER_NAME (default ai-serving), AI_SERVING_TOPOLOGY
# (default cluster/topology.yaml), AI_SERVING_APISERVER_PORT (default: a free
# port), AI_SERVING_CACHE_DIR (default ~/.cache/creativeflow-ai-serving),
# AI_SERVING_REAL_NODE (default 1), and the real node's settings in node.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cluster/lib.sh
. "${here}/lib.sh"

NAME=${AI_SERVING_CLUSTER_NAME:-ai-serving}
TOPOLOGY=${AI_SERVING_TOPOLOGY:-${here}/topology.yaml}
KUBE_BIN="${BIN_DIR}/kube-${KUBE_VERSION}"
export KWOK_WORKDIR="${CACHE_DIR}/kwok"
CLUSTER_DIR="${KWOK_WORKDIR}/clusters/${NAME}"
KUBECONFIG_PATH="${CLUSTER_DIR}/kubeconfig.yaml"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok-controller)

export KWOK_KUBE_APISERVER_BINARY="${KUBE_BIN}/kube-apiserver"
export KWOK_KUBE_CONTROLLER_MANAGER_BINARY="${KUBE_BIN}/kube-controller-manager"
export KWOK_KUBE_SCHEDULER_BINARY="${KUBE_BIN}/kube-scheduler"
export KWOK_ETCD_BINARY="${BIN_DIR}/etcd-${ETCD_VERSION}/etcd"
export KWOK_CONTROLLER_BINARY="${BIN_DIR}/kwok-${KWOK_VERSION}/kwok"
export KWOK_KUBE_VERSION="${KUBE_VERSION}"
KWOKCTL="${BIN_DIR}/kwok-${KWOK_VERSION}/kwokctl"

kubectl_() { kubectl --kubeconfig "${KUBECONFIG_PATH}" "$@"; }
# shellcheck source=cluster/node.sh
. "${here}/node.sh"
# kwokctl.yaml plus the settings that name this cluster's paths.
KWOKCTL_CONFIG="${CACHE_DIR}/kwokctl-${NAME}.yaml"

python_() {
  # The project venv has PyYAML; fall back to the system python.
  local venv
  venv=$("${here}/../hack/venv.sh" 2>/dev/null) && [[ -x "${venv}/bin/python" ]] && { "${venv}/bin/python" "$@"; return; }
  python3 "$@"
}

# pid of a component, from the pid file kwokctl writes, if that process lives.
component_pid() {
  local f="${CLUSTER_DIR}/pids/$1.pid" pid
  [[ -f "${f}" ]] || return 1
  pid=$(<"${f}")
  # A zombie (killed, not yet reaped) counts as dead.
  [[ -n "${pid}" && -r "/proc/${pid}/stat" ]] || return 1
  [[ "$(cut -d' ' -f3 "/proc/${pid}/stat")" != Z ]] && echo "${pid}"
}

dead_components() {
  local c dead=()
  for c in "${COMPONENTS[@]}"; do
    component_pid "${c}" >/dev/null || dead+=("${c}")
  done
  echo "${dead[@]:-}"
}

api_ready() {
  [[ -f "${KUBECONFIG_PATH}" ]] && kubectl_ get --raw /readyz >/dev/null 2>&1
}

wait_api() {
  local i
  for i in $(seq 1 120); do
    api_ready && return 0
    sleep 0.5
  done
  die "kube-apiserver did not become ready in 60 s; see ${CLUSTER_DIR}/logs/kube-apiserver.log"
}

check_port() {
  local port=$1
  if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
    die "port ${port} (AI_SERVING_APISERVER_PORT) is already in use on 127.0.0.1: pick another or unset it to use a free port"
  fi
}

create_cluster() {
  { cat "${here}/kwokctl.yaml"; kwokctl_patches; } >"${KWOKCTL_CONFIG}"
  local args=(create cluster --name "${NAME}" --runtime binary
    --config "${KWOKCTL_CONFIG}" --config "${here}/stages.yaml"
    --kubeconfig "${CACHE_DIR}/kubeconfig-contexts.yaml" --wait 2m --quiet-pull)
  if [[ -n "${AI_SERVING_APISERVER_PORT:-}" ]]; then
    check_port "${AI_SERVING_APISERVER_PORT}"
    args+=(--kube-apiserver-port "${AI_SERVING_APISERVER_PORT}")
  fi
  log "creating cluster ${NAME} (kube ${KUBE_VERSION}, etcd ${ETCD_VERSION}, kwok ${KWOK_VERSION})"
  # kwokctl picks free ports when it writes the cluster's settings, and its components bind them only when
  # they start: two clusters created at once can pick the same port (one's scheduler then exits with
  # "address already in use"). One creation at a time on this machine, until its components listen.
  local lock
  exec {lock}>"${CACHE_DIR}/kwokctl-create.lock"
  flock "${lock}"
  # The components kwokctl starts must not inherit the lock: they would hold it for their life.
  if ! "${KWOKCTL}" "${args[@]}" >"${CACHE_DIR}/kwokctl-create.log" 2>&1 {lock}>&-; then
    tail -n 20 "${CACHE_DIR}/kwokctl-create.log" >&2
    "${KWOKCTL}" delete cluster --name "${NAME}" >/dev/null 2>&1 {lock}>&- || true
    exec {lock}>&-
    die "kwokctl could not create the cluster (log: ${CACHE_DIR}/kwokctl-create.log)"
  fi
  exec {lock}>&-
}

# kubernetes.core caches API discovery in $TMPDIR per server URL and user. A
# new cluster often gets a port an earlier one had, whose cache (say, with a
# CRD this cluster lacks) would make applies fail with "404 page not found".
forget_discovery() {
  local server
  server=$(kubectl_ config view -o jsonpath='{.clusters[0].cluster.server}')
  python_ - "${server}" <<'PY'
import hashlib, os, sys, tempfile
server = sys.argv[1]
users = {os.environ.get("USERNAME"), str(os.getuid())}
try:
    users.add(os.getlogin())
except OSError:
    pass
for cache_id in {server} | {f"{server}-{u}" for u in users if u}:
    path = os.path.join(tempfile.gettempdir(), "k8srcp-%s.json" % hashlib.sha256(cache_id.encode()).hexdigest())
    if os.path.exists(path):
        os.remove(path)
PY
}

# The versions a cluster was created with; a pin change in versions.env means
# the cluster must be recreated with the new binaries.
stamp() { echo "${KUBE_VERSION} ${ETCD_VERSION} ${KWOK_VERSION} $({ cat "${here}/kwokctl.yaml"; kwokctl_patches; } | sha256sum | cut -c1-12) $(sha256sum "${here}/stages.yaml" | cut -c1-12)"; }

sync_nodes() {
  [[ -f "${TOPOLOGY}" ]] || die "topology file ${TOPOLOGY} not found (AI_SERVING_TOPOLOGY)"
  python_ "${here}/topology.py" sync "${TOPOLOGY}" "${KUBECONFIG_PATH}" ||
    die "could not make the nodes match ${TOPOLOGY}; see ${CLUSTER_DIR}/logs/kwok-controller.log"
}

cmd_up() {
  "${here}/build.sh" all
  command -v kubectl >/dev/null || die "kubectl not found on PATH: install kubectl 1.32 or 1.33"
  node_preflight
  if [[ -f "${CLUSTER_DIR}/kwok.yaml" && "$(cat "${CLUSTER_DIR}/.stamp" 2>/dev/null)" != "$(stamp)" ]]; then
    log "cluster ${NAME} was made with other versions or settings: recreating it"
    cmd_down
  fi
  if [[ ! -f "${CLUSTER_DIR}/kwok.yaml" ]]; then
    create_cluster
    stamp >"${CLUSTER_DIR}/.stamp"
    forget_discovery
  else
    # The controller-manager and the scheduler exit when they lose their
    # leader lease: after an API server outage they may stop only once the API
    # server is back, so a restart is tried again (three rounds at most).
    local dead round c
    for round in 1 2 3; do
      dead=$(dead_components)
      [[ -n "${dead}" ]] || break
      log "restarting stopped components: ${dead}"
      # kwokctl takes a pid that still answers signal 0 (an unreaped zombie)
      # for a running component; dropping the stale pid file makes it start one.
      for c in ${dead}; do rm -f "${CLUSTER_DIR}/pids/${c}.pid"; done
      "${KWOKCTL}" start cluster --name "${NAME}" --wait 2m >"${CACHE_DIR}/kwokctl-start.log" 2>&1 || {
        tail -n 20 "${CACHE_DIR}/kwokctl-start.log" >&2
        die "could not restart ${dead}; see ${CLUSTER_DIR}/logs/"
      }
      ((round == 3)) || sleep 5
    done
    dead=$(dead_components)
    [[ -z "${dead}" ]] || die "components still not running after three restarts: ${dead}; see ${CLUSTER_DIR}/logs/ (a port taken by another process since the cluster was made? 'make cluster-down' then 'make cluster-up' picks free ones)"
  fi
  wait_api
  sync_nodes
  node_up
  log "cluster ${NAME} is up: $(kubectl_ get nodes --no-headers | wc -l) nodes, API $(kubectl_ config view -o jsonpath='{.clusters[0].cluster.server}')"
  echo "${KUBECONFIG_PATH}"
}

cmd_down() {
  node_down
  if [[ -d "${CLUSTER_DIR}" ]]; then
    log "deleting cluster ${NAME}"
    "${KWOKCTL}" delete cluster --name "${NAME}" >"${CACHE_DIR}/kwokctl-delete.log" 2>&1 || true
  fi
  # Whatever kwokctl could not stop (a half-created cluster, a lost pid file).
  local c pids
  for c in "${KWOK_KUBE_APISERVER_BINARY}" "${KWOK_KUBE_CONTROLLER_MANAGER_BINARY}" \
    "${KWOK_KUBE_SCHEDULER_BINARY}" "${KWOK_ETCD_BINARY}" "${KWOK_CONTROLLER_BINARY}"; do
    pids=$(pgrep -f "^${c} .*${CLUSTER_DIR}" || true)
    [[ -n "${pids}" ]] && { log "stopping leftover ${c##*/} (${pids//$'\n'/ })"; kill ${pids} 2>/dev/null || true; }
  done
  rm -rf "${CLUSTER_DIR}" "${KWOKCTL_CONFIG}"
}

cmd_kubeconfig() {
  [[ -f "${KUBECONFIG_PATH}" ]] || die "no local cluster '${NAME}': run 'make cluster-up' first"
  echo "${KUBECONFIG_PATH}"
}

cmd_status() {
  [[ -f "${CLUSTER_DIR}/kwok.yaml" ]] || { echo "cluster ${NAME}: not created"; return 1; }
  local c pid
  for c in "${COMPONENTS[@]}"; do
    if pid=$(component_pid "${c}"); then echo "${c}: running (pid ${pid})"; else echo "${c}: STOPPED"; fi
  done
  node_status
  api_ready && kubectl_ get nodes -L nvidia.com/gpu.product || echo "kube-apiserver: not ready"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  kubeconfig) cmd_kubeconfig ;;
  status) cmd_status ;;
  nodes) wait_api; sync_nodes ;;
  registry) node_registry ;;
  pod-registry) node_registry pods ;;
  *) echo "usage: $0 up|down|kubeconfig|status|nodes|registry|pod-registry" >&2; exit 2 ;;
esac
