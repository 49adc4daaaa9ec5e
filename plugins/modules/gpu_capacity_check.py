#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_capacity_check
short_description: Check that a GPU Deployment fits quota, nodes and its rollout surge before applying it
version_added: 0.1.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Reads the namespace's ResourceQuotas, the cluster's Nodes and pods and, when O(deployment) is named, the existing
    Deployment with its pods, and checks that O(replicas) pods requesting O(gpus_per_replica) of O(resource_name) each
    can be admitted and scheduled at every step of the rollout, surge pods included.
  - "Quota: every ResourceQuota of O(namespace) with a hard limit on C(requests.<resource_name>) must have room for the
    rollout's peak need: the GPUs of the new pods created minus the GPUs of the Deployment's old pods removed so far,
    at its highest. Kubernetes only enforces C(requests.<resource>) for extended resources; a quota on
    C(limits.<resource>) or on the bare resource name is reported with RV(quota[].applies=false) and a note."
  - "Nodes: only Ready nodes that are not cordoned, match O(node_selector) and whose C(NoSchedule) and C(NoExecute)
    taints are tolerated by O(tolerations) are eligible (C(PreferNoSchedule) is ignored). Free GPUs are allocatable
    minus the requests of the non-terminated pods bound to the node; each replica must fit on one node."
  - "Rollout: the Deployment controller is stepped wave by wave (RollingUpdate maxSurge rounds up, maxUnavailable rounds
    down, as Kubernetes does; Recreate removes every old pod first). Old pods free their GPUs when removed. The check
    fails when a wave's new pods would wait for GPUs, which is how a surge pod deadlocks a rollout when the old pod holds
    the only GPU. The model is described in C(docs/gpu_capacity_check.md) of the collection."
  - The module only reads the API, never changes anything, and reports RV(ignore:changed=false).
  - "When it does not fit, RV(msg) says why and what would fit (fewer replicas, a larger quota, C(maxSurge: 0) or
    C(Recreate)). With O(fail_on_insufficient=true) the task fails with that message and still returns the details."
