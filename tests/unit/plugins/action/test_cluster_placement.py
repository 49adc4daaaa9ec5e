# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_placement's reading of the play's hosts: pure logic, no playbook."""

from __future__ import annotations

from typing import Any, Dict

from ansible_collections.creativeflow.ai_serving.plugins.action.cluster_placement import _host_view, _preflight


class Lazy(dict):
    """Host variables that record which were read (a kubeconfig may be a lookup: read only what is needed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read: list = []

    def get(self, key: str, default: Any = None) -> Any:
        self.read.append(key)
        return super().get(key, default)


def test_the_lone_localhost_connection_is_not_read() -> None:
    hostvars: Dict[str, Any] = {"localhost": Lazy(ai_serving_kubeconfig="{{ lookup('pipe', 'slow') }}",
                                                  ai_serving_environment="local")}
    view = _host_view("localhost", hostvars, single=True)
    assert view == {"name": "localhost", "ai_serving_environment": "local"}
    assert "ai_serving_kubeconfig" not in hostvars["localhost"].read


def test_a_cluster_host_gives_its_connection_label_and_preference() -> None:
    hostvars = {"eu": Lazy(ai_serving_context="prod-eu", ai_serving_cluster_label="eu-west",
                           ai_serving_cluster_preference=1, unrelated="x")}
    assert _host_view("eu", hostvars, single=False) == {
        "name": "eu", "ai_serving_context": "prod-eu", "ai_serving_cluster_label": "eu-west",
        "ai_serving_cluster_preference": 1}
    assert _host_view("missing", {}, single=False) == {"name": "missing"}


def test_preflight_results() -> None:
    assert _preflight(None) is None and _preflight("fits") is None
    found = _preflight({"fits": False, "runs": None, "msg": "GPU preflight ... Nothing was applied. (To deploy anyway)"})
    assert found is not None and not found.fits and found.runs is None
    assert found.reason == "GPU preflight ... Nothing was applied."
    found = _preflight({"fits": True, "runs": True})
    assert found is not None and found.fits and found.runs is True
