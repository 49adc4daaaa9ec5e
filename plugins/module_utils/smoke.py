# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The post-deploy smoke check: what to ask a model's Service and how to judge the answer.

The check goes through the API server's service proxy
(``/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH``), so it works from
any controller that reaches the API (a laptop, a CI runner, AWX), not only
from inside the cluster network. It asks the runtime's health paths (GET, 200)
and, where the catalog entry has a ``smoke`` field, a real inference whose
answer must contain the entry's ``expect``.

Before asking, the Service's ready endpoints say whether anything can answer:
endpoints on simulated (kwok) nodes run no container, so the check reports
that it cannot check and why, never a silent skip.

Plain Python: no Ansible, no cluster. ``plugins/modules/model_smoke.py`` runs it.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

#: The catalog's ``smoke`` field (JSON Schema, the dialect catalog.py validates with).
SMOKE_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "pattern": r"^/", "minLength": 1,
                 "x-expected": "an HTTP path on the server, starting with / (such as /v2/models/NAME/infer)"},
        "port": {"type": "string", "minLength": 1,
                 "x-expected": "the name of one of the runtime's ports (such as http); default the first one"},
        "method": {"enum": ["GET", "POST", "PUT"]},
        "body": {"x-expected": "the JSON request body"},
        "expect": {"x-expected": "JSON the answer must contain (dicts: these keys; lists: these items, in order)"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599, "default": 200},
    },
    "required": ["path"],
    "additionalProperties": False,
}

#: Labels and annotations that mark a node as simulated (kwok's): nothing runs there.
SIMULATED_NODE_LABELS = (("type", "kwok"),)
SIMULATED_NODE_ANNOTATIONS = (("kwok.x-k8s.io/node", "fake"),)

# How much of an answer goes into a message.
_SHOWN = 300


class SmokeError(ValueError):
    """A smoke field or request that cannot be used (names the value and the fix)."""


def proxy_path(namespace: str, service: str, port: Any, path: str) -> str:
    """The API server's proxy path to ``path`` on port ``port`` (a name or number) of the Service."""
    if not path.startswith("/"):
        raise SmokeError("smoke path %r must start with /" % path)
    target, _sep, query = path.partition("?")
    out = "/api/v1/namespaces/%s/services/%s:%s/proxy%s" % (
        quote(namespace, safe=""), quote(service, safe=""), quote(str(port), safe=""), quote(target, safe="/:@"))
    return out + ("?" + query if query else "")


