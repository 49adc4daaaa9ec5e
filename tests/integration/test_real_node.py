"""The local cluster's real node: a kubelet that runs real containers (containerd,
runc, CNI bridge, kube-proxy) beside the simulated nodes.

Real pods pull an image built here (the Debian Python base) from the cluster's
registry; probes, logs, exec, port-forward, Services and CrashLoopBackOff are
the kubelet's, not kwok's. The lifecycle test (kill, `up`, `down` leaves
nothing) takes the session cluster down, so conftest runs it last.
Traffic goes only to loopback, the node's bridge and Service IPs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from test_cluster_lifecycle import live_processes

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / "cluster" / "cluster.sh"
IMAGES_SH = REPO_ROOT / "cluster" / "images.sh"
REAL_NODE = "real-0"
REAL_TOLERATION = {"key": "creativeflow.ai/real-node", "operator": "Exists", "effect": "NoSchedule"}
RUN_DIR = Path(os.environ.get("AI_SERVING_REAL_NODE_RUN_DIR", "/run/creativeflow-ai-serving"))

pytestmark = pytest.mark.local_cluster
# Local addresses only: no proxy from the environment in between.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def sh(*args, env: dict | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def get_json(kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def real_pod(name: str, image: str, command: str, **container) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"creativeflow.ai/real-node": "true"},
            "tolerations": [REAL_TOLERATION],
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": image, "command": ["sh", "-c", command], **container}],
        },
    }


@pytest.fixture(scope="module")
def registry(kubeconfig: str) -> str:
    return sh(CLUSTER_SH, "registry").stdout.strip()


@pytest.fixture(scope="module")
def python_image(registry: str) -> str:
    """The Debian Python base (hack/base_image.sh), pushed to the cluster's registry."""
    ref = f"{registry}/ai-serving/python-base:bookworm"
    sh(IMAGES_SH, "base", ref, timeout=900)
    return ref


