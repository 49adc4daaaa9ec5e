#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_connection
short_description: Check the inventory's kubeconfig path and context before anything reaches for the cluster
version_added: 0.2.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Runs on the controller (an action plugin; this module is its documentation), first in every playbook of the
    collection, once per cluster host.
  - Fails, naming the variable, the value and the fix, when O(kubeconfig) is not a path to a regular file (with the
    path after C(~) expansion), or when O(context) is not one of that kubeconfig's contexts (listing those it has).
    Without such a check the Kubernetes client reports only the file's basename.
  - An inline kubeconfig (a dict), an unset one (K8S_AUTH_KUBECONFIG, C(~/.kube/config)) and the context of either
    are left to the Kubernetes client.
  - Changes nothing.
options:
  kubeconfig:
    description:
      - The inventory's C(ai_serving_kubeconfig) - a path, an inline kubeconfig, or unset.
    type: raw
  context:
    description:
      - The inventory's C(ai_serving_context); checked against the contexts of O(kubeconfig) when it is a file.
    type: str
attributes:
  action:
    support: full
    description: Runs on the controller.
  check_mode:
    support: full
    description: Reads the kubeconfig only.
  diff_mode:
    support: none
    description: Changes nothing.
seealso:
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: Check the kubeconfig path and the context
  creativeflow.ai_serving.cluster_connection:
    kubeconfig: "{{ ai_serving_kubeconfig | default(omit) }}"
    context: "{{ ai_serving_context | default(omit) }}"
"""

RETURN = r"""
msg:
  description: What is wrong and how to fix it.
  returned: failure
  type: str
  sample: The kubeconfig file '/etc/kube/prod' (ai_serving_kubeconfig) does not exist. Point ai_serving_kubeconfig ...
"""
