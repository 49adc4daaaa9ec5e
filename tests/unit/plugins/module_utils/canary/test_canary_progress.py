# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the progression's decision after each check of a step."""

from __future__ import annotations

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.analysis import VersionStats, judge
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.progress import (
    ABORT,
    NEXT,
    PROMOTE,
    WAIT,
    Decision,
    decide,
    next_check,
    promotion_moves,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.canary.spec import Bounds

BOUNDS = Bounds(min_requests=20, max_error_ratio=0.05)
STABLE = VersionStats(500, 0, 0.1)
GOOD = judge(VersionStats(100, 0, 0.1), STABLE, BOUNDS)
BAD = judge(VersionStats(10, 5, 0.1), STABLE, BOUNDS)
FEW = judge(VersionStats(3, 0, 0.1), STABLE, BOUNDS)


def test_a_failed_check_aborts_at_once():
    assert decide(BAD, 15, 120, False) == Decision(ABORT, "error ratio 0.500 (5 of 10 requests) is above the bound 0.05")


@pytest.mark.parametrize("verdict", [GOOD, FEW])
def test_the_step_goes_on_until_its_pause_is_over(verdict):
    assert decide(verdict, 60, 120, False) == Decision(WAIT)


def test_a_passing_step_hands_over_or_promotes():
    assert decide(GOOD, 120, 120, False) == Decision(NEXT)
    assert decide(GOOD, 125, 120, True) == Decision(PROMOTE)


def test_too_few_requests_get_one_more_pause_then_abort():
    assert decide(FEW, 120, 120, False) == Decision(
        WAIT, "not enough canary requests yet (3 of the 20 canary requests a verdict needs): one more pause to "
              "collect them")
    assert decide(FEW, 240, 120, True) == Decision(
        ABORT, "not enough canary requests in 4m (3 of the 20 canary requests a verdict needs): send traffic through "
               "the model's Service during the rollout, or lower analysis.min_requests")


@pytest.mark.parametrize("elapsed, expected", [(0, 15), (50, 10), (60, 15), (75, 15)])
def test_checks_come_every_interval_and_once_at_the_end_of_the_pause(elapsed, expected):
    assert next_check(elapsed, 60, 15) == expected


@pytest.mark.parametrize("stable, canary, replicas, moves", [
    (2, 2, 4, [(3, 2), (3, 1), (4, 1), (4, 0)]),
    (3, 1, 4, [(4, 1), (4, 0)]),
    (1, 1, 1, [(1, 0)]),  # one replica: the canary ran beside it
    (0, 2, 2, [(1, 2), (1, 1), (2, 1), (2, 0)]),  # a 100% step: the stable version had no pod
])
def test_the_promotion_moves_one_pod_each_way(stable, canary, replicas, moves):
    assert promotion_moves(stable, canary, replicas) == moves
    # never fewer than the replicas, never more than one pod above the step's pods
    assert all(s + c >= min(replicas, stable + canary) and s + c <= stable + canary + 1 for s, c in moves)
