"""The canary's route splits on a real API server with their CRDs installed (issue 15): split ``gateway`` (Gateway API
``HTTPRoute`` backend weights) and split ``istio`` (``DestinationRule`` subsets, ``VirtualService`` weights and the A/B
header rule) run their steps, and at each step the objects in the cluster are exactly what the step asked for.

The CRDs are Gateway API's standard channel and Istio's, pinned in cluster/versions.env and fetched from the Go module
proxy by ``cluster/build.sh crds``; the test installs those the cluster lacks and deletes them after (with them served,
``split: auto`` would pick Istio for other tests). **No data plane runs here**: no Gateway controller, no Istio proxy,
so the weights route no request and the share each version gets cannot be measured. The pods are kwok's (no server),
so the analysis has no metrics to read: the canary has ``min_requests: 0`` (a step passes on its pause; the plan warns)
and the test observes the steps by reading the objects every 0.1 s while the deploy runs: the route's weights, the
version Services' or subsets' selectors, the canary's and the stable version's replicas. The analysis of real metrics
runs on the real node (test_canary_real.py, split replicas).

Runs on any cluster the other integration tests use; a real node is not needed (AI_SERVING_REAL_NODE=0 is fine).
"""

from __future__ import annotations

import copy
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import yaml

from playbooks import REPO_ROOT, baseline_namespace, run_playbook, start_playbook

MODEL = "image-classifier"
CANARY_NAME = f"{MODEL}-canary"
CATALOG_FILE = REPO_ROOT / "inventories" / "shared" / "group_vars" / "all" / "models.yml"
STEPS = [{"weight": 25, "pause": "3s"}, {"weight": 50, "pause": "3s"}]
ANALYSIS = {"interval": "1s", "min_requests": 0, "error_ratio": {"max": 0.05}}
#: The CRDs the splits need, by the name the API server gives them.
ROUTE_CRDS = ("httproutes.gateway.networking.k8s.io", "virtualservices.networking.istio.io",
              "destinationrules.networking.istio.io")
HTTP_PORT_NAMES = ("http", "rest", "inference")


def crd_documents() -> List[Dict[str, Any]]:
    proc = subprocess.run([str(REPO_ROOT / "cluster" / "build.sh"), "crds"], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"cluster/build.sh crds failed:\n{proc.stderr[-3000:]}")
    directory = Path(proc.stdout.strip().splitlines()[-1])
    documents = []
    for path in sorted(directory.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "CustomResourceDefinition"]
    return documents


@pytest.fixture(scope="module")
def route_crds(api_client) -> Iterator[None]:
    """Gateway API's and Istio's CRDs, installed where missing (and Established), deleted after if installed here."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(api_client)
    existing = {crd.metadata.name for crd in ext.list_custom_resource_definition().items}
    created = []
    for document in crd_documents():
        name = document["metadata"]["name"]
        if name in existing:
            continue
        ext.create_custom_resource_definition(document)
        created.append(name)
    try:
        deadline = time.monotonic() + 60
        for name in ROUTE_CRDS:
            while not any(c.type == "Established" and c.status == "True"
                          for c in ext.read_custom_resource_definition(name).status.conditions or []):
                assert time.monotonic() < deadline, f"CRD {name} not Established in 60 s"
                time.sleep(0.5)
        time.sleep(2)  # the API server's discovery picks the new kinds up
        yield
    finally:
        for name in created:
            try:
                ext.delete_custom_resource_definition(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture(scope="module")
def namespace(core_v1, route_crds) -> Iterator[str]:
    with baseline_namespace(core_v1, "t-canary-routes", {"requests.nvidia.com/gpu": "16", "pods": "50"}) as name:
        yield name


def catalog(canary: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The shared catalog, image-classifier with 4 replicas (and the canary) in the local environment."""
    models = yaml.safe_load(CATALOG_FILE.read_text())["ai_serving_models"]
    local: Dict[str, Any] = {"replicas": 4}
    if canary:
        local["strategy"] = {"canary": canary}
    models[MODEL]["environments"]["local"] = local
    return {"ai_serving_models": models}


def custom(api_client):
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


