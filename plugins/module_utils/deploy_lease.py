# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One deploy of a model at a time: the decisions about its ``coordination.k8s.io/v1`` Lease.

A run that deploys, rolls back or undeploys a model holds the Lease
``ai-serving-deploy-<model>`` in the model's namespace from before its
preflight to its end, renewing it while it works. Another run finds it held
and waits (up to a bound) or fails at once, naming who holds it since when; a
Lease its holder stopped renewing (a run killed with SIGKILL, a controller
that lost the network) expires and is taken over, which the taker says.

Plain functions over the Lease in its JSON form (camelCase keys); the caller
reads, creates, replaces and deletes it, always with the ``resourceVersion``
it read, so two runs that decide at once cannot both win: the API server
refuses the second write with a conflict, and that run reads and decides
again.

Expiry is judged on ``renewTime + leaseDurationSeconds`` against this
machine's clock, with :data:`CLOCK_SKEW_S` of slack for controllers whose
clocks differ (client-go's leader election avoids clocks by watching the
Lease for a whole duration; a deploy that must say at once who holds the
Lease cannot).
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

API_VERSION = "coordination.k8s.io/v1"
KIND = "Lease"
NAME_PREFIX = "ai-serving-deploy-"
#: A holder renews every third of it; a dead holder's Lease is free this long after its last renewal.
DEFAULT_DURATION_S = 60
#: Clocks of two controllers may differ by this much.
CLOCK_SKEW_S = 5
#: What the run is (playbook, action, model, start), for ``kubectl get lease -o yaml`` readers.
RUN_ANNOTATION = "creativeflow.ai/run"
MANAGED_BY = "creativeflow.ai_serving"

_MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"
_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


def lease_name(model: str) -> str:
    """The Lease of ``model`` (a model name is a DNS label, so the name stays a valid object name)."""
    return NAME_PREFIX + model


def identity(run_id: str, user: str, host: str, pid: int) -> str:
    """Who holds the Lease, in words a reader can act on (``kill``, ask the colleague)."""
    return "{0}@{1} pid {2} run {3}".format(user or "?", host or "?", pid, run_id)


def format_time(when: _dt.datetime) -> str:
    """A MicroTime as the API server writes it (UTC, microseconds, ``Z``)."""
    return when.astimezone(_dt.timezone.utc).strftime(_MICROTIME)


