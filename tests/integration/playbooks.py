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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

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
