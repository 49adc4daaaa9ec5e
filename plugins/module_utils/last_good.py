# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The last known good version of a model: recorded on its Deployment, the target of every rollback.

A deploy writes the annotation :data:`ANNOTATION` only after its rollout
completed and its smoke check passed: the ReplicaSet's ``pod-template-hash``
(the stable name of the pod template: ``kubectl rollout undo`` renumbers
revisions, the hash stays), its revision then, the time and the run. Every
rollback, automatic or by hand, puts back that template, never "what exists
now": a run that starts on a Deployment left in the middle of a failed or
interrupted rollout would otherwise snapshot the broken version as the one to
return to.

The annotation is written with a field manager of its own
(:data:`FIELD_MANAGER`), so the deploy's server-side apply of the catalog's
objects, which does not name it, never removes it.

Plain functions over objects in their JSON form; the caller reads and patches.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_objects import (
    meta as _meta,
    name as _name,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.rollout import (
    POD_TEMPLATE_HASH,
    deployment_replicasets,
    newest_replicaset,
    revision_of,
    rollout_state,
)

ANNOTATION = "creativeflow.ai/last-good"
FIELD_MANAGER = "creativeflow-ai-serving-last-good"


def template_hash(replicaset: Optional[Mapping[str, Any]]) -> Optional[str]:
    """A ReplicaSet's ``pod-template-hash`` (on the ReplicaSet and on its template; either will do)."""
    if not replicaset:
        return None
    template = (replicaset.get("spec") or {}).get("template") or {}
    for labels in ((replicaset.get("metadata") or {}).get("labels"), (template.get("metadata") or {}).get("labels")):
        if (labels or {}).get(POD_TEMPLATE_HASH):
            return str(labels[POD_TEMPLATE_HASH])
    return None


@dataclass(frozen=True)
class LastGood:
    template_hash: str
    revision: int
    time: str
    run: str

    def describe(self) -> str:
        return "template {0} (revision {1} then, verified {2} by run {3})".format(
            self.template_hash, self.revision, self.time, self.run)


def record(deployment: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]], run: str,
           now: _dt.datetime) -> LastGood:
    """The Deployment's current version as the last good one. Call it only on a complete rollout."""
    state = rollout_state(deployment)
    if not state.complete:
        raise ValueError("Deployment {0} is not rolled out ({1}): it cannot be recorded as good".format(
            _name(deployment), state.message))
    current = newest_replicaset(deployment, replicasets)
    current_hash = template_hash(current)
    if not current or not current_hash or revision_of(current) != revision_of(deployment):
        raise ValueError("Deployment {0} has no ReplicaSet of its revision {1} yet".format(
            _name(deployment), revision_of(deployment)))
    return LastGood(template_hash=current_hash, revision=revision_of(deployment) or 0,
                    time=now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), run=run)


def annotation_patch(deployment: Mapping[str, Any], good: LastGood) -> Dict[str, Any]:
    """The server-side apply body that sets the annotation (apply it with :data:`FIELD_MANAGER`)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": _name(deployment),
            "namespace": _meta(deployment).get("namespace"),
            "annotations": {ANNOTATION: json.dumps(asdict(good), sort_keys=True, separators=(",", ":"))},
        },
    }


def read(deployment: Optional[Mapping[str, Any]]) -> Tuple[Optional[LastGood], str]:
    """The recorded last good version and, when there is none usable, why (for the run's message)."""
    if not deployment:
        return None, "the model is not deployed"
    raw = (_meta(deployment).get("annotations") or {}).get(ANNOTATION)
    if raw is None:
        return None, "no version of Deployment {0} was recorded as good yet".format(_name(deployment))
    try:
        data = json.loads(raw)
        good = LastGood(template_hash=str(data["template_hash"]), revision=int(data["revision"]),
                        time=str(data["time"]), run=str(data["run"]))
    except (ValueError, TypeError, KeyError) as exc:
        return None, "annotation {0} of Deployment {1} is not readable ({2}): {3!r}".format(
            ANNOTATION, _name(deployment), exc, raw[:200])
    if not good.template_hash:
        return None, "annotation {0} of Deployment {1} names no template".format(ANNOTATION, _name(deployment))
    return good, ""


def replicaset_of(deployment: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]],
                  good: LastGood) -> Optional[Mapping[str, Any]]:
    """The Deployment's ReplicaSet holding the good template (None once the history limit pruned it)."""
    for rs in deployment_replicasets(deployment, replicasets):
        if template_hash(rs) == good.template_hash:
            return rs
    return None


def good_template(deployment: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]],
                  good: LastGood) -> Optional[Dict[str, Any]]:
    """The good pod template, ready to put back into the Deployment (``pod-template-hash`` removed)."""
    rs = replicaset_of(deployment, replicasets, good)
    if rs is None:
        return None
    template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
    ((template.get("metadata") or {}).get("labels") or {}).pop(POD_TEMPLATE_HASH, None)
    return template


#: Where a run finds the Deployment, against the recorded good version.
AT_GOOD = "at-good"  # the current template is the good one (rolled out or rolling back to it)
UNRECORDED = "unrecorded"  # no record: a first deploy, or one made before the annotation existed
AWAY_COMPLETE = "away-complete"  # another template, rolled out (changed by hand or by another tool)
AWAY_UNFINISHED = "away-unfinished"  # another template, not rolled out: a failed or interrupted rollout


def position(deployment: Optional[Mapping[str, Any]], replicasets: Sequence[Mapping[str, Any]],
             good: Optional[LastGood]) -> str:
    """Where ``deployment`` stands against ``good`` (one of the constants above)."""
    if not deployment or good is None:
        return UNRECORDED
    current = newest_replicaset(deployment, replicasets)
    current_is_good = template_hash(current) == good.template_hash
    if current is not None and revision_of(current) == revision_of(deployment) and current_is_good:
        return AT_GOOD
    return AWAY_COMPLETE if rollout_state(deployment).complete else AWAY_UNFINISHED
