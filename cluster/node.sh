# The local cluster's real node: one CPU node that runs real containers beside
# the simulated ones (containerd + runc + CNI bridge from Debian, kubelet and
# kube-proxy built with the control plane), and the local image registry it
# pulls from. Sourced by cluster.sh, which sets NAME, CLUSTER_DIR,
# KUBECONFIG_PATH, KUBE_BIN, TOPOLOGY and python_.
#
# iptables chains, the bridge and the sysctls are machine-wide, so one machine
# holds one real node: the cluster that has it is written in REAL_OWNER_FILE.
# shellcheck shell=bash

REAL_NODE=${AI_SERVING_REAL_NODE:-1}
# Address plan: none of these overlap (kwok's default fake pod range was the
# apiserver's default Service range, 10.0.0.0/24).
SERVICE_CIDR=${AI_SERVING_SERVICE_CIDR:-10.96.0.0/16}
KWOK_POD_CIDR=${AI_SERVING_KWOK_POD_CIDR:-10.240.0.1/16}
REAL_POD_CIDR=${AI_SERVING_REAL_POD_CIDR:-10.244.0.0/24}
REAL_BRIDGE=${AI_SERVING_REAL_NODE_BRIDGE:-aisrv0}
# Machine-wide, like what they describe (and gone after a reboot, as the node is).
REAL_RUN_DIR=${AI_SERVING_REAL_NODE_RUN_DIR:-/run/creativeflow-ai-serving}
REAL_OWNER_FILE="${REAL_RUN_DIR}/real-node.owner"
REAL_SYSCTL_FILE="${REAL_RUN_DIR}/real-node.sysctl"
REGISTRY_DIR="${CACHE_DIR}/registry"
NODE_DIR="${CLUSTER_DIR}/node"
NODE_ENV="${NODE_DIR}/node.env"
NODE_COMPONENTS=(registry registry-pods registry-blobs apiserver-pods containerd kubelet kube-proxy)
# What the kubelet, kube-proxy and the CNI bridge change; read before, set back by `down`.
REAL_SYSCTLS=(net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables)

