"""Triton and TorchServe images built from the roles' Dockerfile templates, really serving on CPU.

No cluster: each image is built with podman (chroot isolation, the tests' own vfs
storage) on the Debian Python base (hack/base_image.sh) from the runtime's
template rendered by Ansible with the role's defaults and vars, for a catalog
entry checked by the model_catalog module. The image then runs with
`buildah run` the command and arguments the role gives its container (rendered
the same way, on free loopback ports), and answers its health check, a real
inference and its metrics.

- triton: tritonserver 2.51 from nvidia-pytriton's wheel, a Python-backend model
  (tests/fixtures/models/triton/model_repository/double) on CPU, a v2 infer;
- torchserve: torchserve 0.12.0 on Debian's OpenJDK 17, a .mar made in the
  build by torch-model-archiver from tests/fixtures/models/torchserve/model-src,
  /ping and a prediction; a context without the handler fails the build with
  a message naming the runtime and the fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import yaml

import image_tools
from ansible_collections.creativeflow.ai_serving.plugins.module_utils import runtimes
from image_tools import free_port, http_json, wait_for
from playbooks import REPO_ROOT, venv_tool

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "models"

# The catalog entries (as in a catalog, before the model_catalog module fills in defaults).
ENTRIES: Dict[str, Dict[str, Any]] = {
    "triton": {
        "description": "Triton serving a Python-backend model on CPU.",
        "runtime": "triton",
        "image": {"repository": "localhost/ai-serving-test/triton-double", "tag": "1.0",
                  "build": {"context": str(FIXTURES / "triton"), "base_image": image_tools.BASE_IMAGE}},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
        "model": {"source": "image"},
        "triton": {"model_control_mode": "explicit", "models": [{"name": "double"}]},
    },
    "torchserve": {
        "description": "TorchServe serving a handler without torch on CPU.",
        "runtime": "torchserve",
        "image": {"repository": "localhost/ai-serving-test/torchserve-doubler", "tag": "1.0",
                  "build": {"context": str(FIXTURES / "torchserve"), "base_image": image_tools.BASE_IMAGE}},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "model": {"source": "image"},
        "torchserve": {"model_name": "doubler", "mar_file": "doubler.mar"},
    },
}

# The build arguments each role's entry point passes (its Dockerfile pins), by role variable: the same
# arguments as a deploy's build, so this build and test_serving's deploy of the CPU examples (same template,
# context and base image) share their layers in the cached storage.
BUILD_ARGS = {
    "triton": {"PYTRITON_VERSION": "triton_pytriton_version", "NUMPY_VERSION": "triton_numpy_version"},
    "torchserve": {"TORCHSERVE_VERSION": "torchserve_version", "PYYAML_VERSION": "torchserve_pyyaml_version"},
}

# The ports of each role, in the order the run below gets free ones for them.
PORTS = {
    "triton": ["triton_http_port", "triton_grpc_port", "triton_metrics_port"],
    "torchserve": ["torchserve_inference_port", "torchserve_management_port", "torchserve_metrics_port"],
}

def render_play(runtime: str) -> List[Dict[str, Any]]:
    """A play that resolves the entry and renders what the role builds (its defaults) and runs (the test's ports)."""
    roles = REPO_ROOT / "roles"
    on_test_ports = {name: "{{ test_ports.%s }}" % name for name in PORTS[runtime]}
    tasks: List[Dict[str, Any]] = [
        {"name": "Resolve the catalog entry",
         "creativeflow.ai_serving.model_catalog": {"catalog": "{{ test_catalog }}", "model": "{{ test_model }}"},
         "register": "__entry"},
        {"name": "Keep the resolved entry", "ansible.builtin.set_fact": {f"{runtime}_model": "{{ __entry.model }}"}},
        {"name": "Render the Dockerfile with the role's defaults",
         "ansible.builtin.template": {"src": str(roles / runtime / "templates" / "Dockerfile.j2"),
                                      "dest": "{{ test_out }}/Dockerfile", "mode": "0644"}},
        {"name": "Write the resolved entry",
         "ansible.builtin.copy": {"content": "{{ {'entry': %s_model} | to_json }}" % runtime,
                                  "dest": "{{ test_out }}/run.json", "mode": "0644"}},
    ]
    if runtime == "torchserve":
        tasks.append({"name": "Write config.properties on the test's ports",
                      "ansible.builtin.template": {"src": str(roles / runtime / "templates" / "config.properties.j2"),
                                                   "dest": "{{ test_out }}/config/config.properties", "mode": "0644"},
                      "vars": on_test_ports})
    return [{"name": f"Render what the {runtime} role builds and runs", "hosts": "localhost", "connection": "local",
             "gather_facts": False, "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
             "vars_files": [str(path) for path in (roles / runtime / "defaults" / "main.yml", roles / runtime / "vars" / "main.yml")
                            if path.is_file()],
             "tasks": tasks}]


def render(runtime: str, entry: Dict[str, Any], ports: Dict[str, int], out: Path) -> Dict[str, Any]:
    """Render the runtime's Dockerfile (role defaults) and container arguments (test ports) into ``out``."""
    (out / "config").mkdir(parents=True, exist_ok=True)
    play = out / "render.yml"
    play.write_text(yaml.safe_dump(render_play(runtime), sort_keys=False))
    extra = out / "extra.json"
    name = f"{runtime}-cpu"
    extra.write_text(json.dumps({"test_catalog": {name: entry}, "test_model": name, "test_out": str(out),
                                 "test_ports": ports}))
    proc = subprocess.run([venv_tool("ansible-playbook"), "-i", "localhost,", str(play), "-e", f"@{extra}"],
                          env={**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, f"rendering failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    run = json.loads((out / "run.json").read_text())
    # The container's arguments come from the runtime's record, as the deploy builds them, on the
    # test's ports (the role's knobs are its variables without the prefix).
    knobs = {name[len(runtime) + 1:]: port for name, port in ports.items()}
    run["args"] = runtimes.server_spec(runtime, run["entry"], knobs).args
    return run


def build_args(runtime: str) -> List[str]:
    """The role's --build-arg values, from its defaults, as its entry point hands them to the build."""
    defaults = yaml.safe_load((REPO_ROOT / "roles" / runtime / "defaults" / "main.yml").read_text())
    pairs = {arg: defaults[variable] for arg, variable in BUILD_ARGS[runtime].items()}
    pairs["BASE_IMAGE"] = image_tools.BASE_IMAGE
    return [part for arg, value in pairs.items() for part in ("--build-arg", f"{arg}={value}")]


def podman_build(env: Dict[str, str], dockerfile: Path, context: Path, tag: str,
                 runtime: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", "build", "--isolation", "chroot", "--format", "docker", "--layers",
                           *build_args(runtime), "-f", str(dockerfile), "-t", tag, str(context)],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                          timeout=1800)


def image_config(env: Dict[str, str], tag: str) -> Dict[str, Any]:
    proc = subprocess.run(["podman", "image", "inspect", tag], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)[0]


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback URLs of the test)
        return response.read().decode()


class Server:
    """The image's server started with `buildah run` in a working container, stopped with its process group."""

    def __init__(self, env: Dict[str, str], image: str, log: Path) -> None:
        self.env, self.image, self.log = env, image, log
        self.working = ""
        self.proc: subprocess.Popen | None = None

    def start(self, options: List[str], command: List[str]) -> None:
        made = subprocess.run(["buildah", "from", "--pull-never", "--name", f"t-rt-{uuid.uuid4().hex[:8]}", self.image],
                              env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        assert made.returncode == 0, made.stderr
        self.working = made.stdout.strip().splitlines()[-1]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(["buildah", "run", "--isolation", "chroot", *options, self.working, "--",
                                          *command], env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        if self.working:
            subprocess.run(["buildah", "rm", self.working], env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, check=False)

    def tail(self) -> str:
        return self.log.read_text()[-6000:] if self.log.exists() else "(no log)"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def container_env() -> Dict[str, str]:
    return {**os.environ, **image_tools.container_env()}


@pytest.fixture(scope="module")
def base_image(container_env: Dict[str, str]) -> str:
    return image_tools.base_image(container_env)


def built_image(runtime: str, container_env: Dict[str, str], tmp_path_factory) -> Iterator[Dict[str, Any]]:
    """Render, build (timed) and yield the runtime's image. The image and its layers stay in the cached storage:
    the next run, and test_serving's deploy of the same template (a cold machine builds each image once), reuse
    them."""
    out = tmp_path_factory.mktemp(runtime)
    ports = {name: free_port() for name in PORTS[runtime]}
    run = render(runtime, ENTRIES[runtime], ports, out)
    entry = run["entry"]
    tag = f"{entry['image']['repository']}:{entry['image']['tag']}"
    started = time.monotonic()
    proc = podman_build(container_env, out / "Dockerfile", Path(entry["image"]["build"]["context"]), tag, runtime)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, f"{runtime} image build failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    yield {"tag": tag, "out": out, "ports": ports, "run": run, "seconds": seconds,
           "config": image_config(container_env, tag)}


@pytest.fixture(scope="module")
def triton_image(base_image: str, container_env: Dict[str, str], tmp_path_factory) -> Iterator[Dict[str, Any]]:
    yield from built_image("triton", container_env, tmp_path_factory)


@pytest.fixture(scope="module")
def torchserve_image(base_image: str, container_env: Dict[str, str], tmp_path_factory) -> Iterator[Dict[str, Any]]:
    yield from built_image("torchserve", container_env, tmp_path_factory)


def report(runtime: str, image: Dict[str, Any], ready_s: float) -> None:
    size_mb = image["config"]["Size"] / 1e6
    print(f"\n{runtime} image: build {image['seconds']:.0f} s, {size_mb:.0f} MB; server start to ready {ready_s:.1f} s")


# --------------------------------------------------------------------------- tests


def test_triton_serves_a_python_backend_model_on_cpu(triton_image: Dict[str, Any], container_env: Dict[str, str],
                                                     tmp_path: Path) -> None:
    config = triton_image["config"]["Config"]
    assert config["User"] == "1000:1000"
    assert config["Cmd"] == ["tritonserver", "--model-repository=/models"]
    args = triton_image["run"]["args"]
    assert "--model-control-mode=explicit" in args and "--load-model=double" in args, args
    http = triton_image["ports"]["triton_http_port"]
    metrics = triton_image["ports"]["triton_metrics_port"]
    server = Server(container_env, triton_image["tag"], tmp_path / "triton.log")
    try:
        started = time.monotonic()
        server.start([], ["tritonserver", *args])
        wait_for(f"http://127.0.0.1:{http}/v2/health/ready", 180)
        ready_s = time.monotonic() - started
        assert http_json(f"http://127.0.0.1:{http}/v2/models/double")["platform"] == "python"
        result = http_json(f"http://127.0.0.1:{http}/v2/models/double/infer",
                           data={"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [1, 2, 3.5]}]})
        assert result["outputs"][0]["name"] == "OUTPUT0"
        assert result["outputs"][0]["data"] == [2.0, 4.0, 7.0], result
        # The role's ServiceMonitor scrapes this: the request above is counted.
        assert 'nv_inference_request_success{model="double",version="1"} 1' in http_text(
            f"http://127.0.0.1:{metrics}/metrics")
        with pytest.raises(urllib.error.HTTPError) as missing:
            http_json(f"http://127.0.0.1:{http}/v2/models/nothing/infer", data={"inputs": []})
        assert missing.value.code in (400, 404)
        report("triton", triton_image, ready_s)
    except Exception:
        print(server.tail())
        raise
    finally:
        server.stop()


def test_torchserve_serves_a_mar_made_in_the_build(torchserve_image: Dict[str, Any], container_env: Dict[str, str],
                                                    tmp_path: Path) -> None:
    config = torchserve_image["config"]["Config"]
    assert config["User"] == "1000:1000"
    assert config["Cmd"][0] == "torchserve" and "doubler=doubler.mar" in config["Cmd"]
    args = torchserve_image["run"]["args"]
    inference = torchserve_image["ports"]["torchserve_inference_port"]
    management = torchserve_image["ports"]["torchserve_management_port"]
    metrics = torchserve_image["ports"]["torchserve_metrics_port"]
    # As the Deployment does: the role's config.properties mounted, its working directory.
    options = ["--volume", f"{torchserve_image['out'] / 'config'}:/home/model-server/config:ro",
               "--workingdir", "/home/model-server/tmp"]
    server = Server(container_env, torchserve_image["tag"], tmp_path / "torchserve.log")
    try:
        started = time.monotonic()
        server.start(options, ["torchserve", *args])
        wait_for(f"http://127.0.0.1:{inference}/ping", 180)
        # /ping answers before the worker has loaded the model: wait for the worker too.
        deadline = time.monotonic() + 120
        while True:
            workers = http_json(f"http://127.0.0.1:{management}/models/doubler")[0]["workers"]
            if workers and workers[0]["status"] == "READY":
                break
            assert time.monotonic() < deadline, f"the doubler worker never got READY: {workers}"
            time.sleep(0.5)
        ready_s = time.monotonic() - started
        assert http_json(f"http://127.0.0.1:{inference}/ping")["status"] == "Healthy"
        model = http_json(f"http://127.0.0.1:{management}/models/doubler")[0]
        assert model["modelVersion"] == "1.0" and model["modelUrl"] == "doubler.mar", model
        assert http_json(f"http://127.0.0.1:{inference}/predictions/doubler", data={"data": [1, 2, 3.5]}) == [2.0, 4.0, 7.0]
        assert "ts_inference_requests_total" in http_text(f"http://127.0.0.1:{metrics}/metrics")
        report("torchserve", torchserve_image, ready_s)
    except Exception:
        print(server.tail())
        raise
    finally:
        server.stop()


def test_torchserve_build_without_the_model_names_the_fix(torchserve_image: Dict[str, Any],
                                                          container_env: Dict[str, str], tmp_path: Path) -> None:
    """A context with neither model-src/ nor model-store/: the build fails and says what to add."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "notes.txt").write_text("no handler here\n")
    tag = f"localhost/ai-serving-test/torchserve-broken:{uuid.uuid4().hex[:8]}"
    proc = podman_build(container_env, torchserve_image["out"] / "Dockerfile", context, tag, "torchserve")
    subprocess.run(["podman", "rmi", "--force", tag], env=container_env, stdin=subprocess.DEVNULL,
                   capture_output=True, check=False)
    assert proc.returncode != 0
    assert ("torchserve: no doubler.mar: put the handler in model-src/ or the archive in model-store/ "
            "of the build context") in proc.stderr, proc.stderr[-3000:]
