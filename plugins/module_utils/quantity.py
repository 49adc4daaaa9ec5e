# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes resource quantities, shared by the catalog validation and the GPU fit."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Union


class QuantityError(ValueError):
    """A value is not a Kubernetes resource quantity."""


_QUANTITY_RE = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exponent>[+-]?[0-9]+))?$"
)
_BINARY_SI = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: Union[str, int, float]) -> Fraction:
    """Return the exact value of a Kubernetes resource quantity.

    Accepts what the API server accepts: a signed decimal number followed by a
    binary SI suffix (Ki, Mi, Gi, Ti, Pi, Ei), a decimal SI suffix (n, u, m,
    none, k, M, G, T, P, E) or a decimal exponent (``1e3``). YAML numbers
    (``cpu: 2``, ``cpu: 0.5``) are taken as written. ``"500m"`` is 1/2,
    ``"1Gi"`` is 1073741824, ``"1E"`` is 10**18 but ``"1E3"`` is 1000.
    Raises QuantityError for anything else (booleans included).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise QuantityError("%r is not a Kubernetes quantity" % (value,))
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        # str() gives the shortest repr, so 0.1 is 1/10 and not its binary value.
        text = str(value)
        if not _QUANTITY_RE.match(text):  # inf, nan
            raise QuantityError("%r is not a Kubernetes quantity" % (value,))
        return Fraction(text)
    match = _QUANTITY_RE.match(value.strip())
    if not match:
        raise QuantityError(
            "%r is not a Kubernetes quantity (a number with an optional suffix such as m, k, M, G, Ki, Mi, Gi)" % (value,))
    number = Fraction(match.group("number"))
    suffix = match.group("suffix")
    if suffix in _BINARY_SI:
        return number * (1024 ** _BINARY_SI[suffix])
    if suffix:
        return number * (Fraction(10) ** _DECIMAL_SI[suffix])
    if match.group("exponent") is not None:
        return number * (Fraction(10) ** int(match.group("exponent")))
    return number