# The gateway address of the bridge: also the node's InternalIP, where the
# kubelet listens (a loopback node IP is refused by the kubelet).
real_gateway() { python3 -c 'import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "${REAL_POD_CIDR}"; }

# The first address of the Service range: the kubernetes Service's, which pods connect to.
api_service_ip() { python3 -c 'import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "${SERVICE_CIDR}"; }

# Extra kwokctl settings that name this cluster's pki paths (see cluster.sh
# create_cluster). The first lines continue kwokctl.yaml's options.
kwokctl_patches() {
  local pki="${CLUSTER_DIR}/pki"
  # Pods reach the API server as in any cluster (the kubernetes Service, in-cluster config): its endpoint
  # is the bridge's gateway, where the real node's apiserver-pods forwards to the API server on
  # 127.0.0.1; the serving certificate names that address and the Service's. Set whether or not the
  # cluster has its real node yet, so that adding one later keeps the cluster (its settings are the same).
  echo "  kubeApiserverCertSANs: [$(real_gateway), $(api_service_ip)]"
  cat <<EOF
componentsPatches:
  - name: kube-apiserver
    extraArgs:
      - {key: service-cluster-ip-range, value: ${SERVICE_CIDR}}
      - {key: advertise-address, value: $(real_gateway)}
      # The apiserver authenticates to kubelets with kwokctl's admin certificate
      # and verifies their serving certificate against kwokctl's CA.
      - {key: kubelet-client-certificate, value: ${pki}/admin.crt}
      - {key: kubelet-client-key, value: ${pki}/admin.key}
      - {key: kubelet-certificate-authority, value: ${pki}/ca.crt}
      - {key: kubelet-preferred-address-types, value: InternalIP}
  - name: kwok-controller
    extraArgs:
      # kwok takes only the simulated nodes; the real node is the kubelet's.
      - {key: manage-all-nodes, value: "false", override: true}
      - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
      - {key: cidr, value: ${KWOK_POD_CIDR}}
EOF
}

pid_alive() {
  local f="${CLUSTER_DIR}/pids/$1.pid" pid
  [[ -f "${f}" ]] || return 1
  pid=$(<"${f}")
  [[ -n "${pid}" && -r "/proc/${pid}/stat" && "$(cut -d' ' -f3 "/proc/${pid}/stat")" != Z ]] && echo "${pid}"
}

# start NAME CMD...: run a daemon detached, its output in logs/NAME.log.
start_daemon() {
  local name=$1
  shift
  mkdir -p "${CLUSTER_DIR}/pids" "${CLUSTER_DIR}/logs"
  setsid "$@" >>"${CLUSTER_DIR}/logs/${name}.log" 2>&1 </dev/null &
  echo $! >"${CLUSTER_DIR}/pids/${name}.pid"
}

stop_daemon() {
  local name=$1 pid i
  pid=$(pid_alive "${name}") || { rm -f "${CLUSTER_DIR}/pids/${name}.pid"; return 0; }
  kill "${pid}" 2>/dev/null || true
  for i in $(seq 1 40); do
    [[ -r "/proc/${pid}/stat" && "$(cut -d' ' -f3 "/proc/${pid}/stat")" != Z ]] || break
    sleep 0.25
  done
  kill -9 "${pid}" 2>/dev/null || true
  rm -f "${CLUSTER_DIR}/pids/${name}.pid"
}

# A TCP port someone listens on, on any local address (ours bind to one, but a
# wildcard listener on the same port would take their traffic).
port_in_use() { [[ -n "$(ss -Hltn "sport = :$1")" ]]; }

# The first port from $1 up that nobody listens on.
free_port() {
  local port=$1
  while port_in_use "${port}"; do port=$((port + 1)); done
  echo "${port}"
}

# The real node's name and labels and taints, from the topology file.
real_node_spec() { python_ "${here}/topology.py" real-node "${TOPOLOGY}"; }

# Before anything starts: the machine can take this cluster's real node.
node_preflight() {
  real_node_wanted || return 0
  check_owner
  [[ -f "${NODE_ENV}" ]] && return 0
  if ip link show "${REAL_BRIDGE}" >/dev/null 2>&1; then
    die "network interface ${REAL_BRIDGE} already exists and is not this cluster's: delete it (ip link del ${REAL_BRIDGE}) or pick another name with AI_SERVING_REAL_NODE_BRIDGE"
  fi
  local route
  route=$(ip route show to match "$(real_gateway)" | grep -v '^default' | head -n 1 || true)
  [[ -z "${route}" ]] ||
    die "the real node's pod range ${REAL_POD_CIDR} is already routed on this machine (${route}): pick another with AI_SERVING_REAL_POD_CIDR"
}

real_node_wanted() {
  [[ "${REAL_NODE}" != 0 ]] || return 1
  [[ -n "$(real_node_spec | sed -n 1p)" ]]
}

# Another live cluster holds the machine's real node: name it.
check_owner() {
  local owner owner_dir
  [[ -f "${REAL_OWNER_FILE}" ]] || return 0
  read -r owner owner_dir <"${REAL_OWNER_FILE}"
  [[ "${owner_dir}" == "${CLUSTER_DIR}" ]] && return 0
  if [[ -d "${owner_dir}/node" ]]; then
    die "the real node of this machine belongs to cluster '${owner}' (iptables chains and the bridge are machine-wide, so there is one): stop it with 'AI_SERVING_CLUSTER_NAME=${owner} cluster/cluster.sh down', or start this cluster without one (AI_SERVING_REAL_NODE=0)"
  fi
  log "cluster '${owner}' that held the real node is gone: taking the real node over"
}

save_sysctls() {
  # Kept across an unclean stop: the first values read are the ones to restore.
  [[ -s "${REAL_SYSCTL_FILE}" ]] && return 0
  mkdir -p "${REAL_RUN_DIR}"
  local key value
  for key in "${REAL_SYSCTLS[@]}"; do
    value=$(cat "/proc/sys/${key//.//}" 2>/dev/null) || continue
    printf '%s=%s\n' "${key}" "${value}"
  done >"${REAL_SYSCTL_FILE}.tmp"
  mv "${REAL_SYSCTL_FILE}.tmp" "${REAL_SYSCTL_FILE}"
}

restore_sysctls() {
  [[ -s "${REAL_SYSCTL_FILE}" ]] || return 0
  local key value
  while IFS='=' read -r key value; do
    [[ -n "${key}" ]] && echo "${value}" >"/proc/sys/${key//.//}" 2>/dev/null || true
  done <"${REAL_SYSCTL_FILE}"
  rm -f "${REAL_SYSCTL_FILE}"
}

# Ports and names picked once per cluster, reused by every later `up`.
node_settings() {
  if [[ -f "${NODE_ENV}" ]]; then
    # shellcheck source=/dev/null
    . "${NODE_ENV}"
    return 0
  fi
  mkdir -p "${NODE_DIR}"
  local spec
  spec=$(real_node_spec)
  REAL_NODE_NAME=$(sed -n 1p <<<"${spec}")
  REAL_NODE_LABELS=$(sed -n 2p <<<"${spec}")
  REAL_NODE_TAINTS=$(sed -n 3p <<<"${spec}")
  # Two picks could meet on one free port: each starts above the one before.
  REGISTRY_PORT=$(free_port "${AI_SERVING_REGISTRY_PORT:-5000}")
  KUBELET_HEALTHZ_PORT=$(free_port 10248)
  PROXY_METRICS_PORT=$(free_port $((KUBELET_HEALTHZ_PORT + 1)))
  KUBELET_PORT=$(free_port $((PROXY_METRICS_PORT + 1)))
  PROXY_HEALTHZ_PORT=$(free_port $((KUBELET_PORT + 6)))
  declare -p REAL_NODE_NAME REAL_NODE_LABELS REAL_NODE_TAINTS REAL_BRIDGE REAL_POD_CIDR REGISTRY_PORT \
    KUBELET_PORT KUBELET_HEALTHZ_PORT PROXY_HEALTHZ_PORT PROXY_METRICS_PORT | sed 's/^declare -- //' >"${NODE_ENV}"
}

registry_address() { echo "127.0.0.1:${REGISTRY_PORT}"; }

# The registry as the node's pods reach it: the bridge's gateway (the node's
# InternalIP, where the kubelet listens too), same port. Ollama pulls its models
# over the registry protocol from inside the pod, where 127.0.0.1 is the pod.
pod_registry_address() { echo "$(real_gateway):${REGISTRY_PORT}"; }

# Where the pods' registry sends blob downloads: a second address on the bridge,
# outside the pods' range (they reach it through the gateway), so another host
# than the registry's, as a registry on object storage or ollama.com's CDN is.
# Ollama's pull needs such a redirect: see cluster/registry_blobs.py.
blob_address() {
  [[ -n "${AI_SERVING_REGISTRY_BLOB_ADDRESS:-}" ]] && { echo "${AI_SERVING_REGISTRY_BLOB_ADDRESS}"; return 0; }
  python3 -c 'import ipaddress,sys; print(ipaddress.ip_network(sys.argv[1]).broadcast_address + 2)' "${REAL_POD_CIDR}"
}
blob_url() { echo "http://$(blob_address):${REGISTRY_PORT}"; }

registry_ready() { curl -fsS -o /dev/null "http://$(registry_address)/v2/" 2>/dev/null; }

start_registry() {
  mkdir -p "${REGISTRY_DIR}"
  cat >"${NODE_DIR}/registry.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: ${REGISTRY_DIR}}
  delete: {enabled: true}
http:
  addr: $(registry_address)
EOF
  start_daemon registry docker-registry serve "${NODE_DIR}/registry.yml"
  local i
  for i in $(seq 1 40); do registry_ready && return 0; sleep 0.25; done
  die "the image registry did not answer on $(registry_address); see ${CLUSTER_DIR}/logs/registry.log"
}

# A second, read-only server of the same storage on the bridge's gateway, for
# the pods (docker-registry listens on one address; 0.0.0.0 would open it to
# the machine's network). Pushes go to 127.0.0.1 only. Blob GETs get a 307 to
# the blob store (the redirect middleware), as from a registry on S3 or GCS.
start_pod_registry() {
  mkdir -p "${REGISTRY_DIR}"
  cat >"${NODE_DIR}/registry-pods.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: ${REGISTRY_DIR}}
  maintenance:
    uploadpurging: {enabled: false}
    readonly: {enabled: true}
middleware:
  storage:
    - {name: redirect, options: {baseurl: "$(blob_url)"}}
http:
  addr: $(pod_registry_address)
EOF
  start_daemon registry-pods docker-registry serve "${NODE_DIR}/registry-pods.yml"
  local i
  for i in $(seq 1 40); do
    curl -fsS -o /dev/null "http://$(pod_registry_address)/v2/" 2>/dev/null && return 0
    sleep 0.25
  done
  die "the pods' registry did not answer on $(pod_registry_address); see ${CLUSTER_DIR}/logs/registry-pods.log"
}

# The blob files of the registry's storage, read-only, where the pods' registry
# redirects blob GETs.
start_registry_blobs() {
  start_daemon registry-blobs python3 "${here}/registry_blobs.py" "${REGISTRY_DIR}" "$(blob_address)" "${REGISTRY_PORT}"
  local i
  for i in $(seq 1 40); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$(blob_url)/" 2>/dev/null)" == 404 ]] && return 0
    sleep 0.25
  done
  die "the pods' blob store did not answer on $(blob_url); see ${CLUSTER_DIR}/logs/registry-blobs.log"
}

