#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_smoke
short_description: Ask a model's Service through the API server's service proxy and judge the answers
version_added: 0.1.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Sends O(requests) to the Service O(service) through the API server's service proxy
    (C(/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH)), so the check works from any controller that reaches
    the API server (a laptop, CI, AWX), not only from inside the cluster network.
  - A health request passes when it answers its status (200). An inference request (a catalog entry's C(smoke)
    field) passes when it answers its status and its JSON answer contains C(expect) (dicts - these keys; lists -
    these items in order; numbers within a relative 1e-6).
  - Each request is retried until it passes or O(timeout) seconds have gone by; a request that still fails fails the
    module with the answer it got.
  - First reads the Service's EndpointSlices and the nodes. When no ready endpoint can answer - none is ready, or
    they are on simulated (kwok) nodes, where no container runs - nothing is sent, and RV(checked=false) with
    RV(reason) says why. It never skips silently.
  - The pure logic (proxy paths, requests, judging an answer) is C(plugins/module_utils/smoke.py); the reads and
    requests are C(plugins/module_utils/smoke_check.py), which the verify step of
    M(creativeflow.ai_serving.model_deploy) runs too.
options:
  namespace:
    description:
      - Namespace of the Service.
    type: str
    required: true
  service:
    description:
      - Name of the Service.
    type: str
    required: true
  requests:
    description:
      - What to ask, in order - the C(smoke_paths) of the runtime's server (health paths, then the catalog entry's
        smoke inference).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description:
          - HTTP path on the server, starting with C(/).
        type: str
        required: true
      port:
        description:
          - Name (or number) of the Service's port.
        type: str
        required: true
      method:
        description:
          - HTTP method.
        type: str
        choices: [GET, POST, PUT]
        default: GET
      body:
        description:
          - JSON request body.
        type: raw
      expect:
        description:
          - JSON the answer must contain.
        type: raw
      status:
        description:
          - HTTP status the answer must have.
        type: int
        default: 200
      inference:
        description:
          - Whether the request is an inference (reported as such).
        type: bool
        default: false
  timeout:
    description:
      - Seconds during which a failing request is asked again before it counts as failed.
    type: int
    default: 60
  request_timeout:
    description:
      - Seconds one request may take.
    type: int
    default: 15
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: The module changes nothing in the cluster; it sends the same requests in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
requirements:
  - python >= 3.8
  - kubernetes >= 24.2.0
  - PyYAML >= 3.11
notes:
  - The user needs C(get) on C(services/proxy) in the namespace, and C(list) on EndpointSlices and Nodes.
  - Belongs to the C(creativeflow.ai_serving.k8s) action group, so C(module_defaults) for
    C(group/creativeflow.ai_serving.k8s) set its connection.
"""

EXAMPLES = r"""
- name: Ask Triton's health paths and a real inference through the Service
  creativeflow.ai_serving.model_smoke:
    namespace: ai-serving
    service: double-triton-cpu
    requests:
      - {path: /v2/health/ready, port: http}
      - path: /v2/models/double/infer
        port: http
        method: POST
        body: {inputs: [{name: INPUT0, shape: [3], datatype: FP32, data: [1, 2, 3.5]}]}
        expect: {outputs: [{name: OUTPUT0, data: [2, 4, 7]}]}
        inference: true
  register: __smoke

- name: Say what was checked
  ansible.builtin.debug:
    msg: "{{ __smoke.summary }}"
"""

RETURN = r"""
checked:
  description: Whether the requests were sent (V(false) when nothing could answer; see RV(reason)).
  returned: success
  type: bool
reason:
  description: Why nothing was sent (empty when RV(checked)).
  returned: success
  type: str
  sample: every ready endpoint is on a simulated (kwok) node (gpu-a100-0), where no container runs
reason_code:
  description: V(no_ready_endpoint) or V(simulated_node) when nothing was sent, else empty.
  returned: success
  type: str
endpoints:
  description: The Service's ready endpoints (address, node, pod).
  returned: success
  type: list
  elements: dict
results:
  description: Each request's last answer - path, port, method, proxy path, status, answer (shortened), passed,
    attempts, message.
  returned: always
  type: list
  elements: dict
summary:
  description: One line saying what was checked and what answered, or why nothing was.
  returned: always
  type: str
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.creativeflow.ai_serving.plugins.module_utils import smoke, smoke_check
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import (
    K8sAccessError,
    K8sModule,
    KubeReader,
    auth_argument_spec,
)


def argspec() -> Dict[str, Any]:
    spec = auth_argument_spec()
    spec.update(
        namespace=dict(type="str", required=True),
        service=dict(type="str", required=True),
        requests=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(
                path=dict(type="str", required=True),
                port=dict(type="str", required=True),
                method=dict(type="str", choices=["GET", "POST", "PUT"], default="GET"),
                body=dict(type="raw"),
                expect=dict(type="raw"),
                status=dict(type="int", default=200),
                inference=dict(type="bool", default=False),
            ),
        ),
        timeout=dict(type="int", default=60),
        request_timeout=dict(type="int", default=15),
    )
    return spec


def run(module: K8sModule) -> Dict[str, Any]:
    """The check of plugins/module_utils/smoke_check.py, which the deploy's verify step runs too."""
    params = module.params
    reader = KubeReader(module)

    def proxy() -> smoke_check.ServiceProxy:
        return smoke_check.ServiceProxy(reader.api_client, params["request_timeout"])

    return smoke_check.check(reader, proxy, params["namespace"], params["service"], params["requests"],
                             params["timeout"])


def main() -> None:
    module = K8sModule(module_class=AnsibleModule, argument_spec=argspec(), supports_check_mode=True)
    try:
        result = run(module)
    except (smoke.SmokeError, K8sAccessError) as exc:
        module.fail_json(msg=str(exc), changed=False)
        return
    if result.get("failed"):
        module.fail_json(**result)
        return
    module.exit_json(**result)


if __name__ == "__main__":
    main()
