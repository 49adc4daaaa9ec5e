# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the progression does after each check of a step: the decision, apart from the waiting and the API calls.

A step lasts its pause and is checked every ``analysis.interval``:

- a failed check aborts at once (a bound broken now stays broken; the stable version takes the traffic back);
- before the pause is over, the step goes on;
- at the end of the pause a passing step hands over to the next one, or the last one promotes;
- a step without enough canary requests by then gets one more pause to collect them, then aborts saying so:
  a canary that never saw traffic is not a tested canary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.analysis import FAIL, INCONCLUSIVE, Verdict
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import format_seconds

WAIT = "wait"
NEXT = "next"
PROMOTE = "promote"
ABORT = "abort"


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str = ""


def decide(verdict: Verdict, elapsed_seconds: float, pause_seconds: float, last_step: bool) -> Decision:
    """The decision after a check ``elapsed_seconds`` into a step of ``pause_seconds``."""
    if verdict.status == FAIL:
        return Decision(ABORT, "; ".join(verdict.reasons))
    if elapsed_seconds < pause_seconds:
        return Decision(WAIT)
    if verdict.status == INCONCLUSIVE:
        if elapsed_seconds < 2 * pause_seconds:
            return Decision(WAIT, "not enough canary requests yet (%s): one more pause to collect them"
                            % "; ".join(verdict.notes))
        return Decision(ABORT, "not enough canary requests in %s (%s): send traffic through the model's Service "
                               "during the rollout, or lower analysis.min_requests"
                        % (format_seconds(elapsed_seconds), "; ".join(verdict.notes)))
    return Decision(PROMOTE if last_step else NEXT)


def next_check(elapsed_seconds: float, pause_seconds: float, interval_seconds: float) -> float:
    """Seconds to wait before the next check: every ``interval``, and once exactly at the end of the pause."""
    interval = max(float(interval_seconds), 0.001)
    if elapsed_seconds < pause_seconds:
        return max(0.0, min(interval, pause_seconds - elapsed_seconds))
    return interval


def promotion_moves(stable: int, canary: int, replicas: int) -> List[Tuple[int, int]]:
    """The (stable, canary) pod counts the replica split's promotion goes through, after the stable Deployment took the
    new version at ``stable`` pods: one more stable pod, then one canary pod fewer, until ``replicas`` stable pods and
    no canary (capacity never drops below ``replicas`` ready pods, nor rises more than one pod above the step's)."""
    moves: List[Tuple[int, int]] = []
    while stable < replicas or canary > 0:
        if stable < replicas:
            stable += 1
            moves.append((stable, canary))
        if canary > 0 and (stable + canary > replicas or stable >= replicas):
            canary -= 1
            moves.append((stable, canary))
    return moves