options:
  namespace:
    description:
      - Namespace the Deployment runs in; its ResourceQuotas are checked.
    type: str
    required: true
  resource_name:
    description:
      - Extended resource the replicas request, such as V(nvidia.com/gpu), a MIG profile like
        V(nvidia.com/mig-1g.10gb) or a time-sliced shared resource like V(nvidia.com/gpu.shared).
    type: str
    default: nvidia.com/gpu
  gpus_per_replica:
    description:
      - Units of O(resource_name) each replica requests (its pod's effective request).
      - Defaults to the effective request of the existing O(deployment)'s pod template; required otherwise.
      - V(0) trivially fits.
    type: int
  replicas:
    description:
      - Replicas the Deployment will have.
      - Defaults to the existing O(deployment)'s C(spec.replicas); required otherwise.
    type: int
  node_selector:
    description:
      - Node labels the pods select (the pod's C(nodeSelector)).
      - Defaults to the existing O(deployment)'s pod template C(nodeSelector); no selection otherwise.
      - Node affinity is not evaluated.
    type: dict
  tolerations:
    description:
      - Tolerations of the pods, in the pod spec's form.
      - Defaults to the existing O(deployment)'s pod template tolerations; none otherwise.
    type: list
    elements: dict
    suboptions:
      key:
        description:
          - Taint key; empty with O(tolerations[].operator=Exists) tolerates every taint.
        type: str
      operator:
        description:
          - V(Equal) compares O(tolerations[].value); V(Exists) matches any value.
        type: str
        choices: [Equal, Exists]
        default: Equal
      value:
        description:
          - Taint value for O(tolerations[].operator=Equal).
        type: str
      effect:
        description:
          - Taint effect to tolerate; empty tolerates every effect.
        type: str
        choices: [NoSchedule, PreferNoSchedule, NoExecute]
      tolerationSeconds:
        description:
          - Accepted for copy-paste from pod specs; does not change the check.
        type: int
  strategy:
    description:
      - Rollout strategy of the Deployment.
      - Defaults to the existing O(deployment)'s strategy, V(RollingUpdate) otherwise.
    type: str
    choices: [RollingUpdate, Recreate]
  max_surge:
    description:
      - RollingUpdate C(maxSurge), an integer or a percentage string like V(25%) (rounded up).
      - Defaults to the existing O(deployment)'s value, V(25%) otherwise. Ignored for V(Recreate).
    type: raw
  max_unavailable:
    description:
      - RollingUpdate C(maxUnavailable), an integer or a percentage string like V(25%) (rounded down).
      - O(max_surge) and O(max_unavailable) cannot both be V(0).
      - Defaults to the existing O(deployment)'s value, V(25%) otherwise. Ignored for V(Recreate).
    type: raw
  deployment:
    description:
      - Name of the Deployment about to be applied in O(namespace).
      - When it exists, its strategy and pod template give the defaults above, and its current pods are the old pods
        the rollout replaces (their GPUs are already counted in quota usage and node requests, and are freed as
        they are removed).
      - When it does not exist, the check treats the deploy as a new Deployment.
      - The check assumes the pod template changes (a full rollout); for a pure scale change it is conservative.
    type: str
  fail_on_insufficient:
    description:
      - Fail the task when it does not fit. The details are returned either way.
    type: bool
    default: true
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: The module only reads; it behaves the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
requirements:
  - python >= 3.8
  - kubernetes >= 24.2.0
  - PyYAML >= 3.11
notes:
  - The user needs get/list on nodes and pods in all namespaces, and on resourcequotas, deployments and replicasets in
    O(namespace).
  - Quotas scoped to C(Terminating) or C(BestEffort) never match a Deployment's GPU pods and do not apply; other scopes
    (C(NotTerminating), C(NotBestEffort), C(PriorityClass)) are assumed to match.
  - A cordoned node is eligible only when the pods tolerate the C(node.kubernetes.io/unschedulable) taint, as the
    scheduler does.
  - It answers within seconds at any size. A new Deployment's single wave is computed; an existing Deployment's rollout
    is played up to 5000 pods (desired or current). Above that, an end state that does not fit is answered from the
    end state alone, and one that fits is refused with an error naming the count and the limit.
    RV(max_replicas) is searched up to 5000.
seealso:
  - name: Resource quotas for extended resources
    description: Why only C(requests.<resource>) limits an extended resource.
    link: https://kubernetes.io/docs/concepts/policy/resource-quotas/#resource-quota-for-extended-resources
  - name: Deployment rolling update
    description: How maxSurge and maxUnavailable drive a rollout.
    link: https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#rolling-update-deployment
  - module: kubernetes.core.k8s
"""

EXAMPLES = r"""
- name: Check that 4 single-GPU replicas fit before the first deploy
  creativeflow.ai_serving.gpu_capacity_check:
    namespace: ai-serving
    replicas: 4
    gpus_per_replica: 1
    tolerations:
      - key: nvidia.com/gpu
        operator: Exists
        effect: NoSchedule

- name: Check the rollout of an existing Deployment, surge included (strategy and pods read from the cluster)
  creativeflow.ai_serving.gpu_capacity_check:
    kubeconfig: "{{ lookup('ansible.builtin.env', 'HOME') }}/.kube/config"
    context: gpu-cluster
    namespace: ai-serving
    deployment: triton
    replicas: 3
  register: __gpu_fit

- name: Check a MIG slice without failing, then show the verdict
  creativeflow.ai_serving.gpu_capacity_check:
    namespace: ai-serving
    resource_name: nvidia.com/mig-1g.10gb
    replicas: 2
    gpus_per_replica: 1
    node_selector:
      nvidia.com/mig.strategy: mixed
    tolerations:
      - operator: Exists
    strategy: RollingUpdate
    max_surge: 0
    max_unavailable: 1
    fail_on_insufficient: false
  register: __mig_fit

- name: Report what would fit
  ansible.builtin.debug:
    msg: "{{ __mig_fit.msg }} (largest replica count that fits: {{ __mig_fit.max_replicas }})"

- name: Set the connection once for several tasks (also applies to kubernetes.core's k8s modules)
  module_defaults:
    group/creativeflow.ai_serving.k8s:
      kubeconfig: /etc/ai-serving/kubeconfig
      context: gpu-cluster
  block:
    - name: Preflight the GPU capacity
      creativeflow.ai_serving.gpu_capacity_check:
        namespace: ai-serving
        replicas: 2
        gpus_per_replica: 2
"""

RETURN = r"""
changed:
  description: Always V(false); the module only reads.
  returned: always
  type: bool
  sample: false
fits:
  description:
    - Whether the rollout completes, played one controller sync at a time with quota admission and scheduling.
    - A rollout that only slows down (some new pods wait Pending or refused until old pods go) fits.
  returned: success or when it does not fit
  type: bool
  sample: false
msg:
  description: The verdict in words; when it does not fit, why and what would fit.
  returned: always
  type: str
  sample: "needs 8 nvidia.com/gpu, quota ai-serving-quota has 3 free: lower replicas to 3 or raise requests.nvidia.com/gpu to 9"
resource_name:
  description: The extended resource checked.
  returned: success or when it does not fit
  type: str
  sample: nvidia.com/gpu
namespace:
  description: The namespace checked.
  returned: success or when it does not fit
  type: str
  sample: ai-serving
replicas:
  description: The replica count checked (the option, or the existing Deployment's).
  returned: success or when it does not fit
  type: int
  sample: 8
gpus_per_replica:
  description: The units of RV(resource_name) per replica checked (the option, or the Deployment's pod template's).
  returned: success or when it does not fit
  type: int
  sample: 1
max_replicas:
  description:
    - The largest replica count whose rollout fits with the same strategy and per-replica request.
    - V(null) when RV(gpus_per_replica) is 0 (no GPU limit).
  returned: success or when it does not fit
  type: int
  sample: 3
surge_pods:
  description: Pods above RV(replicas) at the rollout's peak (old and new together); 0 for a new Deployment or Recreate.
  returned: success or when it does not fit
  type: int
  sample: 1
quota:
  description: The ResourceQuotas of the namespace that name the resource, one entry per quota and key.
  returned: success or when it does not fit
  type: list
  elements: dict
  contains:
    name:
      description: Name of the ResourceQuota.
      type: str
      sample: ai-serving-quota
    key:
      description: The hard limit's key, normally C(requests.<resource_name>).
      type: str
      sample: requests.nvidia.com/gpu
    hard:
      description: The hard limit.
      type: int
      sample: 4
    used:
      description: The usage the quota controller reports, the Deployment's current pods included.
      type: int
      sample: 1
    headroom:
      description: RV(quota[].hard) minus RV(quota[].used).
      type: int
      sample: 3
    needed:
      description:
        - The least headroom (units beyond current usage) with which the rollout completes.
        - Negative when the rollout only completes once usage has fallen below the current usage.
      type: int
      sample: 8
    fits:
      description: Whether RV(quota[].needed) fits in RV(quota[].headroom) (always true when it does not apply).
      type: bool
      sample: false
    applies:
      description: Whether Kubernetes enforces this entry for the Deployment's pods.
      type: bool
      sample: true
    scopes:
      description: The quota's scopes and scope selector scope names.
      type: list
      elements: str
      sample: []
    note:
      description: Why the entry does not apply, or V(null).
      type: str
      sample: null
nodes:
  description: The nodes that advertise the resource (allocatable above 0), sorted by name.
  returned: success or when it does not fit
  type: list
  elements: dict
  contains:
    name:
      description: Node name.
      type: str
      sample: gpu-a100-0
    allocatable:
      description: Allocatable units of the resource.
      type: int
      sample: 4
    requested:
      description: Requests of the non-terminated pods bound to the node (terminating pods included).
      type: int
      sample: 3
    free:
      description: RV(nodes[].allocatable) minus RV(nodes[].requested).
      type: int
      sample: 1
    eligible:
      description: Whether the new replicas may be scheduled on the node.
      type: bool
      sample: true
    reason:
      description: Why the node is not eligible (NotReady, cordoned, node selector, untolerated taint), or V(null).
      type: str
      sample: "untolerated taint nvidia.com/gpu=present:NoSchedule"
    deployment_gpus:
      description: Units held by the existing Deployment's pods on the node, freed by the rollout.
      type: int
      sample: 1
    replica_slots:
      description: Replicas that fit in RV(nodes[].free) now (0 when not eligible).
      type: int
      sample: 1
nodes_without_resource:
  description: How many nodes advertise none of the resource (not listed in RV(nodes)).
  returned: success or when it does not fit
  type: int
  sample: 1
eligible_free:
  description: Free units on the eligible nodes, summed.
  returned: success or when it does not fit
  type: int
  sample: 5
rollout:
  description: The rollout as modelled.
  returned: success or when it does not fit
  type: dict
  contains:
    deployment:
      description: The O(deployment) option.
      type: str
      sample: triton
    deployment_found:
      description: Whether that Deployment exists (when not, the deploy is checked as a new one).
      type: bool
      sample: true
    strategy:
      description: V(RollingUpdate) or V(Recreate).
      type: str
      sample: RollingUpdate
    max_surge:
      description: maxSurge resolved to pods for RV(replicas) (rounded up).
      type: int
      sample: 1
    max_unavailable:
      description: maxUnavailable resolved to pods (rounded down; 1 when both resolve to 0; all for Recreate).
      type: int
      sample: 0
    old_pods:
      description: The existing Deployment's pods that the rollout replaces.
      type: int
      sample: 1
    old_gpus:
      description: Units those pods hold.
      type: int
      sample: 1
    peak_pods:
      description: Most pods of the Deployment at once during the rollout (ReplicaSet sizes, played without limits).
      type: int
      sample: 2
    needed:
      description: The least quota headroom with which the rollout completes (what each applying quota must have free).
      type: int
      sample: 1
    alternative:
      description: When only the surge breaks the fit, the strategy that would fit, else V(null).
      type: str
      sample: "maxSurge: 0 with maxUnavailable: 1"
    waves:
      description:
        - The controllers' syncs as played, in order, until the rollout completed or stopped moving.
        - Syncs in which pods only became Ready are left out.
      type: list
      elements: dict
      contains:
        index:
          description: Wave number, from 1.
          type: int
        old_replicas:
          description: Size of the old ReplicaSet after the Deployment controller's sync.
          type: int
        new_replicas:
          description: Size of the new ReplicaSet after the Deployment controller's sync.
          type: int
        removed:
          description: Pods deleted in this wave.
          type: int
        created:
          description: Pods created in this wave (admitted by the quota); old-template pods in a scaling event.
          type: int
        refused:
          description: Pods the quota refused in this wave (retried at the next one).
          type: int
        placed:
          description: Pods bound to a node in this wave, pods created earlier included.
          type: int
        pending:
          description: Pods without a node after this wave.
          type: int
        freed_gpus:
          description: Units freed by the deleted pods.
          type: int
        new_gpus:
          description: Units requested by the created pods.
          type: int
        net_gpus:
          description: Usage beyond the starting usage after this wave.
          type: int
        pods:
          description: The Deployment's pods after this wave.
          type: int
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit import (
    DEFAULT_RESOURCE,
    RECREATE,
    ROLLING_UPDATE,
    GpuFitError,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.cluster import (
    CapacityCheck,
    JsonReader,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import (
    K8sAccessError,
    K8sModule,
    auth_argument_spec,
)


def argspec() -> Dict[str, Any]:
    spec = auth_argument_spec()
    spec.update(
        namespace=dict(type="str", required=True),
        resource_name=dict(type="str", default=DEFAULT_RESOURCE),
        gpus_per_replica=dict(type="int"),
        replicas=dict(type="int"),
        node_selector=dict(type="dict"),
        tolerations=dict(
            type="list",
            elements="dict",
            options=dict(
                key=dict(type="str", no_log=False),
                operator=dict(type="str", choices=["Equal", "Exists"], default="Equal"),
                value=dict(type="str"),
                effect=dict(type="str", choices=["NoSchedule", "PreferNoSchedule", "NoExecute"]),
                tolerationSeconds=dict(type="int"),
            ),
        ),
        strategy=dict(type="str", choices=[ROLLING_UPDATE, RECREATE]),
        max_surge=dict(type="raw"),
        max_unavailable=dict(type="raw"),
        deployment=dict(type="str"),
        fail_on_insufficient=dict(type="bool", default=True),
    )
    return spec


def main() -> None:
    module = K8sModule(module_class=AnsibleModule, argument_spec=argspec(), supports_check_mode=True)
    try:
        reader = JsonReader(module)
        result = CapacityCheck(module.params, reader).run()
    except (GpuFitError, K8sAccessError) as exc:
        module.fail_json(msg=str(exc), changed=False)
        return
    result["changed"] = False
    if not result["fits"] and module.params["fail_on_insufficient"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
