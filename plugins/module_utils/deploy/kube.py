# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's reads and writes through kubernetes.core's client, one client for the whole run.

Reads decode JSON straight (the GPU check's :class:`JsonReader`); writes are
server-side applies under the deploy's field manager with conflicts forced,
optionally as a server-side dry run, returning the object and the API
server's warnings (Pod Security's among them). Errors are
:class:`K8sAccessError` with the message of :mod:`k8s_common`.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.cluster import JsonReader
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout_wait import RolloutClient

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import decode_warnings
except ImportError:  # kubernetes.core is a dependency of the collection
    decode_warnings = None  # type: ignore


class DeployClient(JsonReader, RolloutClient):
    """Reads as JSON, applies and deletes; the Deployment's undo of :class:`RolloutClient` too."""

    def apply(self, obj: Dict[str, Any], field_manager: str, dry_run: bool = False
              ) -> Tuple[Dict[str, Any], List[str]]:
        """Server-side apply of ``obj``; returns the object as the server answered and its warnings."""
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
        if header and decode_warnings is not None:
            warnings = decode_warnings(header.split(", "))
        return json.loads(response.data), warnings

    def delete(self, api_version: str, kind: str, name: str, namespace: str, dry_run: bool = False) -> bool:
        """Delete one object; ``False`` when it was not there."""
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
