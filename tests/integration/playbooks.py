"""Running the collection's playbooks against the test cluster, for the integration tests.

One runner for every test module: the venv's ansible-playbook, the local inventory
pointed at the test cluster through AI_SERVING_KUBECONFIG, extra vars passed in a
file (never on the command line, where secrets would show in ``ps``), and the
PLAY RECAP parsed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Union

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INVENTORY = REPO_ROOT / "inventories" / "local"
PLAYBOOKS = REPO_ROOT / "playbooks"
RECAP_RE = re.compile(
    r"^localhost\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=\d+\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def venv_tool(name: str) -> str:
    """A command of the venv running pytest (ansible-playbook, molecule...), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: it is pinned in requirements-dev.txt; run pytest from the project venv "
                    "(hack/venv.sh)")
    return found


def ansible_playbook() -> str:
    return venv_tool("ansible-playbook")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr with whitespace collapsed, for message checks."""
        return " ".join(f"{self.stdout}\n{self.stderr}".split())

    @property
    def recap(self) -> Dict[str, int]:
        match = RECAP_RE.search(self.stdout)
        assert match, f"no PLAY RECAP in the output:\n{self.explain()}"
        return {k: int(v) for k, v in match.groupdict().items()}

    def explain(self) -> str:
        return f"rc={self.returncode}\n--- stdout\n{self.stdout[-8000:]}\n--- stderr\n{self.stderr[-3000:]}"


def run_playbook(playbook: Union[str, Path], kubeconfig: str, extra_vars: Optional[Mapping[str, Any]] = None,
                 *args: str, env: Optional[Mapping[str, str]] = None, inventory: Path = INVENTORY,
                 timeout: int = 420) -> Run:
    """Run ``playbook`` (a name under playbooks/ or a path) with the local inventory against ``kubeconfig``."""
    path = Path(playbook) if Path(playbook).is_absolute() else PLAYBOOKS / playbook
    environ = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "AI_SERVING_KUBECONFIG": kubeconfig,
        **(env or {}),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="extra-vars-") as vars_file:
        json.dump(dict(extra_vars or {}), vars_file)
        vars_file.flush()
        proc = subprocess.run(
            [ansible_playbook(), "-i", str(inventory), str(path), "-e", f"@{vars_file.name}", *args],
            # A stdin of its own: what the playbook runs (podman...) may make it non-blocking.
            cwd=REPO_ROOT, env=environ, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
            timeout=timeout,
        )
    return Run(proc.returncode, proc.stdout, proc.stderr)


class Started:
    """A playbook run in the background (to be interrupted, killed or raced); :meth:`finish` waits for its end.

    Output goes to files, not pipes, so a worker process that outlives the main one (which a signal leaves behind on
    purpose to finish its rollback) cannot keep the test waiting on a pipe it holds open.
    """

    def __init__(self, proc: subprocess.Popen, out: Any, err: Any, vars_file: Any) -> None:
        self.proc, self._out, self._err, self._vars = proc, out, err, vars_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list:
        """The pids of ansible-playbook's worker processes now (its children; each in a session of its own)."""
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def output_so_far(self) -> str:
        return Path(self._out.name).read_text(errors="replace")

    def finish(self, timeout: int = 420, workers: Sequence[int] = ()) -> Run:
        """Wait for the main process and for ``workers`` (pids that may outlive it), then read the output."""
        deadline = time.monotonic() + timeout
        try:
            self.proc.wait(timeout=timeout)
            while any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in workers):
                if time.monotonic() > deadline:
                    raise AssertionError(f"worker processes {list(workers)} still run after {timeout} s")
                time.sleep(0.5)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        run = Run(self.proc.returncode, Path(self._out.name).read_text(errors="replace"),
                  Path(self._err.name).read_text(errors="replace"))
        for handle in (self._out, self._err, self._vars):
            handle.close()
        return run


def _alive(pid: int) -> bool:
    """Not a zombie (a worker whose parent is gone is reaped by init; one of ours may linger unreaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def start_playbook(playbook: Union[str, Path], kubeconfig: str, extra_vars: Optional[Mapping[str, Any]] = None,
                   *args: str, env: Optional[Mapping[str, str]] = None, inventory: Path = INVENTORY) -> Started:
    """Start ``playbook`` as :func:`run_playbook` would run it, without waiting for it."""
    path = Path(playbook) if Path(playbook).is_absolute() else PLAYBOOKS / playbook
    environ = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "AI_SERVING_KUBECONFIG": kubeconfig,
        **(env or {}),
    }
    vars_file = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="extra-vars-")
    json.dump(dict(extra_vars or {}), vars_file)
    vars_file.flush()
    out = tempfile.NamedTemporaryFile("w+", suffix=".out", prefix="playbook-")
    err = tempfile.NamedTemporaryFile("w+", suffix=".err", prefix="playbook-")
    proc = subprocess.Popen(
        [ansible_playbook(), "-i", str(inventory), str(path), "-e", f"@{vars_file.name}", *args],
        cwd=REPO_ROOT, env=environ, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    return Started(proc, out, err, vars_file)


@contextmanager
def baseline_namespace(core_v1: Any, prefix: str, quota: Dict[str, str]) -> Iterator[str]:
    """A fresh namespace with what bootstrap_cluster.yml gives the model pods: restricted Pod Security,
    the model ServiceAccount and a ResourceQuota of ``quota``; deleted afterwards."""
    from kubernetes import client

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    labels.update({f"pod-security.kubernetes.io/{mode}-version": "latest" for mode in ("enforce", "audit", "warn")})
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        core_v1.create_namespaced_service_account(name, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="model-server-sa")))
        core_v1.create_namespaced_resource_quota(name, client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="ai-serving-quota"), spec=client.V1ResourceQuotaSpec(hard=quota)))
        yield name
    finally:
        core_v1.delete_namespace(name, grace_period_seconds=0)
