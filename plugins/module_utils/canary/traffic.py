# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The objects of a canary step, built from the model's rendered Deployment and Service (``manifests.py``).

- The canary: Deployment ``<model>-canary``, the new version's template with the label
  ``creativeflow.ai/track: canary`` on it, its pods and its selector. Its pods keep the model's labels, so the
  model's Service (and its PodDisruptionBudget) selects them: that is the replica-ratio split.
- The stable version is never relabelled (a label change would restart it): its pods are told apart by the
  ``pod-template-hash`` of its current ReplicaSet, as a Service or a DestinationRule subset can select.
- Gateway API (split ``gateway``): Services ``<model>-stable`` and ``<model>-canary`` (ClusterIP, the HTTP port)
  and the HTTPRoute ``<model>`` with their weights, attached to the catalog's Gateway, else to the model's Service
  (Gateway API for service meshes, GAMMA).
- Istio (split ``istio``): DestinationRule ``<model>`` with subsets ``stable`` and ``canary`` of the model's Service,
  VirtualService ``<model>``: the header rule first (A/B), then the weighted route.

Every function returns new objects; nothing here reads the cluster.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

Obj = Dict[str, Any]

TRACK_LABEL = "creativeflow.ai/track"
CANARY = "canary"
STABLE = "stable"
POD_TEMPLATE_HASH = "pod-template-hash"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
#: On the canary's Deployment: a digest of the template it was made from, so a later run knows whether the canary it
#: finds is of the version it deploys (the server's defaults make the live template differ from the rendered one).
TEMPLATE_ANNOTATION = "creativeflow.ai/canary-template"
#: The Service ports an HTTPRoute carries, most likely first (runtime port names): gRPC ports are left to the Service.
HTTP_PORT_NAMES = ("http", "rest", "inference")


def canary_name(model_name: str) -> str:
    return model_name + "-" + CANARY


def stable_name(model_name: str) -> str:
    return model_name + "-" + STABLE


def name_problem(model_name: str, split: str) -> str:
    """Why the canary's object names do not fit Kubernetes' limits, or ``""``: Services are DNS-1035 labels of at
    most 63 characters, and gateway adds ``-stable`` and ``-canary`` to the model's name."""
    longest = len(stable_name(model_name))  # "-stable" is the longer suffix
    if split == "gateway" and longest > 63:
        return ("the Service {0} would be {1} characters, more than Kubernetes' 63: shorten the model's name to 56 "
                "characters, or use split istio or replicas".format(stable_name(model_name), longest))
    return ""


def _meta(obj: Mapping[str, Any]) -> Tuple[str, str, Dict[str, str]]:
    metadata = obj["metadata"]
    return metadata["name"], metadata["namespace"], dict(metadata.get("labels") or {})


def canary_deployment(deployment: Mapping[str, Any], replicas: int) -> Obj:
    """The canary's Deployment: ``deployment`` (the model's, as rendered for the new version) renamed
    ``<model>-canary`` with ``replicas`` pods, its pods and selector carrying the canary track label."""
    name, namespace, labels = _meta(deployment)
    spec = copy.deepcopy(dict(deployment["spec"]))
    spec["replicas"] = int(replicas)
    spec["selector"] = {"matchLabels": dict(spec["selector"]["matchLabels"], **{TRACK_LABEL: CANARY})}
    template = spec["template"]
    template["metadata"] = dict(template.get("metadata") or {})
    template["metadata"]["labels"] = dict(template["metadata"].get("labels") or {}, **{TRACK_LABEL: CANARY})
    labels[TRACK_LABEL] = CANARY
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": canary_name(name), "namespace": namespace, "labels": labels,
                         "annotations": {TEMPLATE_ANNOTATION: template_digest(deployment)}}, "spec": spec}


def template_digest(deployment: Mapping[str, Any]) -> str:
    """A short digest of a rendered Deployment's pod template: which version a canary runs."""
    template = (deployment.get("spec") or {}).get("template") or {}
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def canary_of_version(live: Optional[Mapping[str, Any]], deployment: Mapping[str, Any]) -> bool:
    """Whether the live canary Deployment ``live`` was made from the rendered ``deployment``'s template."""
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(TEMPLATE_ANNOTATION) == template_digest(deployment)


