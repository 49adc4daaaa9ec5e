#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_summary
short_description: One row per cluster at the end of a multi-cluster run, and the run's failure
version_added: 0.2.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Runs on the controller (an action plugin; this module is its documentation), once per run (C(run_once)), in the
    last play of the collection's playbooks.
  - Prints a table with one row per cluster of the run - the cluster, its label, the result (V(changed), V(ok),
    V(done) when the run cannot tell, V(failed), V(skipped) by the placement, V(not started) because an earlier
    wave failed), the version it runs after a success, and the detail (the failure's reason, why it was skipped).
  - Fails, naming each cluster that failed with its reason and the clusters left as they were, when a cluster
    failed; the playbooks record a cluster's failure instead of stopping there, so the other clusters of its wave
    finish and the summary is always printed.
  - Changes nothing.
options:
  what:
    description:
      - What the run did, for the title and the failure, e.g. V(deploy of image-classifier).
    type: str
    required: true
  placement:
    description:
      - The registered result of M(creativeflow.ai_serving.cluster_placement).
    type: dict
    required: true
  result_var:
    description:
      - The host variable holding each cluster's result, C({failed, changed, msg, version}); a target without it did
        not start.
    type: str
    required: true
  version:
    description:
      - The version a cluster that succeeded runs (the image tag), unless its result names one.
    type: str
    default: ""
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
  - module: creativeflow.ai_serving.cluster_placement
"""

EXAMPLES = r"""
- name: Summary, one row per cluster
  creativeflow.ai_serving.cluster_summary:
    what: deploy of {{ model }}
    placement: "{{ placement }}"
    result_var: deploy_result
    version: "1.4.0"
  run_once: true
"""

RETURN = r"""
rows:
  description: One row per cluster - C(cluster), C(label) (empty when it is the name), C(result), C(version),
    C(detail); returned when no cluster failed (the table is printed either way).
  returned: success
  type: list
  elements: dict
  sample: [{cluster: eu-1, label: eu-west, result: changed, version: 1.4.0, detail: ""}]
"""
