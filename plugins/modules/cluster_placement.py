#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_placement
short_description: The clusters of a multi-cluster run, where a model goes, and the waves
version_added: 0.2.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Runs on the controller (an action plugin; this module is its documentation), once per run (C(run_once)), in the
    first play of the collection's playbooks, after every cluster's own checks.
  - A host of the inventory is a cluster. The run's clusters are the play's hosts (C(ai_serving_clusters), or the
    inventory narrowed by C(--limit)), each with its connection in its host variables - C(ai_serving_kubeconfig) and
    C(ai_serving_context), or C(ai_serving_host) and C(ai_serving_api_key) - and optionally
    C(ai_serving_cluster_label) (shown in the summary) and C(ai_serving_cluster_preference) (a whole number, lower
    first; clusters without one come after, in inventory order). An inventory whose only host is C(localhost) is
    one cluster whose connection may come from the defaults, as before.
  - Refuses, before anything is applied, naming the host and the fix - a host that failed its own checks earlier in
    the play, a cluster host without a connection, two hosts that reach the same cluster, clusters of several
    C(ai_serving_environment)s in one run, a placement naming a cluster the run does not have, a placement C(fit)
    above the number of clusters, and C(ai_serving_waves) that are not waves.
  - "Placement (the catalog entry's C(placement)): V(all) (default) - every cluster; C({clusters: [names]}) - those;
    C({fit: N}) - from each cluster's preflight (O(preflight_var)), first the clusters where the model runs already
    and still fits (it stays: no flapping), then the others where it fits, in order of preference, up to N. Fewer
    than N fit - a warning; none - a failure with each cluster's reason."
  - With O(require_all), a preflight that failed on any cluster (for C(fit), a cluster that cannot be reached)
    stops the run before anything is applied.
  - Changes nothing.
options:
  model:
    description:
      - The model's name, for messages.
    type: str
  placement:
    description:
      - The catalog entry's C(placement) after its environment's overrides; V(all) when omitted.
    type: raw
  waves:
    description:
      - C(-e ai_serving_waves), such as V(1,rest) or V(1,30%,rest) - numbers of clusters, percentages of them, or
        V(rest) (every cluster left; last). The last wave repeats, as with C(serial). Omitted - one wave.
    type: raw
  require_all:
    description:
      - Stop the run before anything is applied when the preflight failed on a cluster (C(ai_serving_require_all_clusters)).
    type: bool
    default: false
  preflight_var:
    description:
      - The host variable that holds each cluster's preflight, C({fits, runs, msg}).
    type: str
    default: __ai_serving_preflight
  where_runs:
    description:
      - Target the clusters whose O(preflight_var) says the model runs there (C(runs)), whatever the placement - a
        rollback of a model placed by GPU fit. None - a failure (nothing to roll back).
    type: bool
    default: false
attributes:
  action:
    support: full
    description: Runs on the controller.
  check_mode:
    support: full
    description: Reads variables only.
  diff_mode:
    support: none
    description: Changes nothing.
seealso:
  - module: creativeflow.ai_serving.cluster_summary
notes:
  - docs/deploy_model.md of the collection, section "Several clusters", describes the inventory and the playbooks.
"""

EXAMPLES = r"""
- name: Check the clusters and place the model
  creativeflow.ai_serving.cluster_placement:
    model: "{{ catalog.model.name }}"
    placement: "{{ catalog.model.placement | default('all') }}"
    waves: "{{ ai_serving_waves | default(omit) }}"
  run_once: true
  register: placement

- name: The targets, in order of preference
  ansible.builtin.add_host:
    name: "{{ item }}"
    groups: targets
  loop: "{{ placement.targets }}"
  run_once: true
  changed_when: false
"""

RETURN = r"""
clusters:
  description: The run's clusters in order of preference.
  returned: success
  type: list
  elements: dict
  sample: [{name: eu-1, label: eu-west, preference: 1}, {name: us-1, label: us-1, preference: 100}]
targets:
  description: The clusters the model goes to, in order of preference.
  returned: success
  type: list
  elements: str
  sample: [us-1]
skipped:
  description: Each other cluster and why it is skipped.
  returned: success
  type: dict
  sample: {eu-1: "does not fit: GPU preflight for m in namespace ai-serving: ..."}
notes:
  description: What the operator should know, also shown as warnings (fewer clusters fit than C(fit) asks).
  returned: success
  type: list
  elements: str
placement:
  description: The placement as understood - C(kind) (all, clusters, fit), C(clusters), C(fit).
  returned: success
  type: dict
preflight:
  description: Each checked cluster's preflight - C(fits), C(runs) (the model's Deployment exists there), C(reason).
  returned: success
  type: dict
waves:
  description: The waves as Ansible's C(serial) list (V(rest) is V(100%)); empty for one wave.
  returned: success
  type: list
  sample: [1, "100%"]
batches:
  description: The targets of each wave, in order.
  returned: success
  type: list
  elements: list
  sample: [[eu-1], [us-1, ap-1]]
"""
