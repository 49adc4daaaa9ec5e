#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_knobs
short_description: The deploy's shared knobs for one model, from the inventory, the run and the catalog
version_added: 0.2.0
author:
  - creativeflow.ai platform team (@creativeflow-ai)
description:
  - Runs on the controller (an action plugin; this module is its documentation). The runtime roles' internal role
    C(_common) calls it first, for every action (deploy, undeploy, rollback, render), and reads the knobs from its
    result.
  - The knobs that tune every runtime's deploy the same way are declared once, in C(plugins/module_utils/knobs.py), not
    per runtime role. A knob C(X) is read, most specific first, from C(-e ai_serving_X=...) (the run's extra
    variables, an AWX extra variable), the model's catalog entry's C(deploy.X) (after its environment's
    overrides; the knobs marked "catalog C(deploy)" below), C(ai_serving_X) anywhere else Ansible has it (inventory,
    group_vars, play), the old per-runtime name C(<runtime>_X) (deprecated, with a warning, until 2.0.0), and the
    default.
  - Each value is checked (type, bounds, choices) and the error names the variable or catalog field it came from.
  - "The knobs:"
  - C(ai_serving_namespace) (str; inventory, C(-e); default C(ai_namespace_name) when set, else V(ai-serving)) -
    Namespace of the model's objects. It must exist, with its baseline (playbooks/bootstrap_cluster.yml).
  - C(ai_serving_service_account_name) (str; inventory, C(-e), catalog C(deploy); default
    C(ai_namespace_service_account_name) when set, else V(model-server-sa)) - ServiceAccount of the pods (the
    ai_namespace role makes model-server-sa).
  - C(ai_serving_pod_labels) (dict; inventory, C(-e), catalog C(deploy); default V({})) - Extra labels of the pod
    template (a service mesh, cost allocation). The labels the deploy sets (app.kubernetes.io/*,
    creativeflow.ai/runtime, creativeflow.ai/model-name) cannot be overridden. On the local kwok cluster,
    sim.creativeflow.ai/fault (not-ready, crash-loop, image-pull) makes the pods fail.
  - C(ai_serving_pod_annotations) (dict; inventory, C(-e), catalog C(deploy); default V({})) - Annotations of the
    pod template.
  - C(ai_serving_termination_grace_period_seconds) (int; at least 1; inventory, C(-e), catalog C(deploy); default
    V(60)) - The pods' terminationGracePeriodSeconds; more than pre_stop_sleep_seconds, else the drain is cut short.
  - C(ai_serving_pre_stop_sleep_seconds) (int; at least 0; inventory, C(-e), catalog C(deploy); default V(10)) -
    Seconds the preStop hook sleeps before the server gets SIGTERM, so the endpoint leaves the Service first and no
    request is cut (a graceful drain).
  - C(ai_serving_progress_deadline_seconds) (int; at least 1; inventory, C(-e), catalog C(deploy); default V(600)) -
    The Deployment's spec.progressDeadlineSeconds.
  - C(ai_serving_gpu_preflight) (bool; inventory, C(-e), catalog C(deploy); default V(true)) - Before applying,
    prove that the replicas' GPUs fit the namespace quota and the eligible nodes at every step of the rollout
    (gpu_capacity_check). false skips it (e.g. when a cluster autoscaler adds GPU nodes); a rollout that then stays
    Pending is rolled back.
  - C(ai_serving_rollout_timeout) (int; at least 1; inventory, C(-e), catalog C(deploy); default V(600)) - Seconds
    to wait for the rollout, and for the rollback after a failure.
  - C(ai_serving_rollout_fail_fast) (int; at least 0; inventory, C(-e), catalog C(deploy); default V(60)) - Seconds
    after which a reason waiting does not cure (CrashLoopBackOff, ImagePullBackOff...) fails the rollout; 0 waits
    for rollout_timeout.
  - C(ai_serving_rollback_on_failure) (bool; inventory, C(-e), catalog C(deploy); default V(true)) - When the
    rollout fails, put the previous revision back (and the Service, HPA, PDB and ServiceMonitor as they were; on a
    first deploy, remove what was created), wait until it is available, then fail with the reason. false leaves the
    failed rollout in place for inspection.
  - C(ai_serving_smoke_check) (bool; inventory, C(-e), catalog C(deploy); default V(true)) - After the rollout, wait
    for ready endpoints behind the Service and ask the server through the API server's service proxy (its health
    paths, and the catalog entry's smoke inference).
  - C(ai_serving_service_monitor) (bool; inventory, C(-e), catalog C(deploy); default V(true)) - A ServiceMonitor
    for the metrics endpoint when the Prometheus Operator's CRD (monitoring.coreos.com/v1) is served; removed again
    when false. render_model.yml never writes one.
  - C(ai_serving_service_monitor_labels) (dict; inventory, C(-e), catalog C(deploy); default V({})) - Extra labels
    of the ServiceMonitor, for the Prometheus' serviceMonitorSelector (e.g. release=prometheus).
  - C(ai_serving_image_build) (bool; inventory, C(-e), catalog C(deploy); default V(true)) - Build and push the
    image before deploying when the catalog entry has image.build (not disabled); skipped when the registry has the
    tag already. false deploys image.repository:image.tag as it is.
  - C(ai_serving_image_builder) (str; one of V(docker), V(podman); inventory, C(-e); default V(docker)) - docker
    (community.docker) or podman (containers.podman) builds and pushes. Log in to the registry first.
  - C(ai_serving_image_registry) (dict; inventory, C(-e); default V({})) - Access to the registry for the tag
    look-up before a build - username, password (never printed), insecure (plain HTTP; automatic for localhost),
    validate_certs. Pushes use the builder's own login.
  - C(ai_serving_model_fetch_images) (dict; inventory, C(-e); default C(s3) V(amazon/aws-cli:2.17.50), C(gs)
    V(gcr.io/google.com/cloudsdktool/google-cloud-cli:494.0.0-slim), C(https) V(curlimages/curl:8.10.1), C(http)
    V(curlimages/curl:8.10.1)) - Image of the init container that fetches model.uri into an emptyDir, per URI scheme
    (s3, gs, http, https); the Secret of model.credentials_secret becomes its environment.
  - C(ai_serving_api_retry_seconds) (int; inventory, C(-e); default V(60)) - Seconds an API server that does not
    answer (a control plane restarting) is retried, with backoff, before the deploy fails saying what was in progress;
    V(0) fails at once.
  - C(ai_serving_lock_wait) (int; inventory, C(-e); default V(0)) - Seconds to wait for another run's deploy of the
    same model (its Lease) before failing with its holder; V(0) fails at once.
  - C(ai_serving_continue_forward) (bool; inventory, C(-e); default V(false)) - When the model is found in the middle
    of a failed or interrupted rollout, deploy over it instead of putting the last good version back first.
  - C(ai_serving_canary_action) (str; inventory, C(-e); default V(none); one of V(none), V(promote), V(abort)) - What
    a deploy of a model with strategy.canary does to the canary a run left - V(none) runs or continues its steps,
    V(promote) promotes it now (skipping the steps left), V(abort) removes it and gives the stable version its
    replicas back. playbooks/canary.yml sets it.
  - C(ai_serving_canary_prometheus_url) (str; inventory, C(-e); default V()) - URL of the Prometheus that the canary
    analysis queries when strategy.canary.analysis.metrics is prometheus (for example
    http://prometheus.monitoring:9090, reached from the controller); it must scrape the model's pods with namespace
    and pod labels. Empty - such a canary is refused before anything is applied; a URL where no Prometheus answers a
    query stops the canary before its first step.
options:
  runtime:
    description:
      - The model's runtime (V(tf_serving), V(torchserve), V(triton), V(custom_python)) - the prefix of the deprecated names.
    type: str
    required: true
  model:
    description:
      - The resolved catalog entry; its C(deploy) section sets the per-model knobs.
    type: dict
    default: {}
  require_runtime_role:
    description:
      - Fail unless the task runs inside the role of O(runtime) (C(creativeflow.ai_serving.<runtime>)) and O(model) is an
        entry of that runtime with its section. The internal role C(_common) sets it, so that it runs only when a
        runtime role included it.
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
  - module: creativeflow.ai_serving.model_deploy
notes:
  - Registry credentials (C(ai_serving_image_registry) with a password or token) hide the task's result from the output.
"""

EXAMPLES = r"""
- name: Read the shared knobs of a model
  creativeflow.ai_serving.model_knobs:
    runtime: triton
    model: "{{ ai_serving_model }}"
  register: knobs

- name: Show where the rollout timeout came from
  ansible.builtin.debug:
    msg: "{{ knobs['values'].rollout_timeout }} from {{ knobs.sources.rollout_timeout }}"
"""

RETURN = r"""
values:
  description: Every knob's value by name (without the C(ai_serving_) prefix), checked and of its type.
  returned: always
  type: dict
  sample: {rollout_timeout: 600, smoke_check: true, image_builder: docker}
sources:
  description: Where each value came from - V(-e ai_serving_X), V(deploy.X of the catalog entry), the variable's name, or
    V(default).
  returned: always
  type: dict
  sample: {rollout_timeout: deploy.rollout_timeout of the catalog entry, smoke_check: default}
secrets:
  description: Whether a value holds a secret (the registry's password or token); the result is then hidden.
  returned: always
  type: bool
"""