# The API server for the pods: a forwarder on the bridge's gateway to the API
# server, which listens on 127.0.0.1 only (kwokctl's bindAddress; 0.0.0.0 would
# open it to the machine's network). Same port; the advertise address above
# makes it the kubernetes Service's endpoint.
apiserver_port() {
  local server
  server=$(kubectl --kubeconfig "${KUBECONFIG_PATH}" config view -o jsonpath='{.clusters[0].cluster.server}')
  echo "${server##*:}"
}
apiserver_pods_address() { echo "$(real_gateway):$(apiserver_port)"; }

start_apiserver_pods() {
  local port
  port=$(apiserver_port)
  start_daemon apiserver-pods socat "TCP-LISTEN:${port},bind=$(real_gateway),reuseaddr,fork" "TCP:127.0.0.1:${port}"
  local i
  for i in $(seq 1 40); do
    (exec 3<>"/dev/tcp/$(real_gateway)/${port}") 2>/dev/null && return 0
    sleep 0.25
  done
  die "the API server's forwarder for the pods did not listen on $(real_gateway):${port}; see ${CLUSTER_DIR}/logs/apiserver-pods.log"
}

stop_apiserver_pods() {
  stop_daemon apiserver-pods
  # socat forks one child per connection; they outlive the listener.
  pkill -9 -f "^socat TCP-LISTEN:[0-9]+,bind=$(real_gateway),reuseaddr,fork TCP:127.0.0.1:" 2>/dev/null || true
}