def parse_time(value: Optional[str]) -> Optional[_dt.datetime]:
    """A Time or MicroTime of the API (``...Z`` or an offset, up to nanoseconds); None when absent or unreadable."""
    if not value:
        return None
    match = _TIME_RE.match(value.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    micros = int(((fraction or ".0")[1:] + "000000")[:6])
    when = _dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(microsecond=micros)
    if zone == "Z":
        return when.replace(tzinfo=_dt.timezone.utc)
    sign = 1 if zone[0] == "+" else -1
    offset = _dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * sign
    return when.replace(tzinfo=_dt.timezone(offset))


@dataclass(frozen=True)
class Holder:
    """The Lease as read: who holds it, since when, renewed when, for how long."""

    identity: str
    acquired: Optional[_dt.datetime]
    renewed: Optional[_dt.datetime]
    duration_s: int
    transitions: int

    def expires(self) -> Optional[_dt.datetime]:
        last = self.renewed or self.acquired
        if last is None:
            return None
        return last + _dt.timedelta(seconds=self.duration_s + CLOCK_SKEW_S)


def holder_of(lease: Optional[Mapping[str, Any]]) -> Optional[Holder]:
    """The holder of ``lease``; None when there is no Lease or nobody holds it (released)."""
    if not lease:
        return None
    spec = lease.get("spec") or {}
    who = spec.get("holderIdentity")
    if not who:
        return None
    return Holder(
        identity=str(who),
        acquired=parse_time(spec.get("acquireTime")),
        renewed=parse_time(spec.get("renewTime")),
        duration_s=int(spec.get("leaseDurationSeconds") or DEFAULT_DURATION_S),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


#: What the run does with the Lease it read.
CREATE = "create"  # no Lease: create it
TAKE = "take"  # free (released) or expired: replace it with ours
RENEW = "renew"  # ours already (a renewal, or a retry after our own write timed out)
HELD = "held"  # another live run holds it: wait or fail


@dataclass(frozen=True)
class Decision:
    action: str
    holder: Optional[Holder]
    #: For TAKE of an expired Lease: how long ago it expired. For HELD: seconds until it expires unless renewed.
    seconds: float = 0.0
    expired: bool = False
    #: Of the Lease read (also when released, with no holder): the write must carry them.
    resource_version: Optional[str] = None
    transitions: int = 0


def decide(lease: Optional[Mapping[str, Any]], me: str, now: _dt.datetime) -> Decision:
    """What a run identified by ``me`` does with the Lease it read (None: there is none) at ``now``."""
    if lease is None:
        return Decision(CREATE, None)
    read = {"resource_version": (lease.get("metadata") or {}).get("resourceVersion"),
            "transitions": int((lease.get("spec") or {}).get("leaseTransitions") or 0)}
    holder = holder_of(lease)
    if holder is None:
        return Decision(TAKE, None, **read)
    if holder.identity == me:
        return Decision(RENEW, holder, **read)
    expires = holder.expires()
    if expires is None:
        # A Lease without times was not written by a run of ours: treat it as expired.
        return Decision(TAKE, holder, expired=True, **read)
    left = (expires - now).total_seconds()
    if left <= 0:
        return Decision(TAKE, holder, seconds=-left, expired=True, **read)
    return Decision(HELD, holder, seconds=left, **read)


def lease_object(name: str, namespace: str, me: str, now: _dt.datetime, decision: Decision,
                 duration_s: int = DEFAULT_DURATION_S, run: Optional[str] = None,
                 labels: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The Lease to create (``CREATE``) or to replace (``TAKE``, ``RENEW``), with the resourceVersion read."""
    if decision.action == HELD:
        raise ValueError("the Lease is held by {0}: it cannot be written".format(decision.holder.identity))
    holder = decision.holder
    renewing = decision.action == RENEW and holder is not None
    metadata: Dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels or {}, **{"app.kubernetes.io/managed-by": MANAGED_BY}),
    }
    if run:
        metadata["annotations"] = {RUN_ANNOTATION: run}
    if decision.resource_version:
        metadata["resourceVersion"] = decision.resource_version
    transitions = decision.transitions
    spec = {
        "holderIdentity": me,
        "leaseDurationSeconds": int(duration_s),
        "acquireTime": format_time(holder.acquired) if renewing and holder.acquired else format_time(now),
        "renewTime": format_time(now),
        # A new holder is a transition (client-go counts the same way).
        "leaseTransitions": transitions if renewing or decision.action == CREATE else transitions + 1,
    }
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def released(lease: Mapping[str, Any]) -> Dict[str, Any]:
    """``lease`` given up by its holder (kept, so the transitions count and the run annotation stay readable)."""
    out = {"apiVersion": API_VERSION, "kind": KIND, "metadata": dict(lease.get("metadata") or {}),
           "spec": dict(lease.get("spec") or {})}
    out["spec"].pop("holderIdentity", None)
    out["spec"].pop("renewTime", None)
    return out


def _ago(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 120:
        return "{0} s".format(seconds)
    return "{0} min {1} s".format(seconds // 60, seconds % 60)


def held_message(model: str, namespace: str, decision: Decision, now: _dt.datetime, waited_s: float = 0) -> str:
    """Why this run does not deploy ``model``: who holds its Lease since when, and what to do."""
    holder = decision.holder
    since = format_time(holder.acquired) if holder and holder.acquired else "an unknown time"
    renewed = (" (renewed {0} ago)".format(_ago((now - holder.renewed).total_seconds()))
               if holder and holder.renewed else "")
    waited = " after waiting {0}".format(_ago(waited_s)) if waited_s > 0 else ""
    return (
        "{model} is being deployed by another run{waited}: {who} holds Lease {ns}/{name} since {since}{renewed}. "
        "Wait for that run to finish and run again (or let this one wait: ai_serving_lock_wait). If that run is "
        "dead, its Lease expires {left} from now and the next run takes it over."
    ).format(model=model, waited=waited, who=holder.identity if holder else "?", ns=namespace,
             name=lease_name(model), since=since, renewed=renewed, left=_ago(decision.seconds))


def takeover_message(model: str, namespace: str, decision: Decision) -> str:
    """What a run says when it takes over the Lease of a run that stopped renewing it."""
    holder = decision.holder
    return (
        "Took over Lease {ns}/{name} of {model} from {who}, which stopped renewing it {ago} ago (a run that was "
        "killed or lost the API server): the state it left is checked before this deploy goes on."
    ).format(ns=namespace, name=lease_name(model), model=model, who=holder.identity if holder else "?",
             ago=_ago(decision.seconds + (holder.duration_s + CLOCK_SKEW_S if holder else 0)))
