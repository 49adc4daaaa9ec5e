#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_deploy
short_description: Deploy a model in one run - preflight, render, dry run, apply, rollout wait, rollback, verify
version_added: 0.1.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Runs on the controller (an action plugin; this module is its documentation), importing the Kubernetes client once
    (built by kubernetes.core's C(get_api_client), with kubernetes.core's connection options).
  - B(Preflight) - validates the catalog entry (as M(creativeflow.ai_serving.model_catalog) does), the namespace name,
    pod labels, annotation keys and timing knobs; reads the namespace, the model's objects as they are (the rollback's
    snapshot) and the Secrets and claim the pods refer to; works out the replicas (with autoscaling, the current count
    within the HorizontalPodAutoscaler's bounds); checks that the GPUs fit (the check of
    M(creativeflow.ai_serving.gpu_capacity_check), in the same process); builds the objects
    (C(plugins/module_utils/manifests.py)).
  - B(Apply) - a server-side dry run of every object (a Pod Security warning stops the run), then a server-side apply
    of each (field manager O(field_manager), conflicts forced), then removes the HorizontalPodAutoscaler,
    PodDisruptionBudget and ServiceMonitor the model no longer has, and waits for the rollout as
    M(creativeflow.ai_serving.rollout_status) does (failing fast on reasons waiting does not cure).
  - B(Rollback) - when the rollout fails, puts the previous revision's pod template back and waits for it, puts the
    other objects back as they were and removes what the run added (everything, on a first deploy), then fails with
    the reason read from the pods and what the rollback did.
  - B(Verify) - after a completed rollout (O(verify)) - waits until the Service has ready endpoints (its
    EndpointSlices), then asks the runtime's health paths and the catalog entry's C(smoke) inference through the
    API server's service proxy, as M(creativeflow.ai_serving.model_smoke) does (O(smoke_check); where every ready
    endpoint is on a simulated node, nothing is sent and the step says why); a wrong answer fails the task, the
    rollout stays. Before the smoke requests, when the runtime's record lists what its server must hold (Ollama's
    C(ollama.models)), each ready pod is asked through the API server's pod proxy and pulls what it lacks, bounded per
    item, failing with the server's answer when one cannot be had. Then deletes the model's configuration ConfigMaps
    that no ReplicaSet refers to any more.
  - B(Safety) - outside check mode the run holds the C(coordination.k8s.io/v1) Lease C(ai-serving-deploy-<model>) in
    the model's namespace from before the cluster is read to its end (renewed while it works; the apply phase checks
    it still holds it); another run waits up to O(lock_wait) seconds, then fails naming the holder and since when. A
    Lease its holder stopped renewing (a killed run) expires and is taken over, which the run says.
  - A completed rollout is recorded on the Deployment as the last known good version (annotation
    C(creativeflow.ai/last-good) - template hash, revision, time, run); every rollback targets it. A run that finds the
    Deployment in the middle of a failed or interrupted rollout puts the last good version back first, unless
    O(continue_forward=true).
  - An API server that does not answer is retried with backoff for up to O(api_retry_seconds); then the run fails
    naming the server, the step and whether a rollback is still owed. SIGINT or SIGTERM during the apply or the wait
    makes the run finish the rollback it owes (at most 120 seconds) before it stops, and say what it left.
  - B(Canary) - a model with C(strategy.canary) whose new version changes its pods runs the canary instead of one
    rolling update - per step the Deployment C(<model>-canary) with the step's pods beside the stable one (split
    C(replicas) scales the stable one through its scale subresource; splits C(gateway) and C(istio) keep it and apply
    the step's HTTPRoute backend weights, or VirtualService weights with the A/B header rule), each version's pods'
    metrics read through the API server's pod proxy every C(analysis.interval) and judged, one line per check
    (RV(canary_checks)); a broken bound removes the canary (routes first), gives the stable version its replicas back
    and fails; after the last step the stable Deployment takes the new version and the canary goes. A canary a run
    left is continued, replaced or removed; O(canary_action) promotes or aborts it by hand (C(docs/deploy_model.md),
    Canary).
  - Prints one line per step with its duration, and returns them in RV(steps).
  - The runtime roles' internal role C(_common) calls it once with O(phase=all) and O(stop_for_build=true); only
    when an image is to be built (RV(build_pending)) does it stop before the apply, and the role builds the image,
    then calls it again with O(phase=apply) and the first call's RV(plan).
