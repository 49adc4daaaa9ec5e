# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of a canary step's objects, built from what manifests.py renders for a model."""

from __future__ import annotations

import copy
from typing import Any, Dict, Tuple

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import manifests, runtimes
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.traffic import (
    TEMPLATE_ANNOTATION,
    canary_deployment,
    canary_of_version,
    destination_rule,
    http_port,
    http_route,
    name_problem,
    removal_order,
    step_objects,
    template_digest,
    version_service,
    virtual_service,
)

NS = "ai-serving"
HOST = "fraud.ai-serving.svc.cluster.local"
HASH = "6d4f8b7c9"


def rendered(service_type: str = "NodePort") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The model's Deployment and Service as the deploy renders them (custom_python: ports http and grpc)."""
    model = {"name": "fraud", "runtime": "custom_python", "replicas": 4,
             "image": {"repository": "registry.example.com/fraud", "tag": "2.0"},
             "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
             "custom_python": {"model_format": "sklearn", "model_path": "/models/model.joblib"},
             "service": {"type": service_type, "node_ports": {"http": 30080}} if service_type != "ClusterIP" else {}}
    spec = runtimes.server_spec("custom_python", model)
    settings = manifests.Settings(namespace=NS)
    return manifests.deployment(spec, model, settings, 4)[0], manifests.service(spec, model, settings)[0]


def labels(**extra: str) -> Dict[str, str]:
    out = {"app.kubernetes.io/name": "fraud", "app.kubernetes.io/instance": "fraud",
           "app.kubernetes.io/component": "model-server", "app.kubernetes.io/part-of": "ai-serving",
           "app.kubernetes.io/managed-by": "creativeflow.ai_serving", "creativeflow.ai/runtime": "custom_python",
           "creativeflow.ai/model-name": "fraud"}
    out.update(extra)
    return out


SELECTOR = {"app.kubernetes.io/component": "model-server", "creativeflow.ai/model-name": "fraud"}


def test_canary_deployment_is_the_new_version_with_the_track_label():
    deployment, _service = rendered()
    before = copy.deepcopy(deployment)
    canary = canary_deployment(deployment, 2)
    assert deployment == before  # not modified
    assert canary["metadata"] == {"name": "fraud-canary", "namespace": NS,
                                  "labels": labels(**{"app.kubernetes.io/version": "2.0",
                                                      "creativeflow.ai/track": "canary"}),
                                  "annotations": {TEMPLATE_ANNOTATION: template_digest(deployment)}}
    assert canary["spec"]["replicas"] == 2
    assert canary["spec"]["selector"] == {"matchLabels": dict(SELECTOR, **{"creativeflow.ai/track": "canary"})}
    assert canary["spec"]["template"]["metadata"]["labels"] == labels(**{"app.kubernetes.io/version": "2.0",
                                                                         "creativeflow.ai/track": "canary"})
    # the pods are the model's pods otherwise: same containers, same security, the Service selects them
    assert canary["spec"]["template"]["spec"] == deployment["spec"]["template"]["spec"]
    assert all(canary["spec"]["template"]["metadata"]["labels"][key] == value for key, value in SELECTOR.items())


def test_http_port_is_the_runtimes_http_port():
    _deployment, service = rendered()
    assert http_port(service) == {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP",
                                  "nodePort": 30080}
    grpc_only = copy.deepcopy(service)
    grpc_only["spec"]["ports"] = [port for port in grpc_only["spec"]["ports"] if port["name"] == "grpc"]
    with pytest.raises(ValueError) as raised:
        http_port(grpc_only)
    assert str(raised.value) == ("Service fraud has no HTTP port (one named http, rest, inference) a route could "
                                 "carry: its ports are grpc")


def test_version_services_select_one_version_each():
    _deployment, service = rendered()
    stable = version_service(service, "stable", HASH)
    canary = version_service(service, "canary")
    port = {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}  # no nodePort: ClusterIP
    assert stable == {"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "fraud-stable", "namespace": NS,
                                   "labels": labels(**{"creativeflow.ai/track": "stable"})},
                      "spec": {"type": "ClusterIP", "selector": dict(SELECTOR, **{"pod-template-hash": HASH}),
                               "ports": [port]}}
    assert canary["metadata"]["name"] == "fraud-canary"
    assert canary["spec"] == {"type": "ClusterIP", "selector": dict(SELECTOR, **{"creativeflow.ai/track": "canary"}),
                              "ports": [port]}
    with pytest.raises(ValueError):
        version_service(service, "stable")  # without the stable ReplicaSet's hash there is no selector


@pytest.mark.parametrize("weight", [10, 50, 100])
def test_http_route_attached_to_the_models_service(weight):
    _deployment, service = rendered()
    assert http_route(service, weight) == {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "fraud", "namespace": NS, "labels": labels()},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "fraud"}],
                 "rules": [{"backendRefs": [
                     {"group": "", "kind": "Service", "name": "fraud-stable", "port": 8080, "weight": 100 - weight},
                     {"group": "", "kind": "Service", "name": "fraud-canary", "port": 8080, "weight": weight},
                 ]}]},
    }


