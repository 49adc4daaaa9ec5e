"""What the image tests share: podman/buildah in a sandbox, the Debian base image, loopback HTTP.

podman and buildah set O_NONBLOCK on the stdin they inherit, which would make
every later ansible command of the session refuse to start: each gets its own
/dev/null (stdin=subprocess.DEVNULL everywhere here).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict

import pytest

from playbooks import REPO_ROOT

CACHE_DIR = Path(os.environ.get("AI_SERVING_CACHE_DIR", Path.home() / ".cache" / "creativeflow-ai-serving"))
BASE_IMAGE = "localhost/ai-serving/python-base:bookworm"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, accept: str = "application/json", data: Any = None) -> Any:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Accept": accept, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback URLs of the test)
        return json.loads(response.read())


def wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def container_env(*tools: str) -> Dict[str, str]:
    """podman/buildah settings for a sandbox: chroot isolation and a vfs storage of the tests' own."""
    for tool in ("podman", "buildah", *tools):
        if not shutil.which(tool):
            pytest.fail(f"{tool} not found: run hack/deps.sh (apt-get install podman buildah docker-registry)")
    root = CACHE_DIR / "containers"
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/storage"\nrunroot = "{root}/run"\n')
    return {"CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"}


def base_image(env: Dict[str, str]) -> str:
    """The Debian Python base image (hack/base_image.sh), made once and cached."""
    proc = subprocess.run([str(REPO_ROOT / "hack" / "base_image.sh"), BASE_IMAGE], env={**os.environ, **env},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, f"hack/base_image.sh failed:\n{proc.stderr[-3000:]}"
    return BASE_IMAGE
