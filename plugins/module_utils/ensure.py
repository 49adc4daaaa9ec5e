# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""After the rollout: make sure each serving pod holds what the catalog lists (a record's ``EnsurePresent``).

The server's own API says what it has (a GET) and fetches what is missing (a
POST per item, bounded in time); both go through the API server's pod proxy
(``/api/v1/namespaces/NS/pods/POD:PORT/proxy/PATH``), so every replica is
asked, not one the Service picks, and from any controller that reaches the API.
Ollama: ``/api/tags`` lists the models, ``/api/pull`` pulls one.

The pure parts (what is missing, how to judge an answer) need no cluster;
:func:`ensure` takes a proxy factory (``smoke_check.ServiceProxy``).
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

#: How much of an answer goes into a message.
SHOWN = 300


class EnsureError(Exception):
    """An item could not be had: the message names it, the pod and the server's answer."""


def tagged(name: str, default_tag: str) -> str:
    """``name`` with ``:default_tag`` when its last path part has no tag (llama3 -> llama3:latest)."""
    if not default_tag or ":" in name.rsplit("/", 1)[-1]:
        return name
    return "{0}:{1}".format(name, default_tag)


def listed(answer: str, list_key: str, item_key: str) -> List[str]:
    """The names in the server's list answer (``{list_key: [{item_key: name}, ...]}``)."""
    try:
        data = json.loads(answer)
    except ValueError as exc:
        raise EnsureError("the list answer is not JSON: {0}".format(_show(answer))) from exc
    items = data.get(list_key) if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise EnsureError("the list answer has no list {0!r}: {1}".format(list_key, _show(answer)))
    return [str(item.get(item_key)) for item in items if isinstance(item, Mapping) and item_key in item]


def missing(wanted: Sequence[str], have: Sequence[str], default_tag: str) -> List[str]:
    """What of ``wanted`` the server lacks, tagged, in the catalog's order."""
    present = {tagged(name, default_tag) for name in have}
    out: List[str] = []
    for name in wanted:
        full = tagged(name, default_tag)
        if full not in present and full not in out:
            out.append(full)
    return out


def fetch_body(spec: Mapping[str, Any], name: str) -> Dict[str, Any]:
    body = dict(spec.get("fetch_body") or {})
    body[spec["fetch_name_key"]] = name
    return body


def fetched(status: Optional[int], answer: str) -> bool:
    """Whether a fetch answered success: HTTP 200 and, for a JSON status answer, not an error."""
    if status != 200:
        return False
    try:
        data = json.loads(answer.strip().splitlines()[-1]) if answer.strip() else {}
    except ValueError:
        return True
    return not (isinstance(data, Mapping) and data.get("error"))


def pod_proxy_path(namespace: str, pod: str, port: int, path: str) -> str:
    return "/api/v1/namespaces/{0}/pods/{1}:{2}/proxy{3}".format(
        quote(namespace, safe=""), quote(pod, safe=""), int(port), quote(path, safe="/:@"))


def ensure(proxy: Callable[[int], Any], namespace: str, pods: Sequence[str], spec: Mapping[str, Any], port: int,
           say: Callable[[str], None] = lambda line: None) -> Dict[str, Any]:
    """On each pod: list, fetch what is missing (``spec["timeout_seconds"]`` each), list again.

    ``proxy(timeout)`` builds a sender with that request timeout. Returns
    ``{"fetched": {pod: [names]}, "present": {pod: [names]}}``; raises
    :class:`EnsureError` naming the item, the pod and the answer when one cannot be had.
    """
    what = spec.get("what") or "item"
    timeout = int(spec["timeout_seconds"])
    default_tag = str(spec.get("default_tag") or "")
    result: Dict[str, Any] = {"fetched": {}, "present": {}}
    for pod in pods:
        lacking = _missing_on(proxy(30), namespace, pod, spec, port)
        result["fetched"][pod] = []
        for index, name in enumerate(lacking, 1):
            say("  {0}: pulling {1} {2} ({3}/{4}, up to {5} s)".format(pod, what, name, index, len(lacking), timeout))
            started = time.monotonic()
            status, answer, error = proxy(timeout).send(pod_proxy_path(namespace, pod, port, spec["fetch_path"]),
                                                        "POST", fetch_body(spec, name))
            seconds = time.monotonic() - started
            if not fetched(status, answer):
                raise EnsureError("{w} {n} could not be pulled on pod {p} after {s:.0f} s: {why}".format(
                    w=what, n=name, p=pod, s=seconds,
                    why=error or "HTTP {0}: {1}".format(status, _show(answer.strip()) or "(empty body)")))
            say("  {0}: {1} {2} pulled in {3:.0f} s".format(pod, what, name, seconds))
            result["fetched"][pod].append(name)
        still = _missing_on(proxy(30), namespace, pod, spec, port)
        if still:
            raise EnsureError("{w} {n} is still missing on pod {p} after its pull was answered success".format(
                w=what, n=", ".join(still), p=pod))
        result["present"][pod] = [tagged(name, default_tag) for name in spec["wanted"]]
    return result


def _missing_on(sender: Any, namespace: str, pod: str, spec: Mapping[str, Any], port: int) -> List[str]:
    status, answer, error = sender.send(pod_proxy_path(namespace, pod, port, spec["list_path"]), "GET", None)
    if status != 200:
        raise EnsureError("pod {0} did not list its {1}s (GET {2}): {3}".format(
            pod, spec.get("what") or "item", spec["list_path"],
            error or "HTTP {0}: {1}".format(status, _show(answer.strip()) or "(empty body)")))
    try:
        have = listed(answer, spec["list_key"], spec["item_key"])
    except EnsureError as exc:
        raise EnsureError("pod {0}: {1}".format(pod, exc)) from exc
    return missing(spec["wanted"], have, str(spec.get("default_tag") or ""))


def summary(result: Mapping[str, Any], what: str) -> Tuple[bool, str]:
    """(changed, the step's line)."""
    pulled = {pod: names for pod, names in (result.get("fetched") or {}).items() if names}
    present = result.get("present") or {}
    if not present:
        return False, ""
    held = sorted({name for names in present.values() for name in names})
    line = "{0} pod(s) hold the {1}s {2}".format(len(present), what, ", ".join(held))
    if pulled:
        line += "; pulled " + "; ".join("{0} on {1}".format(", ".join(names), pod) for pod, names in sorted(pulled.items()))
    else:
        line += "; nothing to pull"
    return bool(pulled), line


def _show(text: str) -> str:
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."