def test_http_route_attached_to_a_gateway():
    _deployment, service = rendered()
    route = http_route(service, 10, {"name": "public", "namespace": "gateways", "section_name": "https"})
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
                                            "namespace": "gateways", "sectionName": "https"}]
    assert http_route(service, 10, {"name": "public"})["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}]


def test_destination_rule_subsets():
    _deployment, service = rendered("ClusterIP")
    assert destination_rule(service, HASH) == {
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "fraud", "namespace": NS, "labels": labels()},
        "spec": {"host": HOST, "subsets": [{"name": "stable", "labels": {"pod-template-hash": HASH}},
                                           {"name": "canary", "labels": {"creativeflow.ai/track": "canary"}}]},
    }
    assert destination_rule(service, HASH, "networking.istio.io/v1beta1")["apiVersion"] == "networking.istio.io/v1beta1"
    with pytest.raises(ValueError):
        destination_rule(service, "")


def test_virtual_service_weights():
    _deployment, service = rendered("ClusterIP")
    assert virtual_service(service, 10) == {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "fraud", "namespace": NS, "labels": labels()},
        "spec": {"hosts": [HOST], "http": [{"name": "weighted", "route": [
            {"destination": {"host": HOST, "subset": "stable"}, "weight": 90},
            {"destination": {"host": HOST, "subset": "canary"}, "weight": 10},
        ]}]},
    }


def test_virtual_service_ab_by_header_routes_the_header_first():
    _deployment, service = rendered("ClusterIP")
    routes = virtual_service(service, 25, ("x-canary", "1"))["spec"]["http"]
    assert routes == [
        {"name": "ab-canary", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
         "route": [{"destination": {"host": HOST, "subset": "canary"}}]},
        {"name": "weighted", "route": [{"destination": {"host": HOST, "subset": "stable"}, "weight": 75},
                                       {"destination": {"host": HOST, "subset": "canary"}, "weight": 25}]},
    ]


def test_step_objects_per_split():
    deployment, service = rendered()
    assert [(o["kind"], o["metadata"]["name"]) for o in step_objects("replicas", deployment, service, 10, 1)] == [
        ("Deployment", "fraud-canary")]
    gateway = step_objects("gateway", deployment, service, 10, 1, HASH)
    assert [(o["kind"], o["metadata"]["name"]) for o in gateway] == [
        ("Deployment", "fraud-canary"), ("Service", "fraud-stable"), ("Service", "fraud-canary"),
        ("HTTPRoute", "fraud")]
    assert gateway[3]["spec"]["rules"][0]["backendRefs"][1]["weight"] == 10
    istio = step_objects("istio", deployment, service, 50, 2, HASH, header=("x-canary", "1"),
                         istio_version="networking.istio.io/v1beta1")
    assert [(o["apiVersion"], o["kind"]) for o in istio] == [
        ("apps/v1", "Deployment"), ("networking.istio.io/v1beta1", "DestinationRule"),
        ("networking.istio.io/v1beta1", "VirtualService")]
    assert istio[0]["spec"]["replicas"] == 2
    assert istio[2]["spec"]["http"][1]["route"][1]["weight"] == 50
    with pytest.raises(ValueError):
        step_objects("linkerd", deployment, service, 10, 1)


def test_name_problem_of_a_long_model_name_with_split_gateway():
    assert name_problem("m" * 56, "gateway") == ""
    assert name_problem("m" * 57, "gateway") == (
        "the Service %s-stable would be 64 characters, more than Kubernetes' 63: shorten the model's name to 56 "
        "characters, or use split istio or replicas" % ("m" * 57))
    assert name_problem("m" * 63, "istio") == ""  # istio and replicas add no Service; Deployment names may be longer


def test_a_live_canary_is_known_by_the_digest_of_the_template_it_was_made_from():
    deployment, _service = rendered()
    live = canary_deployment(deployment, 1)
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"  # defaults
    assert canary_of_version(live, deployment)
    other = copy.deepcopy(deployment)
    other["spec"]["template"]["spec"]["containers"][0]["image"] += "-other"
    assert not canary_of_version(live, other)
    assert not canary_of_version(None, deployment)
    assert len(template_digest(deployment)) == 16 and template_digest(deployment) != template_digest(other)


def test_removal_order_puts_the_routes_first_and_the_deployment_last():
    assert removal_order("fraud", "replicas") == [("apps/v1", "Deployment", "fraud-canary")]
    assert removal_order("fraud", "gateway") == [
        ("gateway.networking.k8s.io/v1", "HTTPRoute", "fraud"), ("v1", "Service", "fraud-stable"),
        ("v1", "Service", "fraud-canary"), ("apps/v1", "Deployment", "fraud-canary")]
    assert removal_order("fraud", "istio", "networking.istio.io/v1beta1") == [
        ("networking.istio.io/v1beta1", "VirtualService", "fraud"),
        ("networking.istio.io/v1beta1", "DestinationRule", "fraud"), ("apps/v1", "Deployment", "fraud-canary")]