def removal_order(model_name: str, split: str, istio_version: str = "networking.istio.io/v1") -> List[Tuple[str, str, str]]:
    """(apiVersion, kind, name) of a canary's objects in the order an abort or a promotion deletes them: the routes
    first (every request back to the stable version), the Deployment last, so a canary Deployment that is gone means
    its routes are gone too (a later run looks for the Deployment only)."""
    objects: List[Tuple[str, str, str]] = []
    if split == "gateway":
        objects += [(GATEWAY_API_VERSION, "HTTPRoute", model_name), ("v1", "Service", stable_name(model_name)),
                    ("v1", "Service", canary_name(model_name))]
    elif split == "istio":
        objects += [(istio_version, "VirtualService", model_name), (istio_version, "DestinationRule", model_name)]
    return objects + [("apps/v1", "Deployment", canary_name(model_name))]


def http_port(service: Mapping[str, Any]) -> Dict[str, Any]:
    """The Service port the HTTP traffic uses (by the runtimes' port names); ValueError when it has none."""
    ports = list(service["spec"].get("ports") or [])
    for wanted in HTTP_PORT_NAMES:
        for port in ports:
            if port.get("name") == wanted:
                return dict(port)
    raise ValueError("Service %s has no HTTP port (one named %s) a route could carry: its ports are %s"
                     % (service["metadata"]["name"], ", ".join(HTTP_PORT_NAMES),
                        ", ".join(str(port.get("name")) for port in ports) or "none"))


def version_selector(service: Mapping[str, Any], track: str, stable_hash: str = "") -> Dict[str, str]:
    """The pods of one version: the model's selector plus the canary's track label, or the stable ReplicaSet's hash."""
    selector = dict(service["spec"]["selector"])
    if track == CANARY:
        selector[TRACK_LABEL] = CANARY
    elif stable_hash:
        selector[POD_TEMPLATE_HASH] = stable_hash
    else:
        raise ValueError("the stable version's pod-template-hash is needed to select its pods")
    return selector


def version_service(service: Mapping[str, Any], track: str, stable_hash: str = "") -> Obj:
    """Service ``<model>-stable`` or ``<model>-canary``: ClusterIP, the HTTP port of the model's Service, the pods of
    that version only (the backends of an HTTPRoute)."""
    name, namespace, labels = _meta(service)
    port = http_port(service)
    port.pop("nodePort", None)
    labels[TRACK_LABEL] = track
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name + "-" + track, "namespace": namespace, "labels": labels},
            "spec": {"type": "ClusterIP", "selector": version_selector(service, track, stable_hash), "ports": [port]}}


def http_route(service: Mapping[str, Any], weight: int, gateway: Optional[Mapping[str, str]] = None) -> Obj:
    """HTTPRoute ``<model>``: ``weight`` percent of the requests to ``<model>-canary``, the rest to
    ``<model>-stable``; attached to ``gateway`` (name, namespace, section_name) or to the model's Service."""
    name, namespace, labels = _meta(service)
    port = http_port(service)
    parent = _parent(service, gateway)
    backends = [{"group": "", "kind": "Service", "name": stable_name(name), "port": int(port["port"]),
                 "weight": 100 - int(weight)},
                {"group": "", "kind": "Service", "name": canary_name(name), "port": int(port["port"]),
                 "weight": int(weight)}]
    return {"apiVersion": GATEWAY_API_VERSION, "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"parentRefs": [parent], "rules": [{"backendRefs": backends}]}}


def _parent(service: Mapping[str, Any], gateway: Optional[Mapping[str, str]]) -> Obj:
    if not gateway:
        return {"group": "", "kind": "Service", "name": service["metadata"]["name"]}
    parent: Obj = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway["name"]}
    if gateway.get("namespace"):
        parent["namespace"] = gateway["namespace"]
    if gateway.get("section_name"):
        parent["sectionName"] = gateway["section_name"]
    return parent


