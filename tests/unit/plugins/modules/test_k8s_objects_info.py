"""k8s_objects_info's own logic: input checks, what it returns per key, and what metadata_only keeps.

The reads themselves go through KubeReader; here a recording reader stands in for
it, and the module runs against the real API in the deploy tests
(tests/integration/test_deploy_model.py).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from ansible_collections.creativeflow.ai_serving.plugins.modules.k8s_objects_info import (
    check_objects,
    metadata_only,
    read_objects,
)

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {
        "name": "api-keys",
        "namespace": "ai",
        "uid": "u-1",
        "labels": {"team": "ml"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"data":{"KEY":"c2VjcmV0"}}'},
        "managedFields": [{"manager": "kubectl"}],
    },
    "data": {"KEY": "c2VjcmV0"},
}


class RecordingReader:
    """Answers from a dict of objects; remembers the calls."""

    def __init__(self, objects: Dict[tuple, Dict[str, Any]], served: set) -> None:
        self.objects = objects
        self.served = served
        self.calls: List[tuple] = []

    def serves(self, kind: str, api_version: str = "v1") -> bool:
        return (kind, api_version) in self.served

    def get(self, kind: str, name: str, namespace: Optional[str] = None, api_version: str = "v1"):
        self.calls.append(("get", kind, name, namespace))
        return self.objects.get((kind, name, namespace))

    def list(self, kind: str, api_version: str = "v1", namespace: Optional[str] = None,
             label_selector: Optional[str] = None, field_selector: Optional[str] = None):
        self.calls.append(("list", kind, namespace, label_selector))
        return [obj for (k, _name, ns), obj in self.objects.items() if k == kind and ns == namespace]


def item(key: str, kind: str, **extra: Any) -> Dict[str, Any]:
    return {"key": key, "kind": kind, "api_version": extra.pop("api_version", "v1"), "name": extra.pop("name", None),
            "namespace": extra.pop("namespace", None), "label_selectors": extra.pop("label_selectors", []),
            "metadata_only": extra.pop("metadata_only", False)}


def test_every_key_gets_a_list_and_a_served_flag():
    deployment = {"kind": "Deployment", "metadata": {"name": "m", "namespace": "ai"}}
    reader = RecordingReader({("Deployment", "m", "ai"): deployment}, {("Deployment", "apps/v1"), ("Service", "v1")})
    result = read_objects(reader, [
        item("deployment", "Deployment", api_version="apps/v1", name="m", namespace="ai"),
        item("service", "Service", name="m", namespace="ai"),
        item("monitor", "ServiceMonitor", api_version="monitoring.coreos.com/v1", name="m", namespace="ai"),
    ])
    assert result["resources"] == {"deployment": [deployment], "service": [], "monitor": []}
    assert result["api_found"] == {"deployment": True, "service": True, "monitor": False}
    # A kind that is not served is not asked for at all.
    assert ("get", "ServiceMonitor", "m", "ai") not in reader.calls


def test_selectors_are_joined_into_one_list_call():
    reader = RecordingReader({}, {("ConfigMap", "v1")})
    read_objects(reader, [item("cms", "ConfigMap", namespace="ai", label_selectors=["a=b", "c!=d"])])
    assert reader.calls == [("list", "ConfigMap", "ai", "a=b,c!=d")]


def test_metadata_only_drops_data_annotations_and_managed_fields():
    kept = metadata_only(SECRET)
    assert kept == {"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "api-keys", "namespace": "ai", "uid": "u-1", "labels": {"team": "ml"}}}
    assert "c2VjcmV0" not in repr(kept)


def test_metadata_only_applies_per_object():
    reader = RecordingReader({("Secret", "api-keys", "ai"): SECRET}, {("Secret", "v1")})
    result = read_objects(reader, [item("secret", "Secret", name="api-keys", namespace="ai", metadata_only=True),
                                   item("full", "Secret", name="api-keys", namespace="ai")])
    assert "data" not in result["resources"]["secret"][0]
    assert result["resources"]["full"][0]["data"] == {"KEY": "c2VjcmV0"}


@pytest.mark.parametrize(("objects", "message"), [
    ([item("a", "Service"), item("a", "ConfigMap")], "objects: key 'a' is used twice; give every object its own key"),
    ([item("a", "Service", name="s", label_selectors=["x=y"])],
     "objects[a]: label_selectors apply to lists; remove them or the name"),
])
def test_bad_objects_are_refused(objects, message):
    with pytest.raises(ValueError) as excinfo:
        check_objects(objects)
    assert str(excinfo.value) == message
