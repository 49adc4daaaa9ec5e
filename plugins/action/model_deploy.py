# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of creativeflow.ai_serving.model_deploy: the whole deploy in the controller process.

Thin: the steps are plugins/module_utils/deploy/engine.py's; this turns the
task's arguments into its inputs, prints one line per step with its duration,
and turns its errors into the task's failure.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.engine import Engine
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.kube import DeployClient
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.plan import unreachable_message
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.spec import ARGUMENT_SPEC, DeployError
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import (
    AUTH_ARG_SPEC,
    K8sAccessError,
)

display = Display()


def _step_line(step: Dict[str, Any]) -> str:
    state = "failed" if step.get("failed") else ("changed" if step.get("changed") else "ok")
    line = "  {0} [{1}] {2:.2f}s".format(step["name"], state, step["seconds"])
    return line + (": " + step["msg"] if step.get("msg") else "")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        auth = {key: args.get(key) for key in AUTH_ARG_SPEC}
        check_mode = bool(self._task.check_mode or self._play_context.check_mode)
        diff = bool(self._task.diff)
        playbook_dir = task_vars.get("playbook_dir") or os.getcwd()

        # Tokens the client reads from a kubeconfig stay in it: nothing of its configuration is returned.
        def connect() -> DeployClient:
            try:
                return DeployClient(params=auth)
            except K8sAccessError as exc:
                raise DeployError(unreachable_message(auth.get("kubeconfig"), auth.get("context"), str(exc))) from exc

        engine = Engine(args, connect, check_mode=check_mode, diff=diff,
                        base_dir=os.path.join(playbook_dir, ".."),
                        report=lambda step: display.display(_step_line(step)))
        try:
            found = args["plan"] if args["phase"] == "apply" and args["plan"] else engine.preflight()
            # The image build is Ansible tasks: phase all stops before the apply only when one is to run.
            build_pending = bool(found["build"] and args["stop_for_build"] and args["phase"] != "apply"
                                 and not check_mode)
            if args["phase"] == "apply" or (args["phase"] == "all" and not build_pending):
                result["rollout"] = engine.apply(found)
                if args["verify"]:
                    result["verify"] = engine.verify(found, result["rollout"])
            result.update(plan=found, build_pending=build_pending)
        except DeployError as exc:
            result.update(exc.result)
            result.update(failed=True, msg=str(exc), steps=engine.steps,
                          changed=any(s.get("changed") for s in engine.steps))
            self._finish(result, engine)
            return result
        changed = any(s.get("changed") for s in engine.steps)
        result.update(changed=changed, steps=engine.steps,
                      msg="; ".join("{0} {1:.2f}s".format(s["name"], s["seconds"]) for s in engine.steps))
        self._finish(result, engine)
        return result

    def _finish(self, result: Dict[str, Any], engine: Engine) -> None:
        if engine.warnings:
            result.setdefault("warnings", []).extend(engine.warnings)
        if engine.diffs:
            result["diff"] = engine.diffs
