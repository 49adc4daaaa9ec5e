# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Quota: the ResourceQuotas that limit the resource, and which of them Kubernetes enforces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.objects import KubeObject, parse_count
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_objects import get_path, name as object_name

# Quota scopes a Deployment's pods never match: they have no
# activeDeadlineSeconds (Terminating), and a BestEffort-scoped quota can only
# track the ``pods`` count, never an extended resource.
_NON_MATCHING_SCOPES = frozenset(["Terminating", "BestEffort"])


@dataclass
class QuotaReport:
    """One ResourceQuota of the namespace with a hard limit on the resource."""

    name: str
    key: str
    hard: int
    used: int
    applies: bool
    scopes: List[str] = field(default_factory=list)
    note: Optional[str] = None
    needed: Optional[int] = 0

    @property
    def headroom(self) -> int:
        return self.hard - self.used

    @property
    def fits(self) -> bool:
        return (not self.applies) or self.needed is None or self.needed <= self.headroom

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "hard": self.hard,
            "used": self.used,
            "headroom": self.headroom,
            "needed": self.needed if (self.applies and self.needed is not None) else 0,
            "fits": self.fits,
            "applies": self.applies,
            "scopes": list(self.scopes),
            "note": self.note,
        }


def _quota_scopes(quota: KubeObject) -> List[str]:
    scopes = [str(s) for s in get_path(quota, "spec", "scopes") or []]
    for expr in get_path(quota, "spec", "scopeSelector", "matchExpressions") or []:
        scopes.append(str(expr.get("scopeName")))
    return scopes


def evaluate_quotas(quotas: Iterable[KubeObject], resource: str) -> List[QuotaReport]:
    """The quotas that name ``resource``.

    Only ``requests.<resource>`` is enforced for an extended resource: the
    quota system tracks extended resources only under ``requests.``. A
    ``limits.<resource>`` or bare ``<resource>`` entry is accepted by the API
    but never counted, so it is reported with ``applies: false`` and a note.
    A quota whose scopes a Deployment's pods never match (Terminating,
    BestEffort) does not apply; other scopes (NotTerminating, NotBestEffort,
    PriorityClass...) are assumed to match, which is the safe side.
    """
    reports: List[QuotaReport] = []
    enforced = "requests." + resource
    for quota in quotas:
        hard = get_path(quota, "spec", "hard") or {}
        used = get_path(quota, "status", "used") or {}
        scopes = _quota_scopes(quota)
        for key in (enforced, "limits." + resource, resource):
            if key not in hard:
                continue
            note = None
            applies = True
            if key != enforced:
                applies = False
                note = "{0} is not enforced for extended resources: Kubernetes only counts {1}".format(key, enforced)
            elif _NON_MATCHING_SCOPES.intersection(scopes):
                applies = False
                note = "scope {0} never matches a Deployment's GPU pods".format(
                    ",".join(sorted(_NON_MATCHING_SCOPES.intersection(scopes)))
                )
            reports.append(
                QuotaReport(
                    name=object_name(quota),
                    key=key,
                    hard=parse_count(hard[key], key),
                    used=parse_count(used.get(key), key),
                    applies=applies,
                    scopes=scopes,
                    note=note,
                )
            )
    reports.sort(key=lambda q: (q.name, q.key))
    return reports
