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