def inference_request(model: Mapping[str, Any], port_names: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The catalog entry's smoke inference as a request, or None when the entry has none.

    ``port_names`` are the runtime's ports that the Service publishes, in the
    record's order: the default port is the first.
    """
    smoke = model.get("smoke")
    if not smoke:
        return None
    if not port_names:
        raise SmokeError("smoke: the runtime publishes no port on its Service")
    port = smoke.get("port") or port_names[0]
    if port not in port_names:
        raise SmokeError("smoke.port %r is not one of the Service's ports (%s): name one of them"
                         % (port, ", ".join(port_names)))
    has_body = "body" in smoke
    request: Dict[str, Any] = {
        "path": smoke["path"],
        "port": port,
        "method": smoke.get("method") or ("POST" if has_body else "GET"),
        "status": int(smoke.get("status", 200)),
        "inference": True,
    }
    if has_body:
        request["body"] = smoke["body"]
    if "expect" in smoke:
        request["expect"] = smoke["expect"]
    return request


def health_request(path: str, port: str) -> Dict[str, Any]:
    return {"path": path, "port": port, "method": "GET", "status": 200, "inference": False}


def requests(smoke_paths: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The requests of a server's ``smoke_paths`` (health paths, then the inference), completed."""
    out: List[Dict[str, Any]] = []
    for item in smoke_paths:
        if item.get("inference"):
            out.append(dict(item))
        else:
            out.append(health_request(str(item["path"]), str(item["port"])))
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def contains(expected: Any, actual: Any, where: str = "") -> Optional[str]:
    """None when ``actual`` contains ``expected``, else where it differs.

    Dicts: every expected key, recursively (more keys are fine). Lists: the
    same length, item by item (Triton's ``outputs`` has one item per output:
    expect them all). Numbers: equal within a relative 1e-6 (FP32 answers).
    Anything else: equal.
    """
    here = where or "the answer"
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return "%s is %s, not an object" % (here, _show(actual, 80))
        for key, value in expected.items():
            if key not in actual:
                return "%s has no key %r" % (here, key)
            found = contains(value, actual[key], "%s.%s" % (where, key) if where else str(key))
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return "%s is %s, not a list" % (here, _show(actual, 80))
        if len(expected) != len(actual):
            return "%s has %d item(s), expected %d" % (here, len(actual), len(expected))
        for index, (want, got) in enumerate(zip(expected, actual)):
            found = contains(want, got, "%s[%d]" % (where, index))
            if found:
                return found
        return None
    if _number(expected) and _number(actual):
        if math.isclose(float(expected), float(actual), rel_tol=1e-6, abs_tol=1e-9):
            return None
        return "%s is %s, expected %s" % (here, actual, expected)
    # True == 1 in Python, not in JSON.
    if expected != actual or isinstance(expected, bool) != isinstance(actual, bool):
        return "%s is %s, expected %s" % (here, _show(actual, 80), _show(expected, 80))
    return None


def _show(value: Any, limit: int = _SHOWN) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


def judge(request: Mapping[str, Any], status: Optional[int], body: str, error: str = "") -> Optional[str]:
    """None when the answer passes, else a message with the answer that was got."""
    what = "%s %s (port %s)" % (request["method"], request["path"], request["port"])
    if status is None:
        return "%s got no answer: %s" % (what, error or "no response")
    if status != int(request.get("status", 200)):
        shown = _show(body.strip()) or "(empty body)"
        return "%s answered HTTP %s, expected %s: %s" % (what, status, request.get("status", 200), shown)
    if "expect" not in request:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return "%s answered HTTP %s but not JSON: %s" % (what, status, _show(body.strip()) or "(empty body)")
    differs = contains(request["expect"], answer)
    if differs:
        return "%s answered %s: %s (expected it to contain %s)" % (
            what, _show(answer), differs, _show(request["expect"]))
    return None


def is_simulated(node: Mapping[str, Any]) -> bool:
    """Whether the node is simulated (kwok's): it runs no container."""
    metadata = node.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return (any(labels.get(key) == value for key, value in SIMULATED_NODE_LABELS)
            or any(annotations.get(key) == value for key, value in SIMULATED_NODE_ANNOTATIONS))


def ready_endpoints(slices: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The ready endpoints of a Service's EndpointSlices: address, node and pod."""
    out: List[Dict[str, Any]] = []
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            if not (endpoint.get("conditions") or {}).get("ready"):
                continue
            out.append({"address": (endpoint.get("addresses") or [""])[0], "node": endpoint.get("nodeName", ""),
                        "pod": ((endpoint.get("targetRef") or {}).get("name", ""))})
    return out


def cannot_check(endpoints: Sequence[Mapping[str, Any]], simulated_nodes: Iterable[str]) -> Tuple[str, str]:
    """Whether the Service can be asked: ('', '') when it can, else (reason code, message)."""
    simulated = set(simulated_nodes)
    if not endpoints:
        return "no_ready_endpoint", "the Service has no ready endpoint"
    on_simulated = [item for item in endpoints if item.get("node") in simulated]
    if len(on_simulated) == len(endpoints):
        nodes = sorted({str(item.get("node")) for item in on_simulated})
        return ("simulated_node", "every ready endpoint is on a simulated (kwok) node (%s), where no container runs"
                % ", ".join(nodes))
    if on_simulated:
        # The proxy picks an endpoint at random: an answer could come from nowhere.
        return ("simulated_node", "%d of %d ready endpoints are on simulated (kwok) nodes, where no container runs, "
                "and the Service picks one at random" % (len(on_simulated), len(endpoints)))
    return "", ""
