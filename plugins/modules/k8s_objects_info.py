#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_objects_info
short_description: Read several Kubernetes objects of different kinds in one task
version_added: 0.1.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Reads each object (by name) or list (by label selector) of O(objects) with one client, in one module run, and
    returns them under the key each was asked under - what a loop of C(kubernetes.core.k8s_info) tasks would, at
    the cost of one task instead of one per object.
  - An object that does not exist gives an empty list. A kind the API server does not serve (a CRD that is not
    installed, such as the Prometheus Operator's ServiceMonitor) gives an empty list and V(false) in RV(api_found),
    not an error.
  - With O(objects[].metadata_only=true) only the metadata comes back, never the object's data, so Secrets can be
    looked up for existence without their values passing through the task's result.
  - Used by the runtime roles' preflight to see what exists before a deploy.
options:
  objects:
    description:
      - What to read.
    type: list
    elements: dict
    required: true
    suboptions:
      key:
        description:
          - Name of the entry in RV(resources) and RV(api_found). Unique.
        type: str
        required: true
      api_version:
        description:
          - API version of the kind, such as V(v1) or V(apps/v1).
        type: str
        default: v1
      kind:
        description:
          - Kind, such as V(Deployment).
        type: str
        required: true
      name:
        description:
          - Name of the object. Without it, every object of the kind (in O(objects[].namespace)) matching
            O(objects[].label_selectors).
        type: str
      namespace:
        description:
          - Namespace, for namespaced kinds.
        type: str
      label_selectors:
        description:
          - Label selectors (C(key=value), C(key!=value)...), all of which must match. Only without O(objects[].name).
        type: list
        elements: str
        default: []
      metadata_only:
        description:
          - Return only C(apiVersion), C(kind) and the C(name), C(namespace), C(uid), C(resourceVersion),
            C(creationTimestamp) and C(labels) of each object's metadata - no data and no annotations (C(kubectl
            apply) keeps a Secret's values in an annotation).
        type: bool
        default: false
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
  - Takes the same connection options as C(kubernetes.core.k8s_info), and belongs to the
    C(creativeflow.ai_serving.k8s) action group, so C(module_defaults) for C(group/creativeflow.ai_serving.k8s) set
    them.
"""

EXAMPLES = r"""
- name: Read the namespace, the Deployment, and the model's ConfigMaps
  creativeflow.ai_serving.k8s_objects_info:
    objects:
      - {key: namespace, kind: Namespace, name: ai-serving}
      - {key: deployment, api_version: apps/v1, kind: Deployment, name: image-classifier, namespace: ai-serving}
      - key: configmaps
        kind: ConfigMap
        namespace: ai-serving
        label_selectors:
          - creativeflow.ai/model-name=image-classifier
      - {key: service_monitor, api_version: monitoring.coreos.com/v1, kind: ServiceMonitor, name: image-classifier,
         namespace: ai-serving}
      - {key: secret, kind: Secret, name: api-keys, namespace: ai-serving, metadata_only: true}
  register: __state

- name: Use them
  ansible.builtin.debug:
    msg: >-
      Deployment exists: {{ __state.resources.deployment | length > 0 }};
      ServiceMonitor API served: {{ __state.api_found.service_monitor }}
"""

RETURN = r"""
resources:
  description: For each O(objects[].key), the objects found (an empty list when there is none).
  returned: success
  type: dict
  sample:
    deployment: [{apiVersion: apps/v1, kind: Deployment, metadata: {name: image-classifier}}]
    service_monitor: []
api_found:
  description: For each O(objects[].key), whether the API server serves that kind.
  returned: success
  type: dict
  sample: {deployment: true, service_monitor: false}
"""

from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import (
    K8sAccessError,
    K8sModule,
    KubeReader,
    auth_argument_spec,
)

_METADATA_FIELDS = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "labels")


def argspec() -> Dict[str, Any]:
    spec = auth_argument_spec()
    spec.update(
        objects=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(
                key=dict(type="str", required=True, no_log=False),
                api_version=dict(type="str", default="v1"),
                kind=dict(type="str", required=True),
                name=dict(type="str"),
                namespace=dict(type="str"),
                label_selectors=dict(type="list", elements="str", default=[]),
                metadata_only=dict(type="bool", default=False),
            ),
        ),
    )
    return spec


def check_objects(objects: List[Dict[str, Any]]) -> None:
    """Refuse duplicate keys and selectors given with a name (ValueError with the fix)."""
    seen = set()
    for item in objects:
        if item["key"] in seen:
            raise ValueError("objects: key '{0}' is used twice; give every object its own key".format(item["key"]))
        seen.add(item["key"])
        if item.get("name") and item.get("label_selectors"):
            raise ValueError("objects[{0}]: label_selectors apply to lists; remove them or the name".format(
                item["key"]))


def metadata_only(obj: Dict[str, Any]) -> Dict[str, Any]:
    """The object's identity and labels: no data, and no annotations (kubectl's last-applied-configuration
    annotation holds a Secret's values)."""
    metadata = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: metadata[k] for k in _METADATA_FIELDS if k in metadata},
    }


def read_objects(reader: KubeReader, objects: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    resources: Dict[str, Any] = {}
    api_found: Dict[str, bool] = {}
    for item in objects:
        key, kind, api_version = item["key"], item["kind"], item["api_version"]
        api_found[key] = reader.serves(kind, api_version)
        if not api_found[key]:
            resources[key] = []
        elif item.get("name"):
            found = reader.get(kind, item["name"], namespace=item.get("namespace"), api_version=api_version)
            resources[key] = [found] if found is not None else []
        else:
            resources[key] = reader.list(kind, api_version=api_version, namespace=item.get("namespace"),
                                         label_selector=",".join(item.get("label_selectors") or []) or None)
        if item.get("metadata_only"):
            resources[key] = [metadata_only(obj) for obj in resources[key]]
    return {"resources": resources, "api_found": api_found}


def main() -> None:
    module = K8sModule(module_class=AnsibleModule, argument_spec=argspec(), supports_check_mode=True)
    objects = module.params["objects"]
    try:
        check_objects(objects)
        result = read_objects(KubeReader(module), objects)
    except (ValueError, K8sAccessError) as exc:
        module.fail_json(msg=str(exc), changed=False)
        return
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
