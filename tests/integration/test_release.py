"""Release hygiene: the collection as users get it, not the checkout.

- ``ansible-galaxy collection build`` of a clean copy of the repository (the
  files git tracks or would track) makes one tarball, and galaxy.yml's
  build_ignore keeps the junk a working tree collects out of it;
- the tarball installs into an empty collections path, and a playbook of the
  *installed* collection (``creativeflow.ai_serving.bootstrap_cluster``, with
  the installed ``inventories/local``) runs against the test cluster, with a
  configuration that does not know the checkout;
- the changelog fragments render into a release with antsibull-changelog.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from playbooks import REPO_ROOT, venv_tool

GALAXY = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
FQCN = f"{GALAXY['namespace']}.{GALAXY['name']}"
TARBALL_NAME = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"

# What a working tree collects and a release must not ship: (path planted in
# the copy, why). The tarball may hold none of them.
JUNK = [
    ("tests/output/junit/report.xml", "ansible-test output"),
    (".collections/ansible_collections/creativeflow/ai_serving/README.md", "the venv's link to the checkout"),
    (".pytest_cache/v/cache/nodeids", "pytest cache"),
    ("plugins/modules/__pycache__/model_catalog.cpython-311.pyc", "bytecode"),
    ("roles/ai_namespace/__pycache__/junk.cpython-311.pyc", "bytecode"),
    (".cache/creativeflow-ai-serving/bin/kube-apiserver", "cluster binaries"),
    ("creativeflow-ai_serving-0.0.1.tar.gz", "an older build"),
    (".ansible/collections/ansible_collections/x/y/MANIFEST.json", "ansible-lint and molecule caches"),
]


def _run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed (rc {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    return proc


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment without anything that points Ansible at the checkout."""
    cfg = tmp / "ansible.cfg"
    if not cfg.exists():
        cfg.write_text(f"[defaults]\ncollections_path = {tmp / 'collections'}\nretry_files_enabled = false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env.update(
        ANSIBLE_CONFIG=str(cfg),
        ANSIBLE_COLLECTIONS_PATH=str(tmp / "collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        # The venv's bin first: ansible-doc, ansible-galaxy of the same ansible-core.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    )
    return env


def _copy_repository(dest: Path) -> None:
    """The files git tracks or would track (not ignored), as a fresh clone has them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO_ROOT / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(tarball, tmp dir): the collection built from a clean copy with junk planted in it."""
    tmp = tmp_path_factory.mktemp("release")
    src = tmp / "src"
    _copy_repository(src)
    for rel, _why in JUNK:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"junk\n")
    dist = tmp / "dist"
    _run([venv_tool("ansible-galaxy"), "collection", "build", str(src), "--output-path", str(dist)], cwd=tmp, env=_clean_env(tmp))
    tarballs = list(dist.iterdir())
    assert [t.name for t in tarballs] == [TARBALL_NAME]
    yield tarballs[0], tmp


@pytest.fixture(scope="module")
def members(release: tuple[Path, Path]) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(release[0]) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_tarball_holds_the_collection(members: dict[str, tarfile.TarInfo], release: tuple[Path, Path]) -> None:
    for needed in (
        "MANIFEST.json",
        "FILES.json",
        "meta/runtime.yml",
        "roles/ai_namespace/meta/argument_specs.yml",
        "playbooks/bootstrap_cluster.yml",
        "plugins/modules/model_catalog.py",
        "inventories/local/hosts.yml",
        "awx/job_templates.yml",
    ):
        assert needed in members, f"{needed} is missing from {TARBALL_NAME}"
    with tarfile.open(release[0]) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == (GALAXY["namespace"], GALAXY["name"], GALAXY["version"])
    assert info["dependencies"] == GALAXY["dependencies"]


@pytest.mark.parametrize(
    "junk",
    [pytest.param(rel, id=why.replace(" ", "-")) for rel, why in JUNK],
)
def test_build_ignore_keeps_junk_out(members: dict[str, tarfile.TarInfo], junk: str) -> None:
    assert junk not in members, f"{junk} was shipped: add its directory or pattern to galaxy.yml build_ignore"


def test_no_bytecode_or_binaries(members: dict[str, tarfile.TarInfo], release: tuple[Path, Path]) -> None:
    assert not [n for n in members if "__pycache__" in n.split("/") or n.endswith(".pyc")]
    with tarfile.open(release[0]) as tar:
        for member in tar.getmembers():
            if member.isfile():
                head = tar.extractfile(member).read(4)
                assert head != b"\x7fELF", f"{member.name} is a compiled binary"
                assert member.size < 1024 * 1024, f"{member.name} is {member.size} bytes"


@pytest.fixture(scope="module")
def installed(release: tuple[Path, Path]) -> Path:
    """The tarball installed into an empty collections path; returns the collection's directory."""
    tarball, tmp = release
    env = _clean_env(tmp)
    # Offline: kubernetes.core & co. come from pip's ansible package, found on sys.path.
    _run(
        [venv_tool("ansible-galaxy"), "collection", "install", str(tarball), "-p", str(tmp / "collections"), "--no-deps"],
        cwd=tmp,
        env=env,
    )
    path = tmp / "collections" / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    assert (path / "MANIFEST.json").is_file()
    return path


def test_installed_files_match_the_manifest(installed: Path, release: tuple[Path, Path]) -> None:
    _, tmp = release
    proc = _run(
        [venv_tool("ansible-galaxy"), "collection", "verify", FQCN, "--offline", "-p", str(tmp / "collections")],
        cwd=tmp,
        env=_clean_env(tmp),
    )
    assert "Successfully verified" in proc.stdout + proc.stderr


def test_installed_playbook_runs_against_the_cluster(installed: Path, release: tuple[Path, Path], kubeconfig: str, core_v1) -> None:
    from kubernetes.client.exceptions import ApiException

    _, tmp = release
    namespace = f"t-release-{uuid.uuid4().hex[:8]}"
    env = _clean_env(tmp, AI_SERVING_KUBECONFIG=kubeconfig)
    # The checkout's collection link must not be what Ansible finds.
    listed = _run([venv_tool("ansible-galaxy"), "collection", "list", FQCN, "--format", "json"], cwd=tmp, env=env)
    found = {path for path, colls in json.loads(listed.stdout).items() if FQCN in colls}
    assert found == {str(tmp / "collections" / "ansible_collections")}, found
    try:
        proc = _run(
            [
                venv_tool("ansible-playbook"),
                f"{FQCN}.bootstrap_cluster",
                "-i",
                str(installed / "inventories" / "local"),
                "-e",
                json.dumps({"ai_namespace_name": namespace}),
                "-vv",
            ],
            cwd=tmp,
            env=env,
        )
        # -vv names the file of every task: all of them in the installed copy.
        task_paths = set(re.findall(r"^task path: (\S+?):\d+$", proc.stdout, re.MULTILINE))
        assert task_paths, proc.stdout[-3000:]
        assert all(p.startswith(str(installed) + os.sep) for p in task_paths), sorted(task_paths)
        assert str(REPO_ROOT) not in proc.stdout.replace(kubeconfig, "")
        assert re.search(r"^localhost\s*:\s*ok=\d+\s+changed=[1-9]\d*\s+unreachable=0\s+failed=0", proc.stdout, re.MULTILINE)
        ns = core_v1.read_namespace(namespace)
        assert ns.metadata.labels["app.kubernetes.io/managed-by"] == FQCN
        assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    finally:
        try:
            core_v1.delete_namespace(namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_changelog_renders_a_release(tmp_path: Path) -> None:
    """antsibull-changelog turns the fragments into a release (in a copy: nothing is released here)."""
    src = tmp_path / "src"
    _copy_repository(src)
    fragments = sorted(p.name for p in (src / "changelogs" / "fragments").glob("*.yml"))
    assert fragments
    env = _clean_env(tmp_path)
    _run([venv_tool("antsibull-changelog"), "lint"], cwd=src, env=env)
    _run([venv_tool("antsibull-changelog"), "release", "--version", GALAXY["version"], "--date", "2026-01-15"], cwd=src, env=env)

    changes = yaml.safe_load((src / "changelogs" / "changelog.yaml").read_text())
    release = changes["releases"][GALAXY["version"]]
    assert sorted(release["fragments"]) == fragments
    assert release["release_date"] == "2026-01-15"
    assert not list((src / "changelogs" / "fragments").glob("*.yml")), "keep_fragments is false: fragments are consumed"

    rst = (src / "CHANGELOG.rst").read_text()
    assert f"v{GALAXY['version']}" in rst
    assert "Minor Changes" in rst
    words = " ".join(rst.split())
    trivial = yaml.safe_load((REPO_ROOT / "changelogs" / "config.yaml").read_text())["trivial_section_name"]
    for name in fragments:
        fragment = yaml.safe_load((REPO_ROOT / "changelogs" / "fragments" / name).read_text())
        for section, entries in fragment.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                head = " ".join(entry.split())[:60]
                # Trivial entries are kept in changelog.yaml but, by design, never rendered.
                if section == trivial:
                    assert head not in words, f"{name}: trivial entry rendered"
                else:
                    assert head in words, f"{name}: entry not rendered"

    import docutils.core
    import docutils.utils

    # Valid reStructuredText: a warning or worse is an error.
    docutils.core.publish_doctree(rst, settings_overrides={"halt_level": docutils.utils.Reporter.WARNING_LEVEL, "report_level": 5})
