# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy client's retries while the API server does not answer (no cluster: a scripted call and clock)."""

from __future__ import annotations

from typing import List

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.kube import retrying
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import (
    K8sAccessError,
    K8sUnreachableError,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: List[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def failing(times: int, error: Exception):
    left = [times]

    def call() -> str:
        if left[0] > 0:
            left[0] -= 1
            raise error
        return "answer"
    return call


DOWN = K8sUnreachableError("cannot get Deployment m: the API server is unreachable (API server https://127.0.0.1:1): "
                           "refused. Check that the cluster is running")


def test_an_outage_shorter_than_the_bound_is_waited_out_with_backoff() -> None:
    clock, told = Clock(), []
    assert retrying(failing(5, DOWN), 60, told.append, clock.sleep, clock) == "answer"
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert told == ["cannot get Deployment m: the API server is unreachable (API server https://127.0.0.1:1): refused "
                    "- retrying for up to 60 s"]


def test_a_longer_outage_fails_saying_how_long_it_was_retried() -> None:
    clock = Clock()
    with pytest.raises(K8sUnreachableError, match=r"API server https://127.0.0.1:1.*did not answer for 10 s"):
        retrying(failing(1000, DOWN), 10, None, clock.sleep, clock)
    assert 10 <= clock.now <= 10.5


def test_a_refusal_is_not_retried_and_zero_means_at_once() -> None:
    clock = Clock()
    with pytest.raises(K8sAccessError, match="forbidden"):
        retrying(failing(1, K8sAccessError("cannot get: forbidden (403)")), 60, None, clock.sleep, clock)
    with pytest.raises(K8sUnreachableError):
        retrying(failing(1, DOWN), 0, None, clock.sleep, clock)
    assert clock.sleeps == []


def test_warning_headers_are_read_with_kubernetes_core_only_when_there_is_one() -> None:
    import subprocess
    import sys

    from ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.kube import _decode_warnings

    assert _decode_warnings(['299 - "apps/v1beta1 Deployment is deprecated"']) == ["apps/v1beta1 Deployment is deprecated"]
    # Importing the engine does not pay for kubernetes.core's service module (ansible.module_utils.urls, cryptography).
    probe = ("import sys; import ansible_collections.creativeflow.ai_serving.plugins.module_utils.deploy.engine; "
             "print(sorted(m for m in sys.modules if m.endswith('k8s.service') or m == 'ansible.module_utils.urls'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(sys.path), "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.stdout.strip() == "[]"
