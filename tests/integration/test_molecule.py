"""The molecule scenarios (molecule/README.md).

``molecule test -s local`` runs for real against the test cluster: converge,
idempotence (no task may report a change the second time), verify (objects
read back from the API server), cleanup. It uses a namespace of its own and
an ephemeral directory of its own, so it can run beside other tests and
other molecule runs.

The ``kind`` scenario needs Docker and kind, which our machines lack: here
it is only syntax-checked, and its shape (variables only) is checked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from playbooks import REPO_ROOT, venv_tool

SCENARIOS = sorted(p.parent.name for p in (REPO_ROOT / "molecule").glob("*/molecule.yml"))


def _run_molecule(tmp_path: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLECULE_")}
    env.update(
        NO_COLOR="1",
        ANSIBLE_NOCOLOR="1",
        MOLECULE_EPHEMERAL_DIRECTORY=str(tmp_path / "molecule"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **env_extra,
    )
    env.pop("ANSIBLE_CONFIG", None)  # molecule writes its own
    return subprocess.run(
        [venv_tool("molecule"), *args], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, check=False, timeout=1200,
    )


def test_scenarios_differ_only_in_variables() -> None:
    assert SCENARIOS == ["kind", "local"]
    for name in SCENARIOS:
        data = yaml.safe_load((REPO_ROOT / "molecule" / name / "molecule.yml").read_text())
        allowed = {"provisioner": {"inventory"}, "ansible": {"env"}}
        assert set(data) <= set(allowed), f"molecule/{name}/molecule.yml sets {set(data) - set(allowed)}"
        for key, sub in data.items():
            assert set(sub) <= allowed[key], f"molecule/{name}/molecule.yml sets {key}.{set(sub) - allowed[key]}"
        assert set(data["provisioner"]["inventory"]) == {"host_vars"}
        assert data["provisioner"]["inventory"]["host_vars"]["localhost"]["ai_serving_molecule_cluster"] == name
        # No playbook of its own: they are molecule/shared/'s, named in .config/molecule/config.yml.
        assert sorted(p.name for p in (REPO_ROOT / "molecule" / name).iterdir()) == ["molecule.yml"]


def test_kind_scenario_passes_syntax_check(tmp_path: Path) -> None:
    proc = _run_molecule(tmp_path, "syntax", "-s", "kind")
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def test_local_scenario(tmp_path: Path, kubeconfig: str, core_v1) -> None:
    from kubernetes.client.exceptions import ApiException

    namespace = f"molecule-{uuid.uuid4().hex[:8]}"
    try:
        proc = _run_molecule(tmp_path, "test", "-s", "local", AI_SERVING_MOLECULE_NAMESPACE=namespace)
        output = f"{proc.stdout}\n{proc.stderr}"
        assert proc.returncode == 0, output[-8000:]
        for action in ("syntax", "create", "converge", "idempotence", "verify", "cleanup", "destroy"):
            assert re.search(rf"local\s*(>|➜)\s*{action}: Executed: Successful", output), f"{action} did not succeed:\n{output[-4000:]}"
        # idempotence succeeding means the second converge changed nothing; verify read the objects back.
        assert "Verify | Check that the ResourceQuota limits GPUs and is enforced" in output
        # converge deployed the example model and verify checked it (not skipped).
        assert re.search(r"Verify \| Check that the model runs as the catalog says\] \*+\s+ok:", output), output[-4000:]
        assert f"Namespace/{namespace}" in output
        # cleanup deleted the scenario's namespace (and waited for it to go).
        with pytest.raises(ApiException) as gone:
            core_v1.read_namespace(namespace)
        assert gone.value.status == 404
    finally:
        try:
            core_v1.delete_namespace(namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
