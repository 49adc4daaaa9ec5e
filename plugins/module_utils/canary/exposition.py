# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The samples of a Prometheus text exposition, read with prometheus_client's own parser.

The canary analysis needs every sample's name, labels and value; ``prometheus_client`` (a requirement of the
collection on the controller, requirements.txt) reads the format as the servers write it (escapes, timestamps,
NaN/±Inf, quoted UTF-8 names, exemplars). Its errors become ExpositionError, naming what could not be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # a controller without the collection's requirements: said when a canary is analysed
    text_string_to_metric_families = None  # type: ignore


class ExpositionError(ValueError):
    """Metrics that are not in the Prometheus text format, or no parser to read them."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Dict[str, str] = field(default_factory=dict)
    value: float = 0.0


def parse_value(text: str) -> float:
    """A sample value or ``le`` bound: a Go float, ``NaN``, ``+Inf``, ``-Inf`` (Python's float reads them all)."""
    try:
        return float(text)
    except ValueError:
        raise ValueError("%r is not a number" % text) from None


def parse(text: str) -> List[Sample]:
    """Every sample of an exposition, in order."""
    if text_string_to_metric_families is None:
        raise ExpositionError("reading the pods' metrics needs the Python library prometheus-client on the controller "
                              "(pip install -r requirements.txt of the collection)")
    try:
        return [Sample(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text) for s in family.samples]
    except (ValueError, IndexError, TypeError) as error:
        raise ExpositionError("the metrics are not in the Prometheus text format: %s" % error) from error
