# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's reads and writes through kubernetes.core's client, one client for the whole run.

Reads decode JSON straight (the GPU check's :class:`JsonReader`); writes are
server-side applies under the deploy's field manager with conflicts forced,
optionally as a server-side dry run, returning the object and the API
server's warnings (Pod Security's among them). Errors are
:class:`K8sAccessError` with the message of :mod:`k8s_common`.

An API server that does not answer (a control plane restarting, a network
blip) is waited out: every call is retried with backoff for up to
``retry_seconds`` (the knob ``api_retry_seconds``); then the last
:class:`K8sUnreachableError` is raised, saying how long it was tried. A
refusal (403, 409, 422...) is never retried. Server-side applies and deletes
are idempotent, and a Lease write carries the resourceVersion it read, so a
retried write whose first answer was lost does no harm.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.cluster import JsonReader
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import (
    K8sAccessError,
    K8sUnreachableError,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import RolloutClient


def _decode_warnings(values: List[str]) -> List[str]:
    """kubernetes.core's reading of Warning headers, imported only when a response has one.

    Its module (k8s.service) pulls in ansible.module_utils.urls and cryptography:
    about 0.15 s of every deploy's start, for a header that is rarely there.
    """
    try:
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import decode_warnings
    except ImportError:  # kubernetes.core is a dependency of the collection
        return list(values)
    return decode_warnings(values)


T = TypeVar("T")

#: Seconds an outage is waited out by default (the knob ``api_retry_seconds``).
DEFAULT_RETRY_SECONDS = 60
_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 5.0
#: Answers of an API server that is starting, overloaded or behind a proxy whose backend is down.
TRANSIENT_STATUS = (429, 500, 502, 503, 504)


class Conflict(K8sAccessError):
    """A write was refused with 409: the object changed since it was read (or already exists)."""


def retrying(call: Callable[[], T], retry_seconds: float, on_outage: Optional[Callable[[str], None]] = None,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> T:
    """``call()``, retried with backoff while the API server is unreachable, for up to ``retry_seconds``."""
    deadline: Optional[float] = None
    delay = _FIRST_DELAY_S
    while True:
        try:
            return call()
        except K8sAccessError as exc:
            if not exc.unreachable or retry_seconds <= 0:
                raise
            now = clock()
            if deadline is None:
                deadline = now + retry_seconds
                if on_outage is not None:
                    where = str(exc).split(". Check that", maxsplit=1)[0]
                    on_outage("{0} - retrying for up to {1} s".format(where, int(retry_seconds)))
            if now >= deadline:
                raise K8sUnreachableError("{0} (it did not answer for {1} s of retries)".format(
                    str(exc).rstrip("."), int(retry_seconds))) from exc
            sleep(max(0.0, min(delay, deadline - now)))
            delay = min(delay * 2, _MAX_DELAY_S)


class DeployClient(JsonReader, RolloutClient):
    """Reads as JSON, applies and deletes; the Deployment's undo of :class:`RolloutClient` too.

    Every call waits out an unreachable API server for up to :attr:`retry_seconds`.
    """

    retry_seconds: float = DEFAULT_RETRY_SECONDS
    #: Told once per outage what did not answer and how long it is retried.
    on_outage: Optional[Callable[[str], None]] = None

    def _retry(self, call: Callable[[], T]) -> T:
        return retrying(call, self.retry_seconds, self.on_outage)

    def _error(self, what: str, exc: Exception) -> Exception:
        # A control plane that is starting or overloaded answers 429/5xx for a while: as good as no answer.
        error = super(DeployClient, self)._error(what, exc)
        if isinstance(error, K8sAccessError) and not error.unreachable and \
                getattr(exc, "status", None) in TRANSIENT_STATUS:
            return K8sUnreachableError(str(error))
        return error

    # KubeReader's reads (get, list) and RolloutClient's undo write, retried.
    def _call(self, what: str, kind: str, api_version: str, params: Dict[str, Any]) -> Dict[str, Any]:
        return self._retry(lambda: super(DeployClient, self)._call(what, kind, api_version, params))

    def serves(self, kind: str, api_version: str = "v1") -> bool:
        return self._retry(lambda: super(DeployClient, self).serves(kind, api_version))

    def apply_deployment(self, body: Dict[str, Any], field_manager: str, dry_run: bool) -> Dict[str, Any]:
        return self._retry(lambda: super(DeployClient, self).apply_deployment(body, field_manager, dry_run))

    def create(self, obj: Dict[str, Any]) -> Dict[str, Any]:
        """Create ``obj``; :class:`Conflict` when it exists already."""
        return self._retry(lambda: self._write("create", obj))

    def replace(self, obj: Dict[str, Any]) -> Dict[str, Any]:
        """Replace ``obj`` (with the resourceVersion it carries); :class:`Conflict` when it changed since."""
        return self._retry(lambda: self._write("replace", obj))

    def _write(self, verb: str, obj: Dict[str, Any]) -> Dict[str, Any]:
        meta = obj.get("metadata") or {}
        what = "{0} {1} {2} in namespace {3}".format(verb, obj.get("kind"), meta.get("name"), meta.get("namespace"))
        try:
            resource = self._client.resource(obj["kind"], obj["apiVersion"])
            if verb == "create":
                answer = resource.create(body=obj, namespace=meta.get("namespace"))
            else:
                answer = resource.replace(body=obj, name=meta.get("name"), namespace=meta.get("namespace"))
        except Exception as exc:  # mapped to a clear message
            if getattr(exc, "status", None) == 409:
                raise Conflict("cannot {0}: it changed since it was read (409 Conflict)".format(what)) from exc
            raise self._error(what, exc) from exc
        return answer.to_dict()

    def apply(self, obj: Dict[str, Any], field_manager: str, dry_run: bool = False
              ) -> Tuple[Dict[str, Any], List[str]]:
        """Server-side apply of ``obj``; returns the object as the server answered and its warnings."""
        return self._retry(lambda: self._apply(obj, field_manager, dry_run))

    def _apply(self, obj: Dict[str, Any], field_manager: str, dry_run: bool) -> Tuple[Dict[str, Any], List[str]]:
        meta = obj.get("metadata") or {}
        what = "{0} {1} {2}".format("dry-run apply" if dry_run else "apply", obj.get("kind"), meta.get("name"))
        try:
            resource = self._client.resource(obj["kind"], obj["apiVersion"])
            response = self._client.client.server_side_apply(
                resource, body=obj, name=meta.get("name"), namespace=meta.get("namespace"), force_conflicts=True,
                field_manager=field_manager, dry_run="All" if dry_run else None, serialize=False)
        except Exception as exc:  # mapped to a clear message
            raise self._error(what, exc) from exc
        warnings: List[str] = []
        header = (response.headers or {}).get("warning") if response.headers is not None else None
        if header:
            warnings = _decode_warnings(header.split(", "))
        return json.loads(response.data), warnings

    def scale(self, name: str, namespace: str, replicas: int, field_manager: str) -> Dict[str, Any]:
        """Set a Deployment's replica count through its scale subresource: only ``spec.replicas`` changes (an apply
        of a partial Deployment under the deploy's field manager would remove the fields it leaves out)."""
        return self._retry(lambda: self._scale(name, namespace, replicas, field_manager))

    def _scale(self, name: str, namespace: str, replicas: int, field_manager: str) -> Dict[str, Any]:
        what = "scale Deployment {0} in namespace {1} to {2}".format(name, namespace, replicas)
        try:
            resource = self._client.resource("Deployment", "apps/v1")
            answer = self._client.client.patch(
                resource.subresources["scale"], body={"spec": {"replicas": int(replicas)}}, name=name,
                namespace=namespace, content_type="application/merge-patch+json", field_manager=field_manager)
        except Exception as exc:  # mapped to a clear message
            raise self._error(what, exc) from exc
        return answer.to_dict()

    def delete(self, api_version: str, kind: str, name: str, namespace: str, dry_run: bool = False) -> bool:
        """Delete one object; ``False`` when it was not there."""
        return self._retry(lambda: self._delete(api_version, kind, name, namespace, dry_run))

    def _delete(self, api_version: str, kind: str, name: str, namespace: str, dry_run: bool) -> bool:
        what = "delete {0} {1} in namespace {2}".format(kind, name, namespace)
        try:
            resource = self._client.resource(kind, api_version)
            resource.delete(name=name, namespace=namespace, dry_run="All" if dry_run else None)
        except Exception as exc:  # mapped to a clear message
            if getattr(exc, "status", None) == 404:
                return False
            raise self._error(what, exc) from exc
        return True

    def get_if_served(self, kind: str, name: str, namespace: str, api_version: str
                      ) -> Tuple[bool, Optional[Dict[str, Any]]]:
        """(whether the API serves the kind, the object or ``None``)."""
        if not self.serves(kind, api_version):
            return False, None
        return True, self.get(kind, name, namespace, api_version=api_version)

    def list_names(self, kind: str, namespace: str, label_selector: str, api_version: str = "v1") -> List[str]:
        found = self.list(kind, api_version, namespace, label_selector=label_selector)
        return sorted((o.get("metadata") or {}).get("name") for o in found)
