# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of creativeflow.ai_serving.model_deploy: the whole deploy in the controller process.

Thin: the steps are plugins/module_utils/deploy/engine.py's; this turns the
task's arguments into its inputs, prints one line per step with its duration,
and turns its errors into the task's failure.

Signals: the action runs in a WorkerProcess of its own session (setsid), whose
handler kills it at once on SIGINT/SIGTERM; the main ansible-playbook process
forwards the signal to it, then stops (SIGINT: "User interrupted execution",
then a SIGTERM to the worker; SIGTERM: rc 143). While the engine runs, this
action's handler replaces the worker's: the first signal raises
:class:`Interrupted` in the engine, which finishes the rollback it owes
(bounded); later ones are only noted. What it did is written to the main
process's stderr as well (a descriptor opened before any signal), since the
main process may be gone by then and the worker's own stdout is /dev/null.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.engine import Engine, Interrupted
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.kube import DeployClient, retrying
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


class _Console:
    """The main ansible-playbook process's stderr, opened before any signal: it outlives that process."""

    def __init__(self) -> None:
        self.fd: Optional[int] = None
        try:
            self.fd = os.open("/proc/{0}/fd/2".format(os.getppid()), os.O_WRONLY | os.O_APPEND)
        except OSError:  # not Linux, or no access: the display alone
            self.fd = None

    def write(self, line: str) -> None:
        if self.fd is not None:
            try:
                os.write(self.fd, ("model_deploy: " + line + "\n").encode("utf-8", "replace"))
            except OSError:
                pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


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
        retry_seconds = max(0, int(args["api_retry_seconds"]))
        console = _Console()
        engine_ref: Dict[str, Engine] = {}

        def say(line: str) -> None:
            engine = engine_ref.get("engine")
            if engine is not None and engine.interrupted:
                # The main process stopped reading the display queue (a full pipe would block this process):
                # write where the operator still looks.
                console.write(line.strip())
                return
            display.display(line)

        def outage(message: str) -> None:
            say("  API server not answering: {0}".format(message))

        # Tokens the client reads from a kubeconfig stay in it: nothing of its configuration is returned.
        def connect() -> DeployClient:
            def build() -> DeployClient:
                try:
                    return DeployClient(params=auth)
                except K8sAccessError as exc:
                    if exc.unreachable:
                        raise
                    raise DeployError(unreachable_message(auth.get("kubeconfig"), auth.get("context"),
                                                          str(exc))) from exc
            try:
                client = retrying(build, retry_seconds, outage)
            except K8sAccessError as exc:
                raise DeployError(unreachable_message(auth.get("kubeconfig"), auth.get("context"), str(exc))) from exc
            client.retry_seconds = retry_seconds
            client.on_outage = outage
            return client

        engine = Engine(args, connect, check_mode=check_mode, diff=diff,
                        base_dir=os.path.join(playbook_dir, ".."),
                        report=lambda step: say(_step_line(step)))
        engine_ref["engine"] = engine
        engine.notify = say
        failed = True
        try:
            with _signals(engine):
                build_pending = rolled_out = False
                try:
                    found = args["plan"] if args["phase"] == "apply" and args["plan"] else engine.preflight()
                    # The image build is Ansible tasks: phase all stops before the apply only when one is to run.
                    build_pending = bool(found["build"] and args["stop_for_build"] and args["phase"] != "apply"
                                         and not check_mode)
                    if args["phase"] == "apply" or (args["phase"] == "all" and not build_pending):
                        result["rollout"] = engine.apply(found)
                        rolled_out = True
                        if args["verify"]:
                            result["verify"] = engine.verify(found, result["rollout"])
                        # Only a verified version is one to come back to.
                        engine.keep_as_last_good(found)
                    result.update(plan=found, build_pending=build_pending)
                    failed = False
                except Interrupted as exc:
                    step = engine.current_step or "the preflight"
                    if rolled_out:
                        raise DeployError(
                            "Interrupted by {0} during '{1}', after the rollout completed: the new version runs and "
                            "stays, but it was not verified, so it is not recorded as the last good version. Deploy "
                            "again to verify it.".format(exc.signame, step)) from exc
                    raise DeployError("Interrupted by {0} during '{1}', before anything was applied: the model is "
                                      "as it was.".format(exc.signame, step)) from exc
                finally:
                    engine.shielded = True  # a signal now must not cut the release short
                    # A call that stops for the image build keeps the Lease for the apply; anything else gives it up.
                    if failed or check_mode or not (args["phase"] == "preflight" or build_pending):
                        released = engine.release()
                        if released:
                            say("  " + released)
                    else:
                        engine.stop_renewing()
        except DeployError as exc:
            result.update(exc.result)
            result.update(failed=True, msg=str(exc), steps=engine.steps,
                          changed=any(s.get("changed") for s in engine.steps))
            if engine.interrupted:
                self._exit_after_interrupt(console, engine, str(exc))
            console.close()
            self._finish(result, engine)
            return result
        changed = any(s.get("changed") for s in engine.steps)
        result.update(changed=changed, steps=engine.steps,
                      msg="; ".join("{0} {1:.2f}s".format(s["name"], s["seconds"]) for s in engine.steps))
        if engine.interrupted:
            # The signal came while a step that must not be cut short ran; that step, and the run, completed.
            self._exit_after_interrupt(console, engine, "Interrupted, but what was running completed first: {0}"
                                       .format(result["msg"]))
        console.close()
        self._finish(result, engine)
        return result

    @staticmethod
    def _exit_after_interrupt(console: _Console, engine: Engine, message: str) -> None:
        """The run was interrupted: say how it ended on the console and end this worker.

        The main process is going away (SIGINT: it joins this worker, then exits; SIGTERM: it is gone) and reads no
        result: handing one over could block on the full queue pipe for ever, and the main process with it.
        """
        console.write("{0} (signals: {1})".format(message, ", ".join(engine.signals)))
        console.close()
        os._exit(1)

    def _finish(self, result: Dict[str, Any], engine: Engine) -> None:
        if engine.canary_checks:
            result["canary_checks"] = engine.canary_checks
        if engine.warnings:
            result.setdefault("warnings", []).extend(engine.warnings)
        if engine.diffs:
            result["diff"] = engine.diffs


@contextmanager
def _signals(engine: Engine) -> Iterator[None]:
    """SIGINT/SIGTERM raise :class:`Interrupted` in the engine once; later ones (or any while a rollback runs) are
    noted only, so the rollback a run owes finishes (bounded by the engine)."""

    def handler(signum: int, frame: Any) -> None:
        del frame
        # Nothing printed here: the display takes a lock the interrupted code may hold.
        name = signal.Signals(signum).name
        engine.signals.append("{0} at {1}".format(name, time.strftime("%H:%M:%S")))
        if engine.interrupted is None and not engine.shielded:
            engine.interrupted = name
            raise Interrupted(name)
        if engine.interrupted is None:
            engine.interrupted = name

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