# Certificates signed by kwokctl's CA: the kubelet's serving certificate (the
# apiserver verifies it), and client identities for the kubelet (Node
# authorizer: system:node:NAME) and kube-proxy (system:kube-proxy, bound to
# system:node-proxier by default RBAC).
node_certs() {
  local pki="${CLUSTER_DIR}/pki" dir="${NODE_DIR}/pki" gw
  [[ -s "${dir}/kube-proxy.crt" ]] && return 0
  mkdir -p "${dir}"
  chmod 0700 "${dir}"
  gw=$(real_gateway)
  sign() {
    local name=$1 subj=$2 ext=$3
    openssl req -new -newkey rsa:2048 -nodes -keyout "${dir}/${name}.key" -subj "${subj}" \
      -out "${dir}/${name}.csr" 2>/dev/null
    openssl x509 -req -in "${dir}/${name}.csr" -CA "${pki}/ca.crt" -CAkey "${pki}/ca.key" -CAcreateserial \
      -CAserial "${dir}/ca.srl" -days 3650 -out "${dir}/${name}.crt" -extfile <(printf '%s\n' "${ext}") 2>/dev/null ||
      die "could not sign the ${name} certificate with ${pki}/ca.key"
    rm -f "${dir}/${name}.csr"
  }
  sign kubelet-serving "/CN=${REAL_NODE_NAME}" \
    "subjectAltName=IP:${gw},DNS:${REAL_NODE_NAME}
extendedKeyUsage=serverAuth
keyUsage=digitalSignature,keyEncipherment"
  sign kubelet-client "/O=system:nodes/CN=system:node:${REAL_NODE_NAME}" "extendedKeyUsage=clientAuth"
  sign kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
}

