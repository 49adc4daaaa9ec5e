# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the update strategy arithmetic (fenceposts, availability during an update)."""

from __future__ import annotations

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.strategy import (
    RECREATE,
    ROLLING_UPDATE,
    StrategyError,
    min_available_during_update,
    resolve_fenceposts,
)


@pytest.mark.parametrize(
    "surge, unavailable, replicas, expected",
    [
        ("25%", "25%", 1, (1, 0)),  # surge rounds up, unavailable down
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 10, (3, 2)),
        ("10%", "10%", 5, (1, 0)),
        ("0%", "10%", 5, (0, 1)),  # both round to 0: Kubernetes takes maxUnavailable 1
        (0, 1, 1, (0, 1)),
        (2, 0, 3, (2, 0)),
        ("100%", "100%", 3, (3, 3)),
    ],
)
def test_resolve_fenceposts(surge, unavailable, replicas, expected):
    assert resolve_fenceposts(ROLLING_UPDATE, surge, unavailable, replicas) == expected


@pytest.mark.parametrize(
    "replicas, kind, surge, unavailable, expected",
    [
        (1, ROLLING_UPDATE, 0, 1, 0),  # the example catalogs' old setting: the only pod goes first
        (1, ROLLING_UPDATE, 1, 0, 1),  # a surge pod: the old pod stays until its successor is Ready
        (1, ROLLING_UPDATE, "25%", "25%", 1),  # 25% of 1 rounds down to 0 unavailable
        (3, ROLLING_UPDATE, "25%", "25%", 3),
        (4, ROLLING_UPDATE, "25%", "25%", 3),
        (10, ROLLING_UPDATE, "25%", "25%", 8),
        (3, ROLLING_UPDATE, 0, 5, 0),  # maxUnavailable above the replicas is capped at the replicas
        (2, ROLLING_UPDATE, "0%", "10%", 1),  # both round to 0: maxUnavailable 1
        (4, ROLLING_UPDATE, 1, "100%", 0),
        (3, RECREATE, 0, 0, 0),  # Recreate stops every old pod first
        (0, ROLLING_UPDATE, 1, 0, 0),
        (1000000, ROLLING_UPDATE, 0, 1, 999999),
    ],
)
def test_min_available_during_update(replicas, kind, surge, unavailable, expected):
    assert min_available_during_update(replicas, kind, surge, unavailable) == expected


def test_min_available_defaults_to_the_api_defaults():
    assert min_available_during_update(1) == 1 and min_available_during_update(8) == 6


@pytest.mark.parametrize(
    "args, message",
    [
        ((1, ROLLING_UPDATE, 0, 0), "cannot both be 0"),
        ((1, ROLLING_UPDATE, "0%", 0), "cannot both be 0"),
        ((1, ROLLING_UPDATE, 1, "150%"), "must not exceed 100%"),
        ((1, ROLLING_UPDATE, "x", 1), "max_surge must be a non-negative integer or a percentage"),
        ((1, ROLLING_UPDATE, -1, 1), "max_surge must not be negative"),
        ((1, ROLLING_UPDATE, True, 1), "max_surge must be an integer or a percentage"),
        ((1, "BlueGreen", 1, 1), "strategy must be RollingUpdate or Recreate"),
        ((-1, ROLLING_UPDATE, 1, 1), "replicas must be a non-negative integer"),
        ((True, ROLLING_UPDATE, 1, 1), "replicas must be a non-negative integer"),
    ],
)
def test_min_available_refuses_what_kubernetes_refuses(args, message):
    with pytest.raises(StrategyError, match=message):
        min_available_during_update(*args)
