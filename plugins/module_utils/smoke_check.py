# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The smoke check against a cluster: ready endpoints, their nodes, requests through the service proxy.

Shared by the ``model_smoke`` module and the deploy engine's verify step, so
both ask and report alike. What to ask and how to judge an answer is
:mod:`smoke` (pure); this reads the Service's EndpointSlices and the nodes
they are on, and sends the requests with the client's credentials.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils import smoke
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import KubeReader

# How much of an answer goes into the result.
ANSWER_SHOWN = 500

#: The verify step's line when nothing could be sent (the YAML verify step said the same).
NOTHING_SENT = "Nothing was sent: the deploy is verified by the API server only."
#: ... and when the catalog entry asks no inference.
NO_SMOKE_FIELD = "The catalog entry has no smoke field: no inference was asked (docs/model_catalog.md, smoke)."


class ServiceProxy:
    """HTTP requests to a Service through the API server, with the client's credentials.

    ``api_client`` is the kubernetes ``ApiClient`` under kubernetes.core's
    dynamic client: its ``call_api`` sends any path with the configured
    credentials; the proxied answer may be anything, not an API object.
    """

    def __init__(self, api_client: Any, request_timeout: int) -> None:
        self._api = api_client
        self._timeout = request_timeout

    def send(self, path: str, method: str, body: Any) -> Tuple[Optional[int], str, str]:
        """(status, body text, error): status None when no HTTP answer came back."""
        headers = {"Accept": "application/json, */*"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            status, data = self._request(path, method, headers, body)
            return status, _text(data), ""
        except Exception as exc:  # ApiException carries the proxied answer; anything else is no answer
            status = getattr(exc, "status", None)
            if isinstance(status, int) and status > 0:
                return status, _text(getattr(exc, "body", b"") or getattr(exc, "data", b"") or b""), ""
            return None, "", "%s: %s" % (type(exc).__name__, exc)

    def _request(self, path: str, method: str, headers: Dict[str, str], body: Any) -> Tuple[int, Any]:
        api = self._api
        if hasattr(api, "param_serialize"):
            # kubernetes >= 31: serialize (credentials included), then send; no exception on HTTP errors.
            parts = api.param_serialize(method, path, header_params=headers, body=body, auth_settings=["BearerToken"])
            response = api.call_api(*parts, _request_timeout=self._timeout)
            return int(response.status), response.read()
        response = api.call_api(path, method, header_params=headers, body=body, auth_settings=["BearerToken"],
                                _preload_content=False, _request_timeout=self._timeout)
        return int(response.status), response.data


def _text(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return "" if data is None else str(data)


def ask(proxy: Any, namespace: str, service: str, request: Mapping[str, Any], deadline: float,
        interval: float = 2.0) -> Dict[str, Any]:
    """Send one request until it passes or the deadline passes; its last answer."""
    path = smoke.proxy_path(namespace, service, request["port"], request["path"])
    attempts = 0
    while True:
        attempts += 1
        status, text, error = proxy.send(path, request["method"], request.get("body"))
        message = smoke.judge(request, status, text, error)
        if message is None or time.monotonic() + interval > deadline:
            break
        time.sleep(interval)
    answer = text if len(text) <= ANSWER_SHOWN else text[:ANSWER_SHOWN] + "..."
    return {"path": request["path"], "port": request["port"], "method": request["method"], "proxy_path": path,
            "inference": bool(request.get("inference")), "status": status, "answer": answer,
            "passed": message is None, "attempts": attempts, "message": message or ""}


def read_endpoints(reader: KubeReader, namespace: str, service: str) -> List[Dict[str, Any]]:
    """The Service's ready endpoints, from its EndpointSlices."""
    slices = reader.list("EndpointSlice", api_version="discovery.k8s.io/v1", namespace=namespace,
                         label_selector="kubernetes.io/service-name=%s" % service)
    return smoke.ready_endpoints(slices)


def simulated_nodes(reader: KubeReader, endpoints: Sequence[Mapping[str, Any]]) -> List[str]:
    """The simulated nodes among those the endpoints are on (only those are read, not every node)."""
    found: List[str] = []
    for name in sorted({str(item.get("node") or "") for item in endpoints} - {""}):
        node = reader.get("Node", name)
        if node is not None and smoke.is_simulated(node):
            found.append(name)
    return found


def check(reader: KubeReader, proxy: Callable[[], Any], namespace: str, service: str,
          requests: Sequence[Mapping[str, Any]], timeout: int,
          endpoints: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Ask the Service; the model_smoke module's result (``failed`` and ``msg`` when an answer is wrong).

    ``proxy`` builds the :class:`ServiceProxy` only when something is sent;
    ``endpoints`` are the ready endpoints when already read.
    """
    for item in requests:
        smoke.proxy_path(namespace, service, item["port"], item["path"])
    if endpoints is None:
        endpoints = read_endpoints(reader, namespace, service)
    code, reason = smoke.cannot_check(endpoints, simulated_nodes(reader, endpoints))
    result: Dict[str, Any] = {"changed": False, "endpoints": endpoints, "results": [], "checked": not code,
                              "reason": reason, "reason_code": code}
    if code:
        result["summary"] = "%s: %d ready endpoint(s) behind Service %s/%s; not asked: %s." % (
            service, len(endpoints), namespace, service, reason)
        return result
    sender = proxy()
    deadline = time.monotonic() + timeout
    for request in smoke.requests(requests):
        result["results"].append(ask(sender, namespace, service, request, deadline))
    failed = [item for item in result["results"] if not item["passed"]]
    passed = [item for item in result["results"] if item["passed"]]
    inference = [item for item in passed if item["inference"]]
    result["summary"] = "%s: %d ready endpoint(s) behind Service %s/%s; through the API server's service proxy %s%s." % (
        service, len(endpoints), namespace, service,
        ", ".join("%s %s -> %s" % (item["method"], item["path"], item["status"]) for item in passed) or "nothing",
        " answered as expected" if passed else "",
    )
    if inference:
        result["summary"] += " Inference answer: %s" % inference[-1]["answer"]
    if failed:
        result["failed"] = True
        result["msg"] = ("%s rolled out, but its Service %s/%s does not answer as it should: %s. The pods pass their "
                         "probes, so check the model (its log: kubectl logs -n %s deploy/%s), the catalog entry's "
                         "smoke field and the Service's ports." % (
                             service, namespace, service, "; ".join(item["message"] for item in failed),
                             namespace, service))
    return result


def report(result: Mapping[str, Any], requests: Sequence[Mapping[str, Any]]) -> str:
    """The verify line: the summary, and what was not asked and why."""
    parts = [str(result.get("summary") or "")]
    if not result.get("checked"):
        parts.append(NOTHING_SENT)
    elif not any(item.get("inference") for item in requests):
        parts.append(NO_SMOKE_FIELD)
    return " ".join(p for p in parts if p)
