# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Messages: the verdict in words, with the numbers that did not fit and the fix."""

from __future__ import annotations

from typing import List, Optional, Sequence, TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.check import FitRequest
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.quota import QuotaReport
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.scheduling import NodeReport
    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit.simulation import RolloutPlan

# How many nodes a message names before it says "and N more".
_MSG_NODES = 4


def plural(count: int, word: str) -> str:
    return "{0} {1}{2}".format(count, word, "" if count == 1 else "s")


def list_names(items: Sequence[str], limit: int = _MSG_NODES) -> str:
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += " and {0} more".format(len(items) - limit)
    return shown


def fits_message(
    request: FitRequest, plan: RolloutPlan, max_replicas: int, throttled: Optional[int] = None, peak: int = 0
) -> str:
    """The verdict of a rollout that completes; ``throttled``: the quota headroom when it is below ``peak``."""
    res = request.resource
    text = "{0} × {1} {2} fit".format(plural(request.replicas, "replica"), request.gpus_per_replica, res)
    if plan.old_pods:
        text += " (rollout peak: {0}, {1}, needs {2} {3} beyond what the Deployment holds)".format(
            plural(plan.peak_pods, "pod"), plural(plan.surge_pods, "surge pod"), max(plan.needed or 0, 0), res
        )
    text = "{0}; up to {1} would fit".format(text, plural(max_replicas, "replica"))
    if throttled is not None:
        # A refused ReplicaSet is retried with the controllers' exponential
        # backoff, not when the quota frees up: seen at over 3 minutes.
        text += (
            "; the quota leaves room for {0} of the {1} {2} the surge takes, so new pods are refused until old ones "
            "are gone and Kubernetes retries them with a growing backoff (doubled at each refusal, up to 1000 s): the "
            "rollout can stall for minutes, past its progress deadline (more quota headroom avoids it)".format(max(throttled, 0), peak, res)
        )
    return text


def failure_message(
    request: FitRequest,
    plan: RolloutPlan,
    nodes_only: RolloutPlan,
    quotas: Sequence[QuotaReport],
    nodes: Sequence[NodeReport],
    max_replicas: int,
    alternative: Optional[str],
) -> str:
    res = request.resource
    g = request.gpus_per_replica
    needed = plan.needed or 0
    problems: List[str] = []
    short = [q for q in quotas if not q.fits]
    if short:
        if needed > 0:
            what = "needs {0} {1}".format(needed, res)
            if plan.surge_pods:
                what += " at the rollout's peak ({0})".format(plural(plan.surge_pods, "surge pod"))
            elif plan.old_pods:
                what += " beyond the GPUs the Deployment's current pods free"
            problems.append(
                "{0}, {1}".format(
                    what, " and ".join("quota {0} has {1} free".format(q.name, q.headroom) for q in short)
                )
            )
        else:
            problems.append(
                " and ".join(
                    "quota {0} is over its limit ({1} used of {2}) and the rollout needs {3} at its peak".format(
                        q.name, q.used, q.hard, q.used + needed
                    )
                    for q in short
                )
            )
    eligible = [n for n in nodes if n.eligible]
    failure = nodes_only.node_failure if not nodes_only.completed else None
    if failure is not None:
        text = "{0} of {1} new pods ({2} {3} each){4} fit on no eligible node".format(
            nodes_only.new_pending,
            nodes_only.new_created,
            g,
            res,
            " in rollout wave {0}".format(failure.index) if plan.old_pods else "",
        )
        if eligible:
            text += " (free: {0})".format(list_names(["{0} {1}".format(n.name, max(n.free, 0)) for n in eligible]))
        else:
            text += " (no node is eligible)"
        excluded = [n for n in nodes if not n.eligible]
        if excluded:
            text += "; not eligible: {0}".format(list_names(["{0} ({1})".format(n.name, n.reason) for n in excluded]))
        if not nodes:
            text += "; no node advertises {0}".format(res)
        problems.append(text)
    elif not short:
        last = plan.waves[-1] if plan.waves else None
        problems.append(
            "the rollout stops at wave {0}: {1} new pods wait for a node and {2} are refused by the quota "
            "(the quota and the nodes together leave no room)".format(
                last.index if last else 1, plan.new_pending, plan.refused
            )
        )

    remedies: List[str] = []
    if alternative:
        remedies.append("the end state fits, only the rollout's surge does not: {0} would fit".format(alternative))
    if max_replicas > 0:
        remedies.append("lower replicas to {0}".format(max_replicas))
    elif not alternative:
        problems.append("no replica fits")
    capacity: List[str] = []
    if len(short) == 1:
        capacity.append("raise requests.{0} to {1}".format(res, short[0].used + needed))
    elif short:
        capacity.append(
            "raise requests.{0} to {1}".format(
                res, " and ".join("{0} in quota {1}".format(q.used + needed, q.name) for q in short)
            )
        )
    if failure is not None and not alternative:
        capacity.append("free or add eligible nodes with {0} {1} each".format(g, res))
    if capacity:
        remedies.append(" and ".join(capacity))
    return "{0}: {1}".format("; ".join(problems), " or ".join(remedies))


def end_state_message(
    request: FitRequest, quotas: Sequence[QuotaReport], nodes: Sequence[NodeReport], old_gpus: int, upper: int
) -> str:
    """Why ``request.replicas`` cannot fit even once the Deployment's current pods are gone."""
    res = request.resource
    g = request.gpus_per_replica
    total = request.replicas * g
    problems: List[str] = []
    for quota in quotas:
        if quota.applies and quota.headroom + old_gpus < total:
            problems.append("quota {0} has {1} {2} for it (free {3} and the current pods' {4})".format(
                quota.name, quota.headroom + old_gpus, res, quota.headroom, old_gpus))
    slots = sum((max(n.free, 0) + n.deployment_gpus) // g for n in nodes if n.eligible)
    if slots < request.replicas:
        problems.append("the eligible nodes have room for {0}".format(plural(slots, "replica")))
    return "{0} × {1} {2} need {3} {2} once the rollout is done, and {4}: lower replicas to {5}".format(
        plural(request.replicas, "replica"), g, res, total, " and ".join(problems) or "it does not fit",
        upper if upper > 0 else "0 (no replica fits)")
