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
