# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GPU check's reads: what :func:`check_fit` needs, read through kubernetes.core's client.

Shared by the module ``gpu_capacity_check`` and the deploy engine
(``model_deploy``), which runs it in the controller. Not imported by the
package's ``__init__``: the pure logic needs no Kubernetes client.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.creativeflow.ai_serving.plugins.module_utils.gpu_fit import (
    DEFAULT_MAX_SURGE,
    DEFAULT_MAX_UNAVAILABLE,
    DEFAULT_RESOURCE,
    RECREATE,
    ROLLING_UPDATE,
    CurrentDeployment,
    FitRequest,
    GpuFitError,
    RolloutStrategy,
    check_fit,
    deployment_pods,
    deployment_template_spec,
    label_selector_string,
    parse_tolerations,
    pod_spec_request,
)
from ansible_collections.creativeflow.ai_serving.plugins.module_utils.k8s_common import KubeReader

ACTIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"

#: The options the check reads from its params (the module's argument spec, less the connection).
DEFAULTS: Dict[str, Any] = {
    "resource_name": DEFAULT_RESOURCE, "gpus_per_replica": None, "replicas": None, "node_selector": None,
    "tolerations": None, "strategy": None, "max_surge": None, "max_unavailable": None, "deployment": None,
    "companions": None,
}


class JsonReader(KubeReader):
    """A KubeReader that decodes responses straight from JSON.

    The dynamic client otherwise wraps every object of a list in a
    ResourceInstance and ``to_dict()`` walks it back: for 5,000 pods that
    round trip costs seconds, the JSON decoding a fraction of one. Errors are
    the same (the client raises them before decoding).
    """

    def _call(self, what: str, kind: str, api_version: str, params: Dict[str, Any]) -> Dict[str, Any]:
        try:
            resource = self._client.resource(kind, api_version)
            response = self._client.get(resource, serialize=False, **params)
            return json.loads(response.data)
        except Exception as exc:  # mapped to a clear message by the reader
            raise self._error(what, exc) from exc


class CapacityCheck:
    """Reads what the check needs and runs it; raises GpuFitError / K8sAccessError."""

    def __init__(self, params: Dict[str, Any], reader: KubeReader) -> None:
        self.reader = reader
        self.params: Dict[str, Any] = params

    def read_deployment(self) -> Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]]]:
        name = self.params["deployment"]
        namespace = self.params["namespace"]
        if not name:
            return None, []
        deployment = self.reader.get("Deployment", name, namespace, api_version="apps/v1")
        if deployment is None:
            return None, []
        return deployment, self._own_pods(deployment)

    def _own_pods(self, deployment: Dict[str, Any]) -> List[Dict[str, Any]]:
        namespace = self.params["namespace"]
        selector = label_selector_string((deployment.get("spec") or {}).get("selector"))
        replicasets = self.reader.list("ReplicaSet", "apps/v1", namespace, label_selector=selector)
        pods = self.reader.list("Pod", "v1", namespace, label_selector=selector)
        return deployment_pods(deployment, replicasets, pods)

    def read_companions(self) -> Tuple[int, List[Dict[str, Any]]]:
        """``companions``: other Deployments of the namespace whose pods are part of the ``replicas`` this rollout
        brings (a canary a run left, continued or replaced by the deploy that checks): their spec replicas and their
        own pods, counted as the current pods the rollout replaces rather than as other pods beside it."""
        replicas, pods = 0, []
        for name in self.params.get("companions") or []:
            companion = self.reader.get("Deployment", name, self.params["namespace"], api_version="apps/v1")
            if companion is None:
                continue
            spec_replicas = (companion.get("spec") or {}).get("replicas")
            replicas += 1 if spec_replicas is None else int(spec_replicas)
            pods += self._own_pods(companion)
        return replicas, pods

    def strategy(self, deployment: Optional[Dict[str, Any]]) -> RolloutStrategy:
        current = RolloutStrategy.from_deployment(deployment) if deployment else RolloutStrategy()
        kind = self.params["strategy"] or current.type
        if kind == RECREATE:
            return RolloutStrategy(type=RECREATE)
        surge = self.params["max_surge"]
        unavailable = self.params["max_unavailable"]
        if current.type == ROLLING_UPDATE:
            surge = current.max_surge if surge is None else surge
            unavailable = current.max_unavailable if unavailable is None else unavailable
        return RolloutStrategy(
            type=ROLLING_UPDATE,
            max_surge=DEFAULT_MAX_SURGE if surge is None else surge,
            max_unavailable=DEFAULT_MAX_UNAVAILABLE if unavailable is None else unavailable,
        )

    def request(self, deployment: Optional[Dict[str, Any]]) -> FitRequest:
        p = self.params
        template = deployment_template_spec(deployment)
        replicas = p["replicas"]
        if replicas is None and deployment is not None:
            spec_replicas = (deployment.get("spec") or {}).get("replicas")
            replicas = 1 if spec_replicas is None else int(spec_replicas)
        gpus = p["gpus_per_replica"]
        if gpus is None and deployment is not None:
            gpus = pod_spec_request(template, p["resource_name"])
        missing = [name for name, value in (("replicas", replicas), ("gpus_per_replica", gpus)) if value is None]
        if missing:
            raise GpuFitError(
                "{0} required: the Deployment {1} to read them from does not exist in namespace {2}".format(
                    " and ".join(missing) + (" is" if len(missing) == 1 else " are"),
                    p["deployment"],
                    p["namespace"],
                )
                if p["deployment"]
                else "{0} required when no existing deployment is named".format(
                    " and ".join(missing) + (" is" if len(missing) == 1 else " are")
                )
            )
        node_selector = p["node_selector"]
        if node_selector is None:
            node_selector = template.get("nodeSelector") or {}
        tolerations = p["tolerations"]
        if tolerations is None:
            tolerations = template.get("tolerations") or []
        return FitRequest(
            replicas=int(replicas),
            gpus_per_replica=int(gpus),
            resource=p["resource_name"],
            namespace=p["namespace"],
            strategy=self.strategy(deployment),
            node_selector={str(k): str(v) for k, v in node_selector.items()},
            tolerations=parse_tolerations(tolerations),
            deployment=p["deployment"],
        )

    def run(self) -> Dict[str, Any]:
        deployment, current = self.read_deployment()
        request = self.request(deployment)
        nodes = self.reader.list("Node")
        pods = self.reader.list("Pod", field_selector=ACTIVE_PODS)
        quotas = self.reader.list("ResourceQuota", namespace=request.namespace)
        start = CurrentDeployment.from_deployment(deployment, request.resource) if deployment is not None else None
        if start is not None:
            companion_replicas, companion_pods = self.read_companions()
            current = current + companion_pods
            start = dataclasses.replace(start, replicas=start.replicas + companion_replicas)
        result = check_fit(request, nodes, pods, quotas, current, start).to_dict()
        result["rollout"]["deployment_found"] = deployment is not None
        return result
