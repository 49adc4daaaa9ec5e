#!/usr/bin/env bash
# `make demo`: the collection's main jobs against the local cluster.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
export ANSIBLE_CONFIG="${root}/ansible.cfg"
venv=$(hack/venv.sh)
export PATH="${venv}/bin:${PATH}"
kubeconfig=$(cluster/cluster.sh kubeconfig)

echo "==== bootstrap: namespace baseline (ai_namespace) on the local cluster ===="
ansible-playbook -i inventories/local playbooks/bootstrap_cluster.yml

echo "==== second run: nothing to change ===="
ansible-playbook -i inventories/local playbooks/bootstrap_cluster.yml | tail -n 3

echo "==== what the API server now holds ===="
kubectl --kubeconfig "${kubeconfig}" get namespace ai-serving --show-labels
kubectl --kubeconfig "${kubeconfig}" -n ai-serving get serviceaccount,role,rolebinding,resourcequota,limitrange,networkpolicy

echo "==== GPU nodes ===="
kubectl --kubeconfig "${kubeconfig}" get nodes -L nvidia.com/gpu.product \
  -o custom-columns='NAME:.metadata.name,GPUS:.status.allocatable.nvidia\.com/gpu,MIG-1G:.status.allocatable.nvidia\.com/mig-1g\.10gb,PRODUCT:.metadata.labels.nvidia\.com/gpu\.product'

# A real model on the real node: built with podman from the Triton role's
# Dockerfile template (first run only: the registry keeps the tag), deployed,
# probed for real, and asked through the API server's service proxy.
model=${DEMO_MODEL:-double-triton-cpu}
storage="${AI_SERVING_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/creativeflow-ai-serving}/containers"
mkdir -p "${storage}"
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' "${storage}" "${storage}" >"${storage}/storage.conf"
export CONTAINERS_STORAGE_CONF="${storage}/storage.conf" BUILDAH_ISOLATION=chroot
hack/base_image.sh localhost/ai-serving/python-base:bookworm >/dev/null

echo "==== deploy ${model} on the real node (the first run builds its image: minutes) ===="
ansible-playbook -i inventories/local playbooks/deploy_model.yml -e model="${model}" | grep -E -A3 'msg:|PLAY RECAP' || true
kubectl --kubeconfig "${kubeconfig}" -n ai-serving get pods -l "app.kubernetes.io/instance=${model}" -o wide

echo "==== a real inference through the Service (API server's service proxy) ===="
path=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["ai_serving_models"][sys.argv[2]]["smoke"]["path"])' \
  inventories/local/group_vars/all/models.yml "${model}")
body=$(python3 -c 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))["ai_serving_models"][sys.argv[2]]["smoke"]["body"]))' \
  inventories/local/group_vars/all/models.yml "${model}")
port=$(kubectl --kubeconfig "${kubeconfig}" -n ai-serving get service "${model}" -o jsonpath='{.spec.ports[0].name}')
echo "POST ${path} ${body}"
kubectl --kubeconfig "${kubeconfig}" create --raw "/api/v1/namespaces/ai-serving/services/${model}:${port}/proxy${path}" -f - <<<"${body}"
echo
