#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_status
short_description: Wait for a Deployment's rollout, say why it fails, and undo it to an earlier revision
version_added: 0.1.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Waits until the newest pod template of a Deployment is rolled out (every replica updated and available, no old
    replica left), as C(kubectl rollout status) does, and fails when it is not by O(timeout).
  - When the rollout fails, reads the pods of the newest ReplicaSet, the ReplicaSet's and the Deployment's conditions
    and the namespace's events, and fails with the reasons the new version is not available, each naming the pods
    and what to do, in RV(reasons) and RV(msg) - C(Unschedulable), C(ImagePullBackOff), C(CrashLoopBackOff),
    C(CreateContainerConfigError), a failing readiness or startup probe (C(NotReady), C(NotStarted)), pods
    refused by quota, Pod Security or LimitRange (C(FailedCreate)), C(ProgressDeadlineExceeded).
  - A reason that waiting does not cure (C(CrashLoopBackOff), C(ImagePullBackOff), C(FailedCreate)...) ends the wait
    once it has lasted O(fail_fast) seconds, instead of waiting for the whole O(timeout).
  - With O(undo=true), first puts back the pod template of an earlier revision (the newest one older than the current
    by default, as C(kubectl rollout undo) does, or O(to_revision)), and optionally O(replicas), then waits for that
    rollout. The Deployment is changed with server-side apply under O(field_manager), so the fields stay owned by the
    same manager as a normal deploy and a later apply removes what the restored template had and the new one has not.
  - Written for the roles of this collection (deploy, automatic rollback, C(rollback_model.yml)); it works on any
    Deployment.
