#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_catalog
short_description: Validate the AI model catalog and resolve one model for an environment
version_added: 0.1.0
description:
  - Validates the model catalog (the inventory variable C(ai_serving_models)) against its schema and the rules
    a schema cannot express, and fails listing every problem, each naming the model, the path of the field,
    the bad value and what is expected.
  - The catalog is a dict keyed by model name (a DNS-1035 label). Each entry says how to serve the model
    (C(runtime), C(image), C(replicas), C(resources), C(gpu), C(autoscaling), C(pdb), C(strategy), C(env),
    C(env_from_secrets), C(model), C(probes), C(node_selector), C(tolerations), the runtime's own section) and
    may carry per-environment overrides under C(environments).
  - Each entry is also validated with each of its environment overrides merged in, so an override cannot
    break an entry.
  - With O(model), returns that model's entry with the O(environment)'s overrides deep-merged over it
    (dicts merge key by key, lists and scalars replace, V(null) removes a key), C(environments) removed,
    defaults filled in and C(name) added. A model that is not in the catalog fails with the list of known models.
  - The schema, every field and the merge rules are described in C(docs/model_catalog.md) of the collection.
  - Warns (in C(warnings)) about each entry whose update leaves no replica available, computed from its
    C(strategy) and its replica count (C(autoscaling.min_replicas) when autoscaling is enabled) with Kubernetes'
    rounding (C(max_surge) rounds up, C(max_unavailable) down, C(Recreate) stops every pod first). With O(model),
    only that model in O(environment) is checked. C(strategy.downtime=refuse) in an entry makes it an error,
    C(strategy.downtime=accept) silences it for an entry that means it.
  - Refuses C(replicas), C(autoscaling.min_replicas) and C(autoscaling.max_replicas) above 5000.
  - Checks C(strategy.canary) (progressive delivery) - weights from 1 to 100 increasing step by step, pauses that
    are durations, at least one analysis bound, bounds the runtime's metrics can judge, a header rule only with
    C(split=istio) and with a value - see C(docs/model_catalog.md), strategy.canary.
  - Reads nothing but its arguments and changes nothing.
author:
  - creativeflow.ai platform team (@creativeflow-ai)
requirements:
  - jsonschema >= 4.0 (Draft 2020-12 support)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    support: full
    platforms: all
options:
  catalog:
    description:
      - The model catalog, usually V({{ ai_serving_models }}).
      - A dict keyed by model name; see the description for the entries.
    type: dict
    required: true
  model:
    description:
      - Name of the model to resolve, usually V({{ model }}) from C(-e model=NAME).
      - When omitted, only the catalog is validated and RV(model) is not returned.
    type: str
  require_model:
    description:
      - Fail when O(model) is missing, empty or not a string, naming the catalog's models - for playbooks that pass
        V({{ model | default(omit\) }}) from C(-e model=NAME).
    type: bool
    default: false
  environment:
    description:
      - The environment whose overrides (C(environments.<environment>) of the entry) are merged over the entry,
        usually V({{ ai_serving_environment }}).
      - When omitted, the entry is returned as written, without any environment's overrides.
    type: str
    choices: [local, dev, prod]
  overrides:
    description:
      - One cluster's overrides of the entry of O(model) (in an inventory of several clusters, the cluster host's
        C(ai_serving_model_overrides[model])), deep-merged over it after O(environment)'s by the same rules, then
        validated like any entry - a node pool's C(node_selector), a registry mirror's C(image.repository)...
      - C(runtime), C(placement), C(environments) and C(name) cannot be overridden per cluster.
      - Empty or omitted - none.
    type: raw
  cluster:
    description:
      - The cluster whose O(overrides) these are, for messages (usually V({{ inventory_hostname }})).
    type: str
notes:
  - The whole catalog is validated, for every environment, whether or not O(model) is given, so a broken entry
    is caught by whichever model is deployed next.
"""

EXAMPLES = r"""
- name: Validate the catalog and resolve the model to deploy
  creativeflow.ai_serving.model_catalog:
    catalog: "{{ ai_serving_models }}"
    model: "{{ model }}"
    environment: "{{ ai_serving_environment }}"
  register: __catalog

- name: Show the replicas the environment gets
  ansible.builtin.debug:
    msg: "{{ __catalog.model.name }}: {{ __catalog.model.replicas }} replicas of {{ __catalog.model.image.repository }}"

