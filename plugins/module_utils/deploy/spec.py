# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument spec of ``model_deploy``, shared by the action plugin and the module that documents it."""

from __future__ import annotations

from typing import Any, Dict

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import auth_argument_spec

#: Field manager of every server-side apply: the deploy's ownership shows in managedFields.
FIELD_MANAGER = "creativeflow-ai-serving"

PHASES = ("preflight", "apply", "all")

ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = auth_argument_spec()
ARGUMENT_SPEC.update(
    phase=dict(type="str", choices=list(PHASES), default="all"),
    runtime=dict(type="str", required=True),
    model=dict(type="dict", required=True),
    knobs=dict(type="dict", default={}),
    settings=dict(type="dict", required=True),
    config_files=dict(type="dict", default={}),
    gpu_preflight=dict(type="bool", default=True),
    rollout_timeout=dict(type="int", default=600),
    rollout_fail_fast=dict(type="int", default=30),
    rollback_on_failure=dict(type="bool", default=True),
    image_build=dict(type="bool", default=True),
    plan=dict(type="dict"),
    stop_for_build=dict(type="bool", default=False),
    verify=dict(type="bool", default=True),
    smoke_check=dict(type="bool", default=True),
    smoke_timeout=dict(type="int", default=60),
    field_manager=dict(type="str", default=FIELD_MANAGER),
    api_retry_seconds=dict(type="int", default=60),
    lock_wait=dict(type="int", default=0),
    continue_forward=dict(type="bool", default=False),
    canary_action=dict(type="str", choices=["none", "promote", "abort"], default="none"),
    canary_prometheus_url=dict(type="str", default=""),
)


class DeployError(Exception):
    """A step failed: the message names the value or object and the fix."""

    def __init__(self, msg: str, **result: Any) -> None:
        super().__init__(msg)
        self.result = result