options:
  namespace:
    description:
      - Namespace of the Deployment.
    type: str
    required: true
  name:
    description:
      - Name of the Deployment.
    type: str
    required: true
  wait:
    description:
      - Wait for the rollout to complete. V(false) only reports its state (and undoes it with O(undo=true)).
      - Never waits in check mode.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the rollout before it counts as failed.
    type: int
    default: 600
  fail_fast:
    description:
      - Seconds a reason that waiting does not cure (see the description) may last before the rollout counts as
        failed without waiting for O(timeout). V(0) always waits for O(timeout).
    type: int
    default: 30
  poll_interval:
    description:
      - Seconds between two looks at the Deployment while waiting (at least 1). The first looks come sooner (after
        0.25, 0.5, 1 s...), so a rollout that is about done is seen at once.
    type: int
    default: 2
  undo:
    description:
      - Before waiting, put back the pod template of an earlier revision of the Deployment (see O(to_revision)).
      - Nothing changes when the Deployment already runs that template and O(replicas) (when given) already matches.
    type: bool
    default: false
  to_revision:
    description:
      - With O(undo=true), the revision (the C(deployment.kubernetes.io/revision) of one of its ReplicaSets) to put
        back. Default, the newest revision older than the current one.
      - The current revision is accepted too; with O(replicas) that restores only the replica count.
    type: int
  to_last_good:
    description:
      - With O(undo=true) and no O(to_revision), put back the last known good version the deploy recorded (the
        Deployment's C(creativeflow.ai/last-good) annotation, found by its template hash) when the Deployment runs
        another template, for example in the middle of a failed rollout. When it already runs the last good version,
        or nothing was recorded, the default applies (the newest revision older than the current one).
    type: bool
    default: false
  replicas:
    description:
      - With O(undo=true), also set C(spec.replicas), for example back to the count before a failed deploy.
    type: int
  definition:
    description:
      - With O(undo=true), the Deployment as this field manager last applied it (the apply configuration, not the
        object read back). Its C(spec.template) is replaced by the earlier revision's and it is applied as is, so the
        manager keeps owning exactly the fields it owned.
      - Default, built from the live Deployment (its labels, annotations and spec).
    type: dict
  field_manager:
    description:
      - Field manager of the server-side apply that undoes the rollout.
    type: str
    default: creativeflow-ai-serving
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: With O(undo=true) the change is a server-side dry run; the module never waits in check mode.
  diff_mode:
    support: none
    description: The undo reports the revision it puts back, not a diff.
requirements:
  - python >= 3.8
  - kubernetes >= 24.2.0
notes:
  - The user needs get/list on deployments, replicasets, pods and events in O(namespace), and patch on deployments
    for O(undo=true).
  - kubernetes.core.k8s_rollback picks the revision numbered one less than the current one, which is not the
    previous version after an earlier rollback, and replaces all of the Deployment's annotations; this module picks
    by revision order and keeps them.
seealso:
  - module: kubernetes.core.k8s_rollback
  - name: Deployment status
    description: How Kubernetes reports a rollout's progress and failure.
    link: https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#deployment-status
"""

EXAMPLES = r"""
- name: Wait for the model server's rollout (fails with the reasons when it does not complete)
  creativeflow.ai_serving.rollout_status:
    namespace: ai-serving
    name: image-classifier
    timeout: 900
  register: __rollout

- name: Undo the last rollout and wait until the previous version is available again
  creativeflow.ai_serving.rollout_status:
    namespace: ai-serving
    name: image-classifier
    undo: true

- name: Go back to revision 3 with 2 replicas, without waiting
  creativeflow.ai_serving.rollout_status:
    namespace: ai-serving
    name: image-classifier
    undo: true
    to_revision: 3
    replicas: 2
    wait: false

- name: Only report where the rollout stands
  creativeflow.ai_serving.rollout_status:
    namespace: ai-serving
    name: image-classifier
    wait: false
  register: __state
"""

RETURN = r"""
changed:
  description: Whether O(undo=true) changed the Deployment.
  returned: always
  type: bool
  sample: true
msg:
  description: Where the rollout stands; on failure, why, with what to do.
  returned: always
  type: str
  sample: >-
    Deployment image-classifier did not roll out within 600s (0 of 1 updated replicas available): CrashLoopBackOff
    (container tf-serving) in 1 pod (image-classifier-5d9c7b7f6-x2x9q): back-off 5m0s restarting failed container;
    the server exits soon after it starts; read its log with 'kubectl logs ... --previous'
complete:
  description: Whether the newest template is rolled out.
  returned: always
  type: bool
  sample: false
state:
  description: The rollout's numbers, as the Deployment's status gives them.
  returned: when the Deployment exists
  type: dict
  contains:
    complete:
      description: Same as RV(complete).
      type: bool
    failed:
      description: Whether the Deployment reports C(ProgressDeadlineExceeded).
      type: bool
    message:
      description: The state in words.
      type: str
    desired:
      description: C(spec.replicas).
      type: int
    updated:
      description: Replicas running the newest template.
      type: int
    ready:
      description: Ready replicas.
      type: int
    available:
      description: Available replicas.
      type: int
    total:
      description: All replicas, old ones included.
      type: int
    observed:
      description: Whether the controller has seen the current generation.
      type: bool
    revision:
      description: The Deployment's current revision.
      type: int
reasons:
  description: Why the newest revision is not available (empty when it is).
  returned: always
  type: list
  elements: dict
  contains:
    reason:
      description: C(Unschedulable), C(ImagePullBackOff), C(CrashLoopBackOff), C(NotReady), C(FailedCreate)...
      type: str
    message:
      description: What the status, condition or event says.
      type: str
    container:
      description: The container concerned, or V(null).
      type: str
    init_container:
      description: Whether RV(reasons[].container) is an init container.
      type: bool
    pods:
      description: The pods that show it.
      type: list
      elements: str
    hard:
      description: Whether waiting does not cure it.
      type: bool
    hint:
      description: What to do about it.
      type: str
  sample:
    - reason: ImagePullBackOff
      message: Back-off pulling image "registry.example.com/models/x:1.0"
      container: tf-serving
      init_container: false
      pods: [image-classifier-5d9c7b7f6-x2x9q]
      hard: true
      hint: "the image cannot be pulled: check image.repository and image.tag ..."
revision:
  description: The Deployment's revision at the end.
  returned: when the Deployment exists
  type: int
  sample: 4
undone_to_revision:
  description: With O(undo=true), the revision whose template was put back.
  returned: when O(undo=true)
  type: int
  sample: 2
last_good:
  description: With O(to_last_good=true), the recorded last good version put back (C(template_hash), C(revision) when
    recorded, C(time), C(run)); empty when the default revision was used.
  returned: when O(undo=true)
  type: dict
replicaset_configmaps:
  description: The ConfigMaps the pod templates of the Deployment and of all its ReplicaSets refer to (those a
    rollback may need; the others can be deleted).
  returned: when the Deployment exists
  type: list
  elements: str
  sample: [image-classifier-config-5f1e0c2a9b]
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import (
    K8sAccessError,
    K8sModule,
    auth_argument_spec,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout import RolloutError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import Rollout, RolloutClient


def argspec() -> Dict[str, Any]:
    spec = auth_argument_spec()
    spec.update(
        namespace=dict(type="str", required=True),
        name=dict(type="str", required=True),
        wait=dict(type="bool", default=True),
        timeout=dict(type="int", default=600),
        fail_fast=dict(type="int", default=30),
        poll_interval=dict(type="int", default=2),
        undo=dict(type="bool", default=False),
        to_revision=dict(type="int"),
        to_last_good=dict(type="bool", default=False),
        replicas=dict(type="int"),
        definition=dict(type="dict"),
        field_manager=dict(type="str", default="creativeflow-ai-serving"),
    )
    return spec


def main() -> None:
    module = K8sModule(module_class=AnsibleModule, argument_spec=argspec(), supports_check_mode=True)
    try:
        client = RolloutClient(module)
        result = Rollout(module.params, client, module.check_mode).run()
    except (RolloutError, K8sAccessError) as exc:
        module.fail_json(msg=str(exc), changed=False)
        return
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