- name: Only validate the catalog (for example in CI)
  creativeflow.ai_serving.model_catalog:
    catalog: "{{ ai_serving_models }}"
"""

RETURN = r"""
models:
  description: The names of the catalog's models, sorted.
  returned: always
  type: list
  elements: str
  sample: [image-classifier, sentiment-analysis, text-generation-gpt, vision-models]
model:
  description:
    - The entry of O(model) with the overrides of O(environment) deep-merged over it, C(environments) removed,
      defaults filled in (C(replicas=1), C(gpu.count=0), C(gpu.resource=nvidia.com/gpu),
      C(autoscaling.enabled=false), C(pdb.enabled=false), C(strategy.type=RollingUpdate),
      C(image.pull_policy=IfNotPresent), C(env={}), C(env_from_secrets=[]), C(model.source=image)) and C(name) set
      to the model's name.
  returned: when O(model) is given
  type: dict
  sample:
    name: image-classifier
    runtime: tf_serving
    image: {repository: registry.creativeflow.ai/models/image-classifier, tag: "1.4.0", pull_policy: IfNotPresent}
    replicas: 3
    resources: {requests: {cpu: "1", memory: 2Gi}, limits: {cpu: "2", memory: 4Gi}}
    gpu: {count: 1, resource: nvidia.com/gpu}
    autoscaling: {enabled: true, min_replicas: 3, max_replicas: 6, target_cpu_utilization: 70}
    pdb: {enabled: true, max_unavailable: 1}
    strategy: {type: RollingUpdate, max_surge: 0, max_unavailable: 1}
    env: {}
    env_from_secrets: []
    model: {source: image}
    tf_serving:
      model_name: image_classifier_model
      model_base_path: /models/image_classifier_model
      version_policy: {type: latest, num_versions: 1}
problems:
  description: On failure, every problem found, one message each.
  returned: failure
  type: list
  elements: str
  sample: ["models.image-classifier.replicas: -1 is less than the minimum of 0"]
known_models:
  description: On failure because O(model) is not in the catalog, the names of the models that are.
  returned: failure
  type: list
  elements: str
  sample: [image-classifier, text-generation-gpt]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.clusters import ClusterError, with_cluster_overrides
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.catalog import (
    ENVIRONMENTS,
    HAS_JSONSCHEMA,
    JSONSCHEMA_IMPORT_ERROR,
    CatalogError,
    UnknownModelError,
    availability_warnings,
    check_catalog,
    model_names,
    resolve_model,
    unnamed_model_message,
)


def argument_spec() -> dict:
    return dict(
        catalog=dict(type="dict", required=True),
        model=dict(type="str"),
        require_model=dict(type="bool", default=False),
        environment=dict(type="str", choices=list(ENVIRONMENTS)),
        overrides=dict(type="raw"),
        cluster=dict(type="str"),
    )


def run(module: AnsibleModule) -> dict:
    """Validate, then resolve; CatalogError propagates to main()."""
    catalog = module.params["catalog"]
    unnamed = unnamed_model_message(module.params["model"], catalog) if module.params["require_model"] else None
    if unnamed:
        module.fail_json(msg=unnamed, changed=False)
    check_catalog(catalog)
    result: dict = dict(changed=False, models=model_names(catalog))
    if module.params["model"] is not None:
        result["model"] = resolve_model(catalog, module.params["model"], module.params["environment"])
        if module.params["overrides"]:
            try:
                result["model"] = with_cluster_overrides(catalog, module.params["model"], module.params["environment"],
                                                         module.params["overrides"],
                                                         module.params["cluster"] or "this cluster")
            except ClusterError as exc:
                module.fail_json(msg=str(exc), problems=exc.problems, changed=False)
    for warning in availability_warnings(catalog, model=module.params["model"], environment=module.params["environment"]):
        module.warn(warning)
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_JSONSCHEMA:
        module.fail_json(msg=missing_required_lib("jsonschema"), exception=JSONSCHEMA_IMPORT_ERROR)
    try:
        module.exit_json(**run(module))
    except UnknownModelError as exc:
        module.fail_json(msg=str(exc), problems=exc.problems, known_models=exc.known, changed=False)
    except CatalogError as exc:
        module.fail_json(msg=str(exc), problems=exc.problems, changed=False)


if __name__ == "__main__":
    main()