def _host(service: Mapping[str, Any]) -> str:
    name, namespace, _labels = _meta(service)
    return "%s.%s.svc.cluster.local" % (name, namespace)


def destination_rule(service: Mapping[str, Any], stable_hash: str, api_version: str = "networking.istio.io/v1") -> Obj:
    """DestinationRule ``<model>``: subsets ``stable`` (the stable ReplicaSet's pods) and ``canary``."""
    name, namespace, labels = _meta(service)
    if not stable_hash:
        raise ValueError("the stable version's pod-template-hash is needed to select its pods")
    return {"apiVersion": api_version, "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"host": _host(service), "subsets": [
                {"name": STABLE, "labels": {POD_TEMPLATE_HASH: stable_hash}},
                {"name": CANARY, "labels": {TRACK_LABEL: CANARY}},
            ]}}


def virtual_service(service: Mapping[str, Any], weight: int, header: Optional[Tuple[str, str]] = None,
                    api_version: str = "networking.istio.io/v1") -> Obj:
    """VirtualService ``<model>`` for the model's Service host: with ``header`` (name, value), requests carrying it
    go to the canary first; the others are split ``100 - weight`` / ``weight`` between the subsets."""
    name, namespace, labels = _meta(service)
    host = _host(service)
    routes: List[Obj] = []
    if header:
        routes.append({"name": "ab-" + CANARY, "match": [{"headers": {header[0]: {"exact": header[1]}}}],
                       "route": [{"destination": {"host": host, "subset": CANARY}}]})
    routes.append({"name": "weighted", "route": [
        {"destination": {"host": host, "subset": STABLE}, "weight": 100 - int(weight)},
        {"destination": {"host": host, "subset": CANARY}, "weight": int(weight)},
    ]})
    return {"apiVersion": api_version, "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"hosts": [host], "http": routes}}


def promotion_route(split: str, service: Mapping[str, Any], gateway: Optional[Mapping[str, str]] = None,
                    istio_version: str = "networking.istio.io/v1") -> Obj:
    """The route while the stable Deployment takes the new version (gateway and istio splits): every request to the
    model's Service, whose pods are both versions' (the ``<model>-stable`` Service and the ``stable`` subset select
    the old pod-template-hash, which the rolling update replaces: they would run out of pods)."""
    name, namespace, labels = _meta(service)
    if split == "gateway":
        port = http_port(service)
        return {"apiVersion": GATEWAY_API_VERSION, "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"parentRefs": [_parent(service, gateway)], "rules": [{"backendRefs": [
                    {"group": "", "kind": "Service", "name": name, "port": int(port["port"]), "weight": 100}]}]}}
    if split == "istio":
        host = _host(service)
        return {"apiVersion": istio_version, "kind": "VirtualService",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"hosts": [host], "http": [{"name": "promotion", "route": [{"destination": {"host": host}}]}]}}
    raise ValueError("split %r has no route: expected gateway or istio" % split)


def step_objects(split: str, deployment: Mapping[str, Any], service: Mapping[str, Any], weight: int,
                 canary_replicas: int, stable_hash: str = "", header: Optional[Tuple[str, str]] = None,
                 gateway: Optional[Mapping[str, str]] = None, istio_version: str = "networking.istio.io/v1") -> List[Obj]:
    """Every object one step applies beside the stable version (whose replica count the replica split sets: see
    :mod:`.plan`): the canary's Deployment, and the split's Services and routes."""
    objects = [canary_deployment(deployment, canary_replicas)]
    if split == "gateway":
        objects += [version_service(service, STABLE, stable_hash), version_service(service, CANARY),
                    http_route(service, weight, gateway)]
    elif split == "istio":
        objects += [destination_rule(service, stable_hash, istio_version),
                    virtual_service(service, weight, header, istio_version)]
    elif split != "replicas":
        raise ValueError("unknown split %r: expected replicas, gateway or istio" % split)
    return objects