def read_route(api_client, namespace: str, split: str) -> Optional[Dict[str, Any]]:
    from kubernetes.client.rest import ApiException

    group, version, plural = (("gateway.networking.k8s.io", "v1", "httproutes") if split == "gateway"
                              else ("networking.istio.io", "v1", "virtualservices"))
    try:
        return custom(api_client).get_namespaced_custom_object(group, version, namespace, plural, MODEL)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def read_destination_rule(api_client, namespace: str) -> Optional[Dict[str, Any]]:
    from kubernetes.client.rest import ApiException

    try:
        return custom(api_client).get_namespaced_custom_object("networking.istio.io", "v1", namespace,
                                                               "destinationrules", MODEL)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def replicas(apps_v1, namespace: str, name: str) -> Optional[int]:
    from kubernetes.client.rest import ApiException

    try:
        return apps_v1.read_namespaced_deployment(name, namespace).spec.replicas
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def selector_of(core_v1, namespace: str, name: str) -> Optional[Dict[str, str]]:
    from kubernetes.client.rest import ApiException

    try:
        return dict(core_v1.read_namespaced_service(name, namespace).spec.selector or {})
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def route_spec(route: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The spec the deploy set: an HTTPRoute's rules lose the path match the API server defaults in."""
    if route is None:
        return None
    spec = copy.deepcopy(route["spec"])
    for rule in spec.get("rules") or []:
        if rule.get("matches") == [{"path": {"type": "PathPrefix", "value": "/"}}]:
            del rule["matches"]
    return spec


def watch_deploy(api_client, core_v1, apps_v1, kubeconfig: str, namespace: str, split: str,
                 extra: Dict[str, Any]) -> Tuple[Any, List[Dict[str, Any]]]:
    """Run the deploy and read the objects every 0.1 s meanwhile: the distinct states, in order."""
    started = start_playbook("deploy_model.yml", kubeconfig, extra)
    states: List[Dict[str, Any]] = []
    deadline = time.monotonic() + 600
    while started.proc.poll() is None:
        assert time.monotonic() < deadline, started.output_so_far()
        state = {"route": route_spec(read_route(api_client, namespace, split)),
                 "canary": replicas(apps_v1, namespace, CANARY_NAME),
                 "stable": replicas(apps_v1, namespace, MODEL)}
        if split == "gateway":
            state["services"] = {track: selector_of(core_v1, namespace, f"{MODEL}-{track}")
                                 for track in ("stable", "canary")}
        else:
            rule = read_destination_rule(api_client, namespace)
            state["subsets"] = rule["spec"]["subsets"] if rule else None
        if not states or states[-1] != state:
            states.append(state)
        time.sleep(0.1)
    return started.finish(120), states


def model_service(core_v1, namespace: str) -> Tuple[Dict[str, str], int]:
    service = core_v1.read_namespaced_service(MODEL, namespace)
    port = next(p.port for name in HTTP_PORT_NAMES for p in service.spec.ports if p.name == name)
    return dict(service.spec.selector), port


def stable_hash(apps_v1, namespace: str) -> str:
    """The pod-template-hash of the stable Deployment's current ReplicaSet (the newest revision)."""
    sets = [rs for rs in apps_v1.list_namespaced_replica_set(namespace).items
            if any(o.name == MODEL for o in rs.metadata.owner_references or [])]
    newest = max(sets, key=lambda rs: int(rs.metadata.annotations["deployment.kubernetes.io/revision"]))
    return newest.metadata.labels["pod-template-hash"]


def deploy_first(kubeconfig: str, namespace: str) -> None:
    first = run_playbook("deploy_model.yml", kubeconfig, {"model": MODEL, "ai_namespace_name": namespace,
                                                          **catalog(None)})
    assert first.returncode == 0, first.explain()


def distinct(states: List[Dict[str, Any]], key: str) -> List[Any]:
    seen: List[Any] = []
    for state in states:
        if state[key] is not None and (not seen or seen[-1] != state[key]):
            seen.append(state[key])
    return seen


def test_a_gateway_canary_sets_the_httproute_weights_of_each_step(api_client, core_v1, apps_v1, kubeconfig: str,
                                                                 namespace: str) -> None:
    deploy_first(kubeconfig, namespace)
    selector, port = model_service(core_v1, namespace)
    old_hash = stable_hash(apps_v1, namespace)
    extra = {"model": MODEL, "ai_namespace_name": namespace, "ai_serving_pod_annotations": {"example.com/release": "2"},
             **catalog({"steps": STEPS, "split": "gateway", "analysis": ANALYSIS})}
    run, states = watch_deploy(api_client, core_v1, apps_v1, kubeconfig, namespace, "gateway", extra)
    assert run.returncode == 0, run.explain()
    for line in ["warning: analysis.min_requests is 0: a step passes without any canary request",
                 "Canary | Step 1: 25% for 3s (1 canary, 4 stable pod(s)) [changed]",
                 "Canary | Step 2: 50% for 3s (2 canary, 4 stable pod(s)) [changed]",
                 "Canary | Promote: every request to the model's Service, the stable Deployment takes the new version "
                 "(4 pod(s)), then the route and the canary's 2 pod(s) go [changed]"]:
        assert line in run.output, run.explain()

    def backend(name: str, weight: int) -> Dict[str, Any]:
        return {"group": "", "kind": "Service", "name": name, "port": port, "weight": weight}

    parent = [{"group": "", "kind": "Service", "name": MODEL}]
    # Each step's route exactly, then the promotion's (every request to the model's Service), in that order.
    assert distinct(states, "route") == [
        {"parentRefs": parent, "rules": [{"backendRefs": [backend(f"{MODEL}-stable", 75), backend(CANARY_NAME, 25)]}]},
        {"parentRefs": parent, "rules": [{"backendRefs": [backend(f"{MODEL}-stable", 50), backend(CANARY_NAME, 50)]}]},
        {"parentRefs": parent, "rules": [{"backendRefs": [backend(MODEL, 100)]}]},
    ], states
    # While a step's route was there: its canary pods, the stable version at its 4, the version Services' selectors.
    for weight, canary_pods in ((25, 1), (50, 2)):
        during = [s for s in states if s["route"] and s["route"]["rules"][0]["backendRefs"][-1]["weight"] == weight
                  and len(s["route"]["rules"][0]["backendRefs"]) == 2]
        # The route comes after its step's canary pods rolled out; the next step's pods come up before its route
        # (capacity first), so the last states under a route may show them already.
        assert during and during[0]["canary"] == canary_pods, during
        assert all(s["canary"] in (canary_pods, canary_pods + 1) and s["stable"] == 4 for s in during), during
        assert all(s["services"] == {"stable": dict(selector, **{"pod-template-hash": old_hash}),
                                     "canary": dict(selector, **{"creativeflow.ai/track": "canary"})}
                   for s in during), during
    # Nothing of the canary is left; the stable Deployment runs the new version.
    assert read_route(api_client, namespace, "gateway") is None
    assert selector_of(core_v1, namespace, f"{MODEL}-stable") is None
    assert selector_of(core_v1, namespace, CANARY_NAME) is None
    assert replicas(apps_v1, namespace, CANARY_NAME) is None
    stable = apps_v1.read_namespaced_deployment(MODEL, namespace)
    assert stable.spec.replicas == 4 and stable.spec.template.metadata.annotations["example.com/release"] == "2"
    print(f"gateway: {len(states)} distinct states seen, routes: {len(distinct(states, 'route'))}")


def test_an_istio_canary_sets_the_virtualservice_weights_and_header_rule_of_each_step(
        api_client, core_v1, apps_v1, kubeconfig: str, namespace: str) -> None:
    # The model was deployed by the gateway test (or is deployed here when this test runs alone).
    if replicas(apps_v1, namespace, MODEL) is None:
        deploy_first(kubeconfig, namespace)
    old_hash = stable_hash(apps_v1, namespace)
    host = f"{MODEL}.{namespace}.svc.cluster.local"
    canary = {"steps": STEPS, "split": "istio", "header": {"name": "x-canary", "value": "1"}, "analysis": ANALYSIS}
    extra = {"model": MODEL, "ai_namespace_name": namespace, "ai_serving_pod_annotations": {"example.com/release": "3"},
             **catalog(canary)}
    run, states = watch_deploy(api_client, core_v1, apps_v1, kubeconfig, namespace, "istio", extra)
    assert run.returncode == 0, run.explain()
    assert "A/B: requests with header x-canary: 1 always go to the canary" in run.output, run.explain()

    def weighted(weight: int) -> Dict[str, Any]:
        return {"hosts": [host], "http": [
            {"name": "ab-canary", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
             "route": [{"destination": {"host": host, "subset": "canary"}}]},
            {"name": "weighted", "route": [{"destination": {"host": host, "subset": "stable"}, "weight": 100 - weight},
                                           {"destination": {"host": host, "subset": "canary"}, "weight": weight}]}]}

    assert distinct(states, "route") == [
        weighted(25), weighted(50),
        {"hosts": [host], "http": [{"name": "promotion", "route": [{"destination": {"host": host}}]}]},
    ], states
    for weight, canary_pods in ((25, 1), (50, 2)):
        during = [s for s in states if s["route"] == weighted(weight)]
        assert during and during[0]["canary"] == canary_pods, during
        assert all(s["canary"] in (canary_pods, canary_pods + 1) and s["stable"] == 4 for s in during), during
        assert all(s["subsets"] == [{"name": "stable", "labels": {"pod-template-hash": old_hash}},
                                    {"name": "canary", "labels": {"creativeflow.ai/track": "canary"}}]
                   for s in during), during
    assert read_route(api_client, namespace, "istio") is None and read_destination_rule(api_client, namespace) is None
    assert replicas(apps_v1, namespace, CANARY_NAME) is None
    stable = apps_v1.read_namespaced_deployment(MODEL, namespace)
    assert stable.spec.replicas == 4 and stable.spec.template.metadata.annotations["example.com/release"] == "3"
    print(f"istio: {len(states)} distinct states seen")


# ---- on the real node: the route split judged by the real pods' metrics ----

REAL_MODEL = "doubler-python-cpu"
REAL_STEPS = [{"weight": 25, "pause": "15s"}, {"weight": 50, "pause": "15s"}]


def real_models(release: str, canary: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    from serving_tools import catalog as serving_catalog

    entries = copy.deepcopy(serving_catalog())
    entry = entries[REAL_MODEL]
    entry["replicas"] = 4
    entry["env"] = dict(entry.get("env") or {}, RELEASE=release)
    if canary:
        entry["strategy"] = dict(entry.get("strategy") or {}, canary=canary)
    return entries


def test_a_gateway_canary_on_the_real_node_is_judged_by_its_pods_metrics(api_client, core_v1, apps_v1,
                                                                        kubeconfig: str, route_crds) -> None:
    """Split gateway on the real node, under a load through the model's Service: the steps set the HTTPRoute's
    weights as on kwok, and the analysis reads the real pods' metrics (min_requests 10). No data plane applies the
    weights, so the load reaches the versions by their pods (1 canary beside 4 stable: 20%, then 2 beside 4: 33%);
    the measured shares are printed against those. Skipped without the real node."""
    from serving_tools import Load, proxy_for
    from serving_tools import catalog as serving_catalog
    from test_deploy_safety import real_node_namespace

    extra = {"model": REAL_MODEL, "ai_namespace_name": "", "ai_serving_models": real_models("1")}
    with real_node_namespace(kubeconfig, core_v1, "t-canary-gw-real", extra) as real:
        canary = {"steps": REAL_STEPS, "split": "gateway",
                  "analysis": {"interval": "5s", "min_requests": 10, "error_ratio": {"max": 0.05}}}
        extra = {"model": REAL_MODEL, "ai_namespace_name": real["namespace"],
                 "ai_serving_models": real_models("2", canary)}
        with Load(proxy_for(api_client, real["namespace"], "custom_python"), "custom_python",
                  serving_catalog()[REAL_MODEL]["smoke"], rate=8) as load:
            run = run_playbook("deploy_model.yml", kubeconfig, extra, env=real["env"], timeout=900)
            time.sleep(2)
        line = load.report("a gateway canary on the real node, promoted")
        assert run.returncode == 0, run.explain()
        for step, pods in ((1, "1 canary, 4 stable pod(s)"), (2, "2 canary, 4 stable pod(s)")):
            assert f"Canary | Step {step}: {REAL_STEPS[step - 1]['weight']}% for 15s ({pods}) [changed]" in run.output, \
                run.explain()
        shares = [float(m) for m in re.findall(r"Canary \| Step \d+: .*?\(share ([\d.]+)%\)", run.output)]
        print(f"gateway on the real node: canary shares {shares} (the pods give 20.0 and 33.3 without a data plane)")
        assert len(shares) == 2
        assert load.failures == [], f"{line}: {load.failures[:10]}"
        env = {e.name: e.value for e in
               apps_v1.read_namespaced_deployment(REAL_MODEL, real["namespace"]).spec.template.spec.containers[0].env}
        assert env["RELEASE"] == "2"
        assert read_route(api_client, real["namespace"], "gateway") is None
