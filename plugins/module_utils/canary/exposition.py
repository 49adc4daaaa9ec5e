# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A parser of the Prometheus text exposition format (0.0.4, and what OpenMetrics adds to a sample line).

The controller has no ``prometheus_client`` (the collection's requirements do not list it, and a deploy should not
need it for one parser), so this reads what the canary analysis needs: every sample's name, labels and value.
``# HELP``/``# TYPE`` and other comments are skipped; a timestamp, an OpenMetrics exemplar (`` # {...} 1.0``) and
``# EOF`` are accepted and ignored. A line it cannot read raises ExpositionError naming the line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_SPECIAL = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}


class ExpositionError(ValueError):
    """A line that is not a sample of the text format."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Dict[str, str] = field(default_factory=dict)
    value: float = 0.0


def parse_value(text: str) -> float:
    """A sample value or ``le`` bound: a Go float, ``NaN``, ``+Inf``, ``-Inf``."""
    special = _SPECIAL.get(text.lower())
    if special is not None:
        return special
    if not re.match(r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$", text):
        raise ValueError("%r is not a number" % text)
    return float(text)


def _quoted(line: str, start: int) -> Tuple[str, int]:
    """The string quoted at ``line[start]`` (a ``"``), unescaped, and the index after its closing quote."""
    out: List[str] = []
    index = start + 1
    while index < len(line):
        char = line[index]
        if char == "\\":
            if index + 1 >= len(line):
                break
            escaped = line[index + 1]
            out.append(_ESCAPES.get(escaped, "\\" + escaped))
            index += 2
        elif char == '"':
            return "".join(out), index + 1
        else:
            out.append(char)
            index += 1
    raise ValueError("a quoted value is not closed")


def _labels(line: str, start: int) -> Tuple[Dict[str, str], int, str]:
    """The label set at ``line[start]`` (a ``{``), the index after its ``}``, and a name quoted inside it
    (OpenMetrics 2 / Prometheus 3 may write ``{"name.with.dots", label="..."}``), else ``""``."""
    labels: Dict[str, str] = {}
    quoted_name = ""
    index = start + 1
    while True:
        while index < len(line) and line[index] in " \t":
            index += 1
        if index < len(line) and line[index] == "}":
            return labels, index + 1, quoted_name
        if index < len(line) and line[index] == '"':
            text, index = _quoted(line, index)
            while index < len(line) and line[index] in " \t":
                index += 1
            if index < len(line) and line[index] == "=":  # a quoted label name
                name = text
            else:
                if quoted_name or labels:
                    raise ValueError("a quoted metric name must come first in the braces")
                quoted_name = text
                name = ""
        else:
            match = _LABEL_NAME.match(line, index)
            if not match:
                raise ValueError("a label name is expected at column %d" % (index + 1))
            name, index = match.group(0), match.end()
            while index < len(line) and line[index] in " \t":
                index += 1
        if name:
            if index >= len(line) or line[index] != "=":
                raise ValueError("'=' is expected after label %s" % name)
            index += 1
            while index < len(line) and line[index] in " \t":
                index += 1
            if index >= len(line) or line[index] != '"':
                raise ValueError("the value of label %s must be quoted" % name)
            value, index = _quoted(line, index)
            if name in labels:
                raise ValueError("label %s is given twice" % name)
            labels[name] = value
        while index < len(line) and line[index] in " \t":
            index += 1
        if index < len(line) and line[index] == ",":
            index += 1
        elif index < len(line) and line[index] == "}":
            continue
        else:
            raise ValueError("',' or '}' is expected at column %d" % (index + 1))


def parse_line(line: str) -> Sample:
    """One sample line."""
    index = 0
    match = _NAME.match(line)
    name = ""
    if match:
        name, index = match.group(0), match.end()
    labels: Dict[str, str] = {}
    if index < len(line) and line[index] == "{":
        labels, index, quoted_name = _labels(line, index)
        name = name or quoted_name
    if not name:
        raise ValueError("a metric name is expected")
    rest = line[index:]
    if rest and rest[0] not in " \t":
        raise ValueError("a space is expected after the metric name and labels")
    # value [timestamp] [# exemplar]
    rest = rest.split(" # ", 1)[0].split()
    if not rest or len(rest) > 2:
        raise ValueError("one value (and an optional timestamp) is expected after %s" % name)
    return Sample(name, labels, parse_value(rest[0]))


def parse(text: str) -> List[Sample]:
    """Every sample of an exposition, in order."""
    samples: List[Sample] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            samples.append(parse_line(line))
        except ValueError as error:
            raise ExpositionError("line %d of the metrics is not in the Prometheus text format (%s): %s"
                                  % (number, error, raw[:200]))
    return samples