options:
  phase:
    description:
      - V(preflight) stops after the render and returns RV(plan); V(apply) takes O(plan) (or runs the preflight first
        when it is not given); V(all) does both.
    type: str
    choices: [preflight, apply, all]
    default: all
  runtime:
    description:
      - The runtime of the model, a record of C(plugins/module_utils/runtimes.py); also the prefix of its own variables
        in messages (V(triton) names C(triton_run_as_user)); the shared knobs are named C(ai_serving_<knob>).
    type: str
    required: true
  model:
    description:
      - The model's catalog entry with its C(name), as M(creativeflow.ai_serving.model_catalog) returns it.
    type: dict
    required: true
  knobs:
    description:
      - The runtime's own knobs without the role prefix, handed to its record.
    type: dict
    default: {}
  settings:
    description:
      - The deploy's shared settings, as M(creativeflow.ai_serving.model_manifests) takes them - C(namespace)
        (required), C(service_account_name), C(pod_labels), C(pod_annotations), C(service_monitor),
        C(service_monitor_labels), C(termination_grace_period_seconds), C(pre_stop_sleep_seconds),
        C(progress_deadline_seconds), C(model_fetch_images).
    type: dict
    required: true
  config_files:
    description:
      - The runtime's rendered configuration files, by file name (a ConfigMap named after their content hash).
    type: dict
    default: {}
  gpu_preflight:
    description:
      - Check that the GPUs fit quota and nodes, rollout surge included, before anything is applied.
    type: bool
    default: true
  rollout_timeout:
    description:
      - Seconds to wait for the rollout (and for the rollback's).
    type: int
    default: 600
  rollout_fail_fast:
    description:
      - Seconds a reason that waiting does not cure may last before the rollout counts as failed; V(0) waits for
        O(rollout_timeout).
    type: int
    default: 30
  rollback_on_failure:
    description:
      - Put the previous version back when the rollout fails.
    type: bool
    default: true
  image_build:
    description:
      - Whether an C(image.build) section of the entry is built; then the preflight checks the build context
        (relative to the directory above the playbook's) and the C(build) key of RV(plan) is V(true).
    type: bool
    default: true
  plan:
    description:
      - With O(phase=apply), the RV(plan) an earlier O(phase=preflight) (or stopped O(phase=all)) call returned.
    type: dict
  stop_for_build:
    description:
      - With O(phase=all), stop after the preflight when the entry's image is to be built (the C(build) key of
        RV(plan), never in check mode), and say so in RV(build_pending); the caller builds it, then calls
        O(phase=apply) with RV(plan).
      - V(false) applies without stopping (the image is deployed as it is).
    type: bool
    default: false
  verify:
    description:
      - After a completed rollout, run the verify steps (the Service's endpoints and the smoke requests, per
        O(smoke_check); the removal of the ConfigMaps no revision refers to). Not in check mode.
    type: bool
    default: true
  smoke_check:
    description:
      - Within O(verify), wait for the Service's ready endpoints and send the smoke requests (the runtime's health
        paths, the catalog entry's C(smoke) inference). Skipped when the model has no replicas.
    type: bool
    default: true
  smoke_timeout:
    description:
      - Seconds during which a failing smoke request is asked again before it counts as failed.
    type: int
    default: 60
  field_manager:
    description:
      - Field manager of every server-side apply.
    type: str
    default: creativeflow-ai-serving
  api_retry_seconds:
    description:
      - Seconds every call to an API server that does not answer is retried, with backoff, before the run fails;
        V(0) fails at once. The knob C(ai_serving_api_retry_seconds).
    type: int
    default: 60
  lock_wait:
    description:
      - Seconds to wait for the model's Lease when another run holds it; V(0) fails at once, naming the holder.
    type: int
    default: 0
  continue_forward:
    description:
      - When the Deployment is in the middle of a failed or interrupted rollout, deploy over it instead of putting the
        last good version back first.
    type: bool
    default: false
  canary_action:
    description:
      - For a model with C(strategy.canary) and a canary left in the cluster (an interrupted run) - V(none) continues
        its steps (or starts them); V(promote) promotes it now, skipping the steps left; V(abort) removes it and gives
        the stable Deployment its replicas back, applying nothing else. V(promote) and V(abort) fail when no canary
        of this version runs.
    type: str
    choices: [none, promote, abort]
    default: none
  canary_prometheus_url:
    description:
      - For a model with C(strategy.canary.analysis.metrics=prometheus) - the URL of the Prometheus the analysis
        queries (one instant query per check of each version's pods' series, by their C(namespace) and C(pod)
        labels), instead of reading the pods through the API server. Empty - such a canary is refused. Before the
        first step the URL must answer the query C(vector(1)), or the canary is not started.
    type: str
    default: ""
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  action:
    support: full
    description: Runs on the controller.
  check_mode:
    support: full
    description: The reads run; the apply and the removals are server-side dry runs; nothing waits or rolls back.
  diff_mode:
    support: full
    description: Each object's before and after (managedFields hidden), also in check mode.
notes:
  - C(changed) comes from the API server - a server-side apply that changes nothing keeps the object's
    C(resourceVersion); a dry run is compared by content.
  - The user needs get/list on the namespace, the model's objects, Secrets, claims, nodes, pods, quotas, replicasets and
    events, and patch/delete on the model's objects.
seealso:
  - module: creativeflow.ai_serving.model_manifests
  - module: creativeflow.ai_serving.gpu_capacity_check
  - module: creativeflow.ai_serving.rollout_status
  - module: creativeflow.ai_serving.model_smoke
"""

EXAMPLES = r"""
- name: Deploy a model resolved from the catalog
  creativeflow.ai_serving.model_deploy:
    runtime: triton
    model: "{{ catalog.model }}"
    settings:
      namespace: ai-serving
    rollout_timeout: 900
  register: deploy

- name: Deploy, building the image first when the entry asks for one
  creativeflow.ai_serving.model_deploy:
    runtime: triton
    model: "{{ catalog.model }}"
    settings:
      namespace: ai-serving
    stop_for_build: true
  register: deploy

- name: After building the image (your build tasks here), apply the plan the first call returned
  creativeflow.ai_serving.model_deploy:
    phase: apply
    plan: "{{ deploy.plan }}"
    runtime: triton
    model: "{{ catalog.model }}"
    settings:
      namespace: ai-serving
  when: deploy.build_pending

- name: Only the preflight (nothing is applied)
  creativeflow.ai_serving.model_deploy:
    phase: preflight
    runtime: triton
    model: "{{ catalog.model }}"
    settings:
      namespace: ai-serving
  register: preflight
"""

RETURN = r"""
steps:
  description: The steps run, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The step, e.g. C(Preflight | Cluster), C(Apply | Every object of the model).
      type: str
    seconds:
      description: How long it took.
      type: float
    changed:
      description: Whether it changed something.
      type: bool
    msg:
      description: What it found or did.
      type: str
  sample: [{"name": "Preflight | Cluster", "seconds": 0.08, "changed": false, "msg": "first deploy of triton"}]
plan:
  description:
    - What the preflight worked out - C(name), C(namespace), C(model) (the validated entry with the catalog's
      defaults), C(server) (as M(creativeflow.ai_serving.model_manifests) returns it), C(image), C(build),
      C(node_selector), C(tolerations), C(replicas), C(snapshot) (the model's objects as they were, by key, and
      C(configmaps)), C(gpu_fit), C(configmap_name), C(objects) (in apply order), C(absent) (to remove),
      C(lock) (the Lease this run holds - C(identity), C(run), C(namespace) - outside check mode) and C(last_good)
      (the recorded last good version and where the Deployment stands against it).
  returned: success
  type: dict
build_pending:
  description: Whether the call stopped before the apply because the image is to be built (O(stop_for_build)).
  returned: success
  type: bool
rollout:
  description: The rollout's outcome, as M(creativeflow.ai_serving.rollout_status) returns it.
  returned: with O(phase=apply) or O(phase=all) when it applied, not in check mode
  type: dict
verify:
  description:
    - What the verify steps found - C(smoke) (as M(creativeflow.ai_serving.model_smoke) returns it, V(null) when
      not run), C(ensure) (what each pod holds, C(present), and what was pulled, C(fetched), per pod; when the runtime
      has such a step) and C(deleted_configmaps).
  returned: when the verify steps ran
  type: dict
canary_checks:
  description:
    - Every check of a canary's steps (C(strategy.canary)) - C(step), C(weight), C(seconds) into the step, C(status)
      (pass, fail, inconclusive), C(reasons), C(notes), C(canary_share) (percent of the requests the canary served),
      C(canary) and C(stable) (C(requests), C(errors), C(error_ratio), C(p99_seconds)), and C(action) (wait, next,
      promote, abort).
  returned: when a canary's steps ran, also when it was aborted
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import ARGUMENT_SPEC


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg="creativeflow.ai_serving.model_deploy runs on the controller as an action plugin; "
                         "this module only documents it")


if __name__ == "__main__":
    main()