node_kubeconfig() {
  local user=$1 server
  server=$(kubectl_ config view -o jsonpath='{.clusters[0].cluster.server}')
  cat >"${NODE_DIR}/${user}.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: {server: "${server}", certificate-authority: "${CLUSTER_DIR}/pki/ca.crt"}
users:
  - name: ${user}
    user: {client-certificate: "${NODE_DIR}/pki/${user}.crt", client-key: "${NODE_DIR}/pki/${user}.key"}
contexts:
  - name: local
    context: {cluster: local, user: ${user}}
current-context: local
EOF
}

pause_image() { echo "$(registry_address)/ai-serving/pause:${KUBE_VERSION}"; }

# The pause image: the static pause binary build.sh made, as a one-file image
# in the registry. Pushed once; the registry's storage is cached.
push_pause() {
  curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$(registry_address)/v2/ai-serving/pause/manifests/${KUBE_VERSION}" 2>/dev/null && return 0
  "${here}/images.sh" pause "$(pause_image)" || die "could not push the pause image to $(registry_address)"
}

write_containerd_config() {
  local d="${NODE_DIR}"
  mkdir -p "${d}/containerd" "${d}/certs.d/$(registry_address)" "${d}/cni/net.d"
  cat >"${d}/certs.d/$(registry_address)/hosts.toml" <<EOF
server = "http://$(registry_address)"
[host."http://$(registry_address)"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"${d}/containerd/config.toml" <<EOF
version = 2
root = "${d}/containerd/root"
state = "${d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "${d}/containerd/containerd.sock"
[ttrpc]
  address = "${d}/containerd/containerd.sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$(pause_image)"
  # No CAP_SYS_RESOURCE here: runc may not lower oom_score_adj below ours.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${d}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${d}/certs.d"
EOF
  cat >"${d}/cni/net.d/10-aisrv.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "aisrv",
  "plugins": [
    {"type": "bridge", "bridge": "${REAL_BRIDGE}", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "${d}/cni/ipam", "ranges": [[{"subnet": "${REAL_POD_CIDR}"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

containerd_sock() { echo "${NODE_DIR}/containerd/containerd.sock"; }

write_kubelet_config() {
  local d="${NODE_DIR}" taints="" t
  local max_files
  max_files=$(ulimit -Hn)
  [[ "${max_files}" == unlimited || "${max_files}" -gt 1000000 ]] && max_files=1000000
  for t in ${REAL_NODE_TAINTS//,/ }; do
    # key=value:Effect
    taints+="  - {key: \"${t%%=*}\", value: \"$(cut -d= -f2 <<<"${t%%:*}")\", effect: \"${t##*:}\"}"$'\n'
  done
  mkdir -p "${d}/kubelet" "${d}/pod-logs"
  cat >"${d}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(real_gateway)
port: ${KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${KUBELET_HEALTHZ_PORT}
tlsCertFile: ${d}/pki/kubelet-serving.crt
tlsPrivateKeyFile: ${d}/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${CLUSTER_DIR}/pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$(containerd_sock)
# cgroup v1 hybrid here, no systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE: no lowered oom_score_adj, no file limit above the hard one.
oomScoreAdj: 0
maxOpenFiles: ${max_files}
podLogsDir: ${d}/pod-logs
maxPods: 30
serializeImagePulls: false
registerWithTaints:
${taints:-  []}
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
nodeStatusUpdateFrequency: 10s
nodeStatusReportFrequency: 1m
resolvConf: /etc/resolv.conf
EOF
}

write_proxy_config() {
  cat >"${NODE_DIR}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${NODE_DIR}/kube-proxy.kubeconfig}
hostnameOverride: ${REAL_NODE_NAME}
mode: iptables
clusterCIDR: ${REAL_POD_CIDR}
healthzBindAddress: 127.0.0.1:${PROXY_HEALTHZ_PORT}
metricsBindAddress: 127.0.0.1:${PROXY_METRICS_PORT}
oomScoreAdj: 0
# Leave the machine's nf_conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: [primary]
EOF
}

ensure_bridge() {
  ip link show "${REAL_BRIDGE}" >/dev/null 2>&1 || ip link add "${REAL_BRIDGE}" type bridge ||
    die "could not create the bridge ${REAL_BRIDGE}"
  local cidr="$(real_gateway)/${REAL_POD_CIDR#*/}" addrs
  # Read whole, then match: `ip ... | grep -q` under pipefail fails when grep
  # exits before ip's last write (SIGPIPE), and the address is added twice.
  addrs="$(ip -o -4 addr show dev "${REAL_BRIDGE}")"
  [[ "${addrs}" == *" ${cidr} "* ]] || ip addr add "${cidr}" dev "${REAL_BRIDGE}"
  [[ "${addrs}" == *" $(blob_address)/32 "* ]] || ip addr add "$(blob_address)/32" dev "${REAL_BRIDGE}"
  ip link set "${REAL_BRIDGE}" up
}

wait_file() {
  local path=$1 what=$2 log=$3 i
  for i in $(seq 1 80); do [[ -e "${path}" ]] && return 0; sleep 0.25; done
  die "${what} did not start; see ${log}"
}

dead_node_components() {
  local c dead=()
  for c in "${NODE_COMPONENTS[@]}"; do pid_alive "${c}" >/dev/null || dead+=("${c}"); done
  echo "${dead[@]:-}"
}

node_up() {
  real_node_wanted || return 0
  check_owner
  local fresh=1
  [[ -f "${NODE_ENV}" ]] && fresh=0
  node_settings
  mkdir -p "${REAL_RUN_DIR}"
  echo "${NAME} ${CLUSTER_DIR}" >"${REAL_OWNER_FILE}"
  local dead
  dead=$(dead_node_components)
  [[ -z "${dead}" ]] && return 0
  ((fresh)) || log "restarting stopped real node components: ${dead}"
  save_sysctls
  # kube-proxy's ClusterIP rules for pod-to-Service traffic on the bridge, and forwarding.
  modprobe br_netfilter 2>/dev/null || true
  echo 1 >/proc/sys/net/ipv4/ip_forward
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] && echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  ensure_bridge
  if [[ " ${dead} " == *" registry "* ]]; then start_registry; fi
  if [[ " ${dead} " == *" registry-pods "* ]]; then start_pod_registry; fi
  if [[ " ${dead} " == *" registry-blobs "* ]]; then start_registry_blobs; fi
  if [[ " ${dead} " == *" apiserver-pods "* ]]; then start_apiserver_pods; fi
  push_pause
  node_certs
  if [[ " ${dead} " == *" containerd "* ]]; then
    write_containerd_config
    rm -f "$(containerd_sock)"
    start_daemon containerd containerd --config "${NODE_DIR}/containerd/config.toml"
    wait_file "$(containerd_sock)" containerd "${CLUSTER_DIR}/logs/containerd.log"
  fi
  if [[ " ${dead} " == *" kubelet "* ]]; then
    node_kubeconfig kubelet-client
    write_kubelet_config
    start_daemon kubelet "${KUBE_BIN}/kubelet" --config "${NODE_DIR}/kubelet.yaml" \
      --kubeconfig "${NODE_DIR}/kubelet-client.kubeconfig" --root-dir "${NODE_DIR}/kubelet" \
      --cert-dir "${NODE_DIR}/pki" --hostname-override "${REAL_NODE_NAME}" --node-ip "$(real_gateway)" \
      --node-labels "${REAL_NODE_LABELS}" --v 1
  fi
  if [[ " ${dead} " == *" kube-proxy "* ]]; then
    node_kubeconfig kube-proxy
    write_proxy_config
    start_daemon kube-proxy "${KUBE_BIN}/kube-proxy" --config "${NODE_DIR}/kube-proxy.yaml" --v 1
  fi
  wait_node_ready
}

wait_node_ready() {
  local i c
  for i in $(seq 1 240); do
    [[ "$(kubectl_ get node "${REAL_NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] && return 0
    for c in containerd kubelet kube-proxy; do
      pid_alive "${c}" >/dev/null || die "${c} of the real node exited; see ${CLUSTER_DIR}/logs/${c}.log: $(tail -n 3 "${CLUSTER_DIR}/logs/${c}.log" | tr '\n' ' ')"
    done
    sleep 0.5
  done
  die "the real node ${REAL_NODE_NAME} was not Ready in 120 s; see ${CLUSTER_DIR}/logs/kubelet.log"
}

# Mount points under a directory, deepest first.
mounts_under() {
  awk -v d="$1" '{ p = $5; gsub(/\\040/, " ", p); if (index(p, d "/") == 1 || p == d) print p }' /proc/self/mountinfo | sort -r
}

# Every KUBE-* and CNI-* chain, with the rules that jump to them (both families).
clean_chains() {
  local ipt table chain rule
  for ipt in iptables ip6tables; do
    command -v "${ipt}" >/dev/null || continue
    for table in filter nat mangle raw; do
      "${ipt}" -t "${table}" -S >/dev/null 2>&1 || continue
      while read -r rule; do
        eval "${ipt} -t ${table} -D ${rule#-A }" 2>/dev/null || true
      done < <("${ipt}" -t "${table}" -S | grep -E -- '-j (KUBE|CNI)-' | grep -E -v '^-A (KUBE|CNI)-')
      for chain in $("${ipt}" -t "${table}" -S | awk '/^-N (KUBE|CNI)-/ {print $2}'); do
        "${ipt}" -t "${table}" -F "${chain}" 2>/dev/null || true
      done
      for chain in $("${ipt}" -t "${table}" -S | awk '/^-N (KUBE|CNI)-/ {print $2}'); do
        "${ipt}" -t "${table}" -X "${chain}" 2>/dev/null || true
      done
    done
  done
}

# Processes of the node's containers: in the kubelet's kubepods cgroups.
container_pids() {
  grep -l ':/kubepods' /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 || true
}

remove_kubepods_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "${d}" ]] || continue
    find "${d}" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

node_down() {
  [[ -d "${NODE_DIR}" ]] || return 0
  [[ -f "${NODE_ENV}" ]] && . "${NODE_ENV}"
  log "stopping the real node ${REAL_NODE_NAME:-}"
  stop_daemon kubelet
  stop_daemon kube-proxy
  local pids
  pids=$(container_pids)
  [[ -n "${pids}" ]] && kill -9 ${pids} 2>/dev/null || true
  pids=$(pgrep -f "containerd-shim.*-address $(containerd_sock)" || true)
  [[ -n "${pids}" ]] && kill -9 ${pids} 2>/dev/null || true
  stop_daemon containerd
  stop_daemon registry
  stop_daemon registry-pods
  stop_daemon registry-blobs
  stop_apiserver_pods
  local m
  # Pod network namespaces containerd made.
  for m in /run/netns/cni-* /var/run/netns/cni-*; do
    [[ -e "${m}" ]] || continue
    umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || true
    rm -f "${m}"
  done
  while read -r m; do
    [[ -n "${m}" ]] && { umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || true; }
  done < <(mounts_under "${NODE_DIR}")
  ip link del "${REAL_BRIDGE:-aisrv0}" 2>/dev/null || true
  clean_chains
  remove_kubepods_cgroups
  restore_sysctls
  [[ "$(cat "${REAL_OWNER_FILE}" 2>/dev/null)" == "${NAME} ${CLUSTER_DIR}" ]] && rm -f "${REAL_OWNER_FILE}"
  rm -rf "${NODE_DIR}"
}

node_status() {
  [[ -f "${NODE_ENV}" ]] || { echo "real node: none (AI_SERVING_REAL_NODE=0, or held by another cluster)"; return 0; }
  . "${NODE_ENV}"
  local c pid
  echo "real node ${REAL_NODE_NAME} (bridge ${REAL_BRIDGE} ${REAL_POD_CIDR}, kubelet $(real_gateway):${KUBELET_PORT}, registry $(registry_address), for pods $(pod_registry_address), blobs $(blob_url), API for pods $(apiserver_pods_address))"
  for c in "${NODE_COMPONENTS[@]}"; do
    if pid=$(pid_alive "${c}"); then echo "${c}: running (pid ${pid})"; else echo "${c}: STOPPED"; fi
  done
}

node_registry() {
  [[ -f "${NODE_ENV}" ]] || die "cluster '${NAME}' has no real node, hence no registry: run 'make cluster-up' (without AI_SERVING_REAL_NODE=0)"
  . "${NODE_ENV}"
  if [[ "${1:-}" == pods ]]; then pod_registry_address; else registry_address; fi
}
