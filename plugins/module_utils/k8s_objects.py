# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small readers of Kubernetes objects in their JSON form, and well-known names.

Objects are plain dicts with camelCase keys, as ``kubectl get -o json`` and the
dynamic client's ``to_dict()`` give them. Every reader tolerates missing or
null levels. Shared by :mod:`gpu_fit` and :mod:`rollout` so that ownership and
readiness are decided one way.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

KubeObject = Mapping[str, Any]

#: The extended resource the NVIDIA device plugin advertises; the default GPU resource everywhere.
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


def get_path(obj: Optional[KubeObject], *path: str) -> Any:
    """``obj[path[0]][path[1]]...``; ``None`` as soon as a level is missing or null."""
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
        if cur is None:
            return None
    return cur


def meta(obj: Optional[KubeObject]) -> KubeObject:
    """``metadata`` ({} when absent)."""
    return get_path(obj, "metadata") or {}


def name(obj: Optional[KubeObject]) -> str:
    """``metadata.name`` ("" when absent)."""
    return str(meta(obj).get("name") or "")


def condition(obj: Optional[KubeObject], kind: str) -> Optional[KubeObject]:
    """The ``status.conditions`` entry of type ``kind``, if any."""
    for item in get_path(obj, "status", "conditions") or []:
        if isinstance(item, Mapping) and item.get("type") == kind:
            return item
    return None


def condition_true(obj: Optional[KubeObject], kind: str) -> bool:
    """Whether the condition ``kind`` (``Ready``...) has status ``True``."""
    found = condition(obj, kind)
    return found is not None and found.get("status") == "True"


def owned_by_uid(obj: KubeObject, uids: Iterable[Optional[str]]) -> bool:
    """Whether one of ``obj``'s ownerReferences points at one of ``uids``."""
    wanted = set(uid for uid in uids if uid)
    return any(ref.get("uid") in wanted for ref in meta(obj).get("ownerReferences") or [])


def owned_by(obj: KubeObject, owner: KubeObject) -> bool:
    """Whether ``obj`` has ``owner`` as an owner: by uid, else (an owner without uid) by kind and name."""
    owner_uid = meta(owner).get("uid")
    if owner_uid:
        return owned_by_uid(obj, [owner_uid])
    return any(
        ref.get("kind") == owner.get("kind") and ref.get("name") == name(owner)
        for ref in meta(obj).get("ownerReferences") or []
    )


def pod_is_terminated(pod: KubeObject) -> bool:
    """True for pods in phase Succeeded or Failed: they hold no resources."""
    return get_path(pod, "status", "phase") in ("Succeeded", "Failed")


def pod_is_terminating(pod: KubeObject) -> bool:
    """True once the pod has a deletionTimestamp (it still holds its resources)."""
    return bool(meta(pod).get("deletionTimestamp"))
