"""execution-environment.yml: ansible-builder accepts it and makes the build context we mean.

``ansible-builder create`` validates the definition against its v3 schema and
writes the build context (Containerfile and _build/) without a container
engine or the network; the tests read what it wrote. The collection tarball
it copies in is a stand-in here (tests/integration/test_release.py builds the
real one).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
EE_FILE = REPO_ROOT / "execution-environment.yml"
GALAXY = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"


def _ansible_builder() -> str:
    beside = Path(sys.executable).parent / "ansible-builder"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ansible-builder")
    if not found:
        pytest.fail("ansible-builder not found: it is pinned in requirements-dev.txt (hack/venv.sh installs it)")
    return found


def _pins() -> dict[str, str]:
    """name -> exact version from requirements-dev.txt."""
    pins = {}
    for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


@pytest.fixture(scope="module")
def definition() -> dict:
    return yaml.safe_load(EE_FILE.read_text())


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build context ansible-builder creates from a copy of the files it reads."""
    tmp = tmp_path_factory.mktemp("ee")
    src = tmp / "src"
    src.mkdir()
    for name in ("execution-environment.yml", "requirements.yml", "requirements.txt"):
        shutil.copy2(REPO_ROOT / name, src / name)
    (src / TARBALL).write_bytes(b"stand-in for the collection tarball\n")
    out = tmp / "context"
    proc = subprocess.run(
        [_ansible_builder(), "create", "-f", str(src / "execution-environment.yml"), "-c", str(out),
         "--output-filename", "Containerfile"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"ansible-builder create failed:\n{proc.stdout}\n{proc.stderr}"
    assert "No matches" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def containerfile(context: Path) -> str:
    return (context / "Containerfile").read_text()


def test_schema_version_and_base_image(definition: dict, containerfile: str) -> None:
    assert definition["version"] == 3
    base = definition["images"]["base_image"]["name"]
    assert re.match(r"^[\w.-]+(:\d+)?/[\w./-]+:[\w.-]+$", base), f"pin the base image by tag: {base}"
    assert f'ARG EE_BASE_IMAGE="{base}"' in containerfile


def test_ansible_core_is_the_one_we_test_with(definition: dict, containerfile: str) -> None:
    deps = definition["dependencies"]
    core = deps["ansible_core"]["package_pip"]
    assert core == f"ansible-core=={_pins()['ansible-core']}", (
        "the execution environment must run the ansible-core that `make test` runs (requirements-dev.txt)"
    )
    runner = deps["ansible_runner"]["package_pip"]
    assert re.fullmatch(r"ansible-runner==[\d.]+", runner), runner
    assert f'ARG ANSIBLE_INSTALL_REFS="{core} {runner}"' in containerfile
    # ansible-core 2.19 needs Python >= 3.11.
    assert re.search(r"python3\.1[1-9]$", deps["python_interpreter"]["python_path"])


def test_collection_dependencies_are_galaxy_yml_s(context: Path) -> None:
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    ranges = {c["name"]: c["version"] for c in requirements["collections"]}
    assert ranges == GALAXY["dependencies"]


def test_python_requirements_are_the_collection_s(context: Path) -> None:
    assert (context / "_build" / "requirements.txt").read_text() == (REPO_ROOT / "requirements.txt").read_text()


def test_python_requirements_cover_the_modules(context: Path) -> None:
    names = {
        re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()
        for line in (context / "_build" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    # Third-party libraries the modules import (kubernetes.core's own come with it).
    assert {"kubernetes", "jsonschema"} <= names


def test_collection_is_installed_from_its_tarball(context: Path, containerfile: str) -> None:
    assert (context / "_build" / "collection" / TARBALL).is_file()
    galaxy_stage = containerfile.split("FROM base AS galaxy", 1)[1].split("FROM base AS builder", 1)[0]
    install = [line for line in galaxy_stage.splitlines() if "/build/collection/" in line]
    assert len(install) == 1, galaxy_stage
    assert "--no-deps" in install[0]
    assert "--collections-path /usr/share/ansible/collections" in install[0]
    # After the dependencies, so the builder stage's introspection sees it too.
    assert galaxy_stage.index("-r requirements.yml --collections-path") < galaxy_stage.index(install[0])
