# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Deployment's update strategy in numbers: surge, unavailability, availability.

Pure functions, shared by the catalog validation (availability during an
update) and the GPU fit (the rollout's surge). The rounding is Kubernetes'
``ResolveFenceposts``: maxSurge rounds up, maxUnavailable rounds down, and
when both resolve to 0 maxUnavailable becomes 1.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Tuple, Union

ROLLING_UPDATE = "RollingUpdate"
RECREATE = "Recreate"
#: The API server's defaults for a RollingUpdate without maxSurge/maxUnavailable.
DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = "25%"
#: The most replicas a model may ask for (catalog ``replicas`` and ``autoscaling``), and the most pods the GPU
#: preflight plays a rollout with, pod by pod. Far above any model server fleet (Kubernetes supports 5,000 nodes
#: per cluster) and low enough that the preflight answers in seconds whatever the strategy.
MAX_REPLICAS = 5000

IntOrPercent = Union[int, str]


class StrategyError(ValueError):
    """A strategy that Kubernetes would refuse: bad type, bad number, 0/0."""


def parse_int_or_percent(value: IntOrPercent, what: str) -> Tuple[int, bool]:
    """``(number, is_percent)`` from ``3``, ``"3"`` or ``"25%"``."""
    if isinstance(value, bool):
        raise StrategyError("{0} must be an integer or a percentage like '25%', got {1!r}".format(what, value))
    if isinstance(value, int):
        number, percent = value, False
    else:
        text = str(value).strip()
        percent = text.endswith("%")
        digits = text[:-1] if percent else text
        if not re.match(r"^[0-9]+$", digits):
            raise StrategyError(
                "{0} must be a non-negative integer or a percentage like '25%', got {1!r}".format(what, value)
            )
        number = int(digits)
    if number < 0:
        raise StrategyError("{0} must not be negative, got {1!r}".format(what, value))
    return number, percent


def scaled_value(value: IntOrPercent, total: int, round_up: bool, what: str = "value") -> int:
    """Kubernetes ``GetScaledValueFromIntOrPercent``: a percentage of ``total``, rounded up or down."""
    number, percent = parse_int_or_percent(value, what)
    if not percent:
        return number
    scaled = Decimal(number) * Decimal(total) / Decimal(100)
    return int(math.ceil(scaled)) if round_up else int(math.floor(scaled))


def check_strategy(kind: str, max_surge: IntOrPercent, max_unavailable: IntOrPercent) -> None:
    """Raise StrategyError for what the API server refuses (Recreate takes no numbers to check)."""
    if kind not in (ROLLING_UPDATE, RECREATE):
        raise StrategyError("strategy must be RollingUpdate or Recreate, got {0!r}".format(kind))
    if kind == RECREATE:
        return
    surge, _percent = parse_int_or_percent(max_surge, "max_surge")
    unavailable, unavailable_percent = parse_int_or_percent(max_unavailable, "max_unavailable")
    if unavailable_percent and unavailable > 100:
        raise StrategyError("max_unavailable must not exceed 100%, got {0!r}".format(max_unavailable))
    if surge == 0 and unavailable == 0:
        raise StrategyError("max_surge and max_unavailable cannot both be 0: the rollout could never make progress")


def resolve_fenceposts(kind: str, max_surge: IntOrPercent, max_unavailable: IntOrPercent,
                       replicas: int) -> Tuple[int, int]:
    """``(surge, unavailable)`` pods for ``replicas`` (Kubernetes ``ResolveFenceposts``).

    maxSurge rounds up, maxUnavailable rounds down; when both resolve to 0
    (a percentage rounded down) Kubernetes uses maxUnavailable 1. Recreate
    resolves to ``(0, replicas)``: every old pod goes before a new one starts.
    """
    if kind == RECREATE:
        return 0, replicas
    surge = scaled_value(max_surge, replicas, True, "max_surge")
    unavailable = scaled_value(max_unavailable, replicas, False, "max_unavailable")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def min_available_during_update(replicas: int, kind: str = ROLLING_UPDATE,
                                max_surge: IntOrPercent = DEFAULT_MAX_SURGE,
                                max_unavailable: IntOrPercent = DEFAULT_MAX_UNAVAILABLE) -> int:
    """The fewest replicas the Deployment controller keeps available while it replaces ``replicas`` pods.

    RollingUpdate: ``replicas - maxUnavailable`` (resolved and capped at
    ``replicas``, as the controller's ``MaxUnavailable`` does), never below 0.
    Recreate: 0, every old pod stops before a new one starts. No replicas: 0.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise StrategyError("replicas must be a non-negative integer, got {0!r}".format(replicas))
    check_strategy(kind, max_surge, max_unavailable)
    if kind == RECREATE or replicas == 0:
        return 0
    _surge, unavailable = resolve_fenceposts(kind, max_surge, max_unavailable, replicas)
    return replicas - min(unavailable, replicas)
