#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_manifests
short_description: Work out a model's server and build its Kubernetes objects from the runtime registry
version_added: 0.1.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Runs on the controller (an action plugin; this module is its documentation). Takes a resolved catalog entry
    (what M(creativeflow.ai_serving.model_catalog) returns as C(model)), the runtime's knobs and the deploy's shared
    settings, and returns what the runtime's record in C(plugins/module_utils/runtimes.py) makes of them (command,
    arguments, ports, probes, environment, smoke requests...), the pod's scheduling (node selector, tolerations), and
    with O(objects=true) the model's Kubernetes objects (ConfigMap, Service, Deployment, HorizontalPodAutoscaler,
    PodDisruptionBudget, ServiceMonitor) as C(plugins/module_utils/manifests.py) builds them.
  - Nothing is read or changed anywhere; the runtime roles' internal role C(_common) calls it.
options:
  runtime:
    description:
      - The runtime of the model, a record of the registry (V(tf_serving), V(torchserve), V(triton), V(custom_python), V(ollama), V(vllm)).
    type: str
    required: true
  model:
    description:
      - The resolved catalog entry, with its C(name).
    type: dict
    required: true
  knobs:
    description:
      - The runtime's own knobs without the role prefix (V(http_port) for C(triton_http_port)); the record's
        defaults fill in what is missing.
    type: dict
    default: {}
  settings:
    description:
      - The deploy's shared settings - C(namespace) (required), C(service_account_name), C(pod_labels),
        C(pod_annotations), C(service_monitor), C(service_monitor_labels), C(termination_grace_period_seconds),
        C(pre_stop_sleep_seconds), C(progress_deadline_seconds), C(model_fetch_images).
    type: dict
    required: true
  config_files:
    description:
      - The runtime's rendered configuration files, by file name.
    type: dict
    default: {}
  objects:
    description:
      - Build the objects too (else only the server and the scheduling).
    type: bool
    default: false
  replicas:
    description:
      - The Deployment's replicas. Default - the catalog's, or with autoscaling O(current_replicas) kept within the
        HPA's bounds.
    type: int
  current_replicas:
    description:
      - The replicas of the Deployment as it is now (kept when the model autoscales).
    type: int
  configmap_generator:
    description:
      - Name the ConfigMap without the content hash, for a kustomize C(configMapGenerator), which adds it.
    type: bool
    default: false
  service_monitor_api:
    description:
      - Whether the API server serves the Prometheus Operator's ServiceMonitor.
    type: bool
    default: false
attributes:
  action:
    support: full
    description: Runs on the controller.
  check_mode:
    support: full
    description: Nothing changes anywhere; the same result in check mode.
  diff_mode:
    support: none
    description: Nothing changes.
"""

EXAMPLES = r"""
- name: Build the objects of a model
  creativeflow.ai_serving.model_manifests:
    runtime: triton
    model: "{{ catalog.model }}"
    knobs:
      shm_size: 2Gi
    settings:
      namespace: ai-serving
    objects: true
  register: manifests
"""

RETURN = r"""
server:
  description: What the runtime's record makes of the entry and the knobs.
  returned: always
  type: dict
  sample: {"container_name": "triton", "command": ["tritonserver"], "ports": [{"name": "http", "port": 8000}]}
node_selector:
  description: The pod's node selector (the GPU product label and the catalog's node_selector).
  returned: always
  type: dict
tolerations:
  description: The pod's tolerations (the GPU taint's for GPU models, and the catalog's).
  returned: always
  type: list
  elements: dict
configmap_name:
  description: Name of the configuration ConfigMap, empty when the runtime has no configuration files.
  returned: always
  type: str
replicas:
  description: The Deployment's replicas.
  returned: always
  type: int
objects:
  description: The model's objects in apply order.
  returned: when O(objects=true)
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.manifests import ARGUMENT_SPEC


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    module.fail_json(msg="creativeflow.ai_serving.model_manifests runs on the controller as an action plugin; "
                         "this module only documents it")


if __name__ == "__main__":
    main()