def test_real_node_is_ready_and_the_kubelets_own(kubectl):
    node = get_json(kubectl, "node", REAL_NODE)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    info = node["status"]["nodeInfo"]
    versions = dict(line.split("=", 1) for line in (REPO_ROOT / "cluster" / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert info["kubeletVersion"] == versions["KUBE_VERSION"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    # kwok manages annotated nodes only; this one is not, and it is tainted so
    # pods meant for simulated nodes never land on it.
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    assert {"key": "creativeflow.ai/real-node", "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    # The kubelet renews the node's Lease itself.
    lease = wait_for(lambda: kubectl("get", "lease", "-n", "kube-node-lease", REAL_NODE, "-o", "json", check=False).stdout,
                     30, "the real node's Lease")
    assert json.loads(lease)["spec"]["holderIdentity"] == REAL_NODE


def test_kubelet_refuses_anonymous_requests(kubectl):
    node = get_json(kubectl, "node", REAL_NODE)
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    result = sh("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"https://{address}:{port}/pods", check=False)
    assert result.stdout == "401", result.stdout


def test_pod_from_local_registry_serves_through_a_service(kubectl, namespace, python_image):
    serve = ("mkdir -p /tmp/www && echo \"hello from $(hostname)\" > /tmp/www/hello.txt && "
             "exec python3 -u -m http.server 8080 --directory /tmp/www")
    pod = real_pod("web", python_image, serve, ports=[{"containerPort": 8080}],
                   readinessProbe={"httpGet": {"path": "/hello.txt", "port": 8080}, "periodSeconds": 1})
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(pod))
    kubectl("expose", "-n", namespace, "pod/web", "--port=80", "--target-port=8080")
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/web", "--timeout=180s")
    status = get_json(kubectl, "-n", namespace, "pod/web")
    assert status["spec"]["nodeName"] == REAL_NODE
    assert status["status"]["podIP"].startswith("10.244.")

    # The readiness probe's requests reached the real server: its access log says so.
    logs = wait_for(lambda: (out := kubectl("logs", "-n", namespace, "web").stdout).count("GET /hello.txt") and out,
                    30, "probe requests in the pod's log")
    assert '"GET /hello.txt HTTP/1.1" 200' in logs
    assert kubectl("exec", "-n", namespace, "web", "--", "python3", "-c", "print(6 * 7)").stdout.strip() == "42"

    # Through the API server's service proxy, as a controller that reaches only the API would ask.
    body = wait_for(lambda: kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/services/web:80/proxy/hello.txt",
                                    check=False).stdout, 30, "the service proxy answer")
    assert body.strip() == "hello from web"
    # From the host, through kube-proxy's ClusterIP rules.
    cluster_ip = get_json(kubectl, "-n", namespace, "service/web")["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.96.")

    def fetch() -> str:
        try:
            with DIRECT.open(f"http://{cluster_ip}/hello.txt", timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    assert wait_for(fetch, 30, f"ClusterIP {cluster_ip} from the host").strip() == "hello from web"


def test_port_forward_reaches_the_pod(kubeconfig, kubectl, namespace, python_image):
    pod = real_pod("fwd", python_image, "exec python3 -m http.server 8080",
                   readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1})
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(pod))
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/fwd", "--timeout=180s")
    forward = subprocess.Popen(["kubectl", "--kubeconfig", kubeconfig, "port-forward", "-n", namespace, "pod/fwd",
                                "--address", "127.0.0.1", ":8080"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+) ->", line)
        assert match, f"no port from kubectl port-forward: {line!r} {forward.stderr.read() if forward.poll() else ''}"
        with DIRECT.open(f"http://127.0.0.1:{match.group(1)}/", timeout=10) as resp:
            assert resp.status == 200 and b"Directory listing" in resp.read()
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_exiting_container_reaches_crashloopbackoff(kubectl, namespace, python_image):
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(real_pod("crash", python_image, "echo bye; exit 3")))

    def waiting_reason():
        statuses = get_json(kubectl, "-n", namespace, "pod/crash")["status"].get("containerStatuses") or []
        return statuses and (statuses[0].get("state", {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff" \
            and statuses[0]
    status = wait_for(waiting_reason, 120, "CrashLoopBackOff")
    assert status["restartCount"] >= 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    # The pod's status can name a previous container the kubelet has already replaced and removed
    # (it keeps one dead container a pod): ask again until the status and the node agree.
    previous = []

    def previous_logs():
        previous.append(kubectl("logs", "-n", namespace, "crash", "--previous", check=False).stdout.strip())
        return previous[-1] == "bye"
    assert wait_for(previous_logs, 60, "logs --previous"), previous[-3:]


# A pod's in-cluster client: the kubernetes Service's address from the environment, the ServiceAccount's CA and token.
WHO_AM_I = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
url = "https://%s:%s/apis/authentication.k8s.io/v1/selfsubjectreviews" % (
    os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
request = urllib.request.Request(url, data=body, method="POST", headers={
    "Authorization": "Bearer " + open(sa + "/token").read().strip(), "Content-Type": "application/json"})
context = ssl.create_default_context(cafile=sa + "/ca.crt")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
with opener.open(request, timeout=10) as response:
    print("user", json.load(response)["status"]["userInfo"]["username"])
"""


def test_pods_reach_the_api_server_with_their_service_account(kubectl, namespace, python_image):
    """In-cluster clients work on the real node: the kubernetes Service leads to the API server (which listens on
    127.0.0.1) through the bridge, its certificate verifies against the ServiceAccount's CA for the Service's IP, and
    the pod's token authenticates it."""
    pod = real_pod("whoami", python_image, "exec python3 -c \"$SCRIPT\"", env=[{"name": "SCRIPT", "value": WHO_AM_I}])
    pod["spec"]["restartPolicy"] = "Never"
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(pod))
    phase = wait_for(lambda: get_json(kubectl, "-n", namespace, "pod/whoami")["status"].get("phase") in
                     ("Succeeded", "Failed") and get_json(kubectl, "-n", namespace, "pod/whoami")["status"]["phase"],
                     180, "the pod's end")
    logs = kubectl("logs", "-n", namespace, "whoami", check=False).stdout
    assert phase == "Succeeded", logs
    assert logs.strip() == f"user system:serviceaccount:{namespace}:default"
    service = get_json(kubectl, "-n", "default", "endpoints/kubernetes")["subsets"][0]["addresses"][0]["ip"]
    assert service == "10.244.0.1"


@pytest.mark.cluster_teardown
def test_kill_up_twice_and_down_leaves_nothing(kubeconfig):
    """Runs last (conftest): it takes the session cluster down."""
    cluster_dir = Path(kubeconfig).parent
    pids = cluster_dir / "pids"
    name = cluster_dir.name

    def kubelets() -> list[str]:
        return [p for p in live_processes(f"{cluster_dir}/node/kubelet.yaml") if "/kubelet " in p]

    assert len(kubelets()) == 1
    os.kill(int((pids / "kubelet.pid").read_text()), 9)
    again = sh(CLUSTER_SH, "up")
    assert "restarting stopped real node components: kubelet" in again.stderr
    kubelet_pid = (pids / "kubelet.pid").read_text().strip()
    sh(CLUSTER_SH, "up")
    assert (pids / "kubelet.pid").read_text().strip() == kubelet_pid
    assert len(kubelets()) == 1
    status = sh(CLUSTER_SH, "status").stdout
    for component in ("registry", "registry-pods", "registry-blobs", "apiserver-pods", "containerd", "kubelet",
                      "kube-proxy"):
        assert f"{component}: running" in status
    assert REAL_NODE in status

    saved = dict(line.split("=", 1) for line in (RUN_DIR / "real-node.sysctl").read_text().splitlines() if line)
    sh(CLUSTER_SH, "down")

    assert live_processes(f"/clusters/{name}/") == []
    assert live_processes("bind=10.244.0.1,reuseaddr,fork") == []  # the API server's forwarder for the pods
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert [m for m in mounts if m.startswith(str(cluster_dir)) or "/netns/cni-" in m] == []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = sh(tool, "-t", table, "-S", check=False).stdout
            assert not re.search(r"^-N (KUBE|CNI)-", rules, re.M), f"{tool} -t {table} keeps chains:\n{rules}"
    assert sh("ip", "link", "show", "aisrv0", check=False).returncode != 0
    for key, value in saved.items():
        assert Path("/proc/sys", key.replace(".", "/")).read_text().strip() == value, key
    assert not (RUN_DIR / "real-node.owner").exists()

    # With the machine's real node free, a bridge name already taken is refused, naming it, before anything starts.
    busy = "aisrvbusy0"
    sh("ip", "link", "add", busy, "type", "bridge")
    try:
        other = {"AI_SERVING_CLUSTER_NAME": f"{name}-busy", "AI_SERVING_REAL_NODE_BRIDGE": busy}
        result = sh(CLUSTER_SH, "up", env=other, check=False)
        assert result.returncode != 0
        assert f"network interface {busy} already exists" in result.stderr and "AI_SERVING_REAL_NODE_BRIDGE" in result.stderr
        assert live_processes(f"/clusters/{name}-busy/") == []
        sh(CLUSTER_SH, "down", env=other)
    finally:
        sh("ip", "link", "del", busy, check=False)
