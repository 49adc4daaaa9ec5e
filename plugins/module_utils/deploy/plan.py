# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the cluster's answers mean for the deploy: pure functions over plain dicts.

The snapshot is the model's objects as they were before the apply (``None``
for those that did not exist), keyed as :data:`SNAPSHOT_KINDS`; a rollback
puts them back. Messages are the ones the role's YAML steps gave.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

Obj = Dict[str, Any]

#: The model's objects read before the apply, by key: (apiVersion, kind).
SNAPSHOT_KINDS: Dict[str, tuple] = {
    "deployment": ("apps/v1", "Deployment"),
    "service": ("v1", "Service"),
    "hpa": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "pdb": ("policy/v1", "PodDisruptionBudget"),
    "service_monitor": ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
#: The objects a later deploy may no longer have (autoscaling or pdb disabled since).
OPTIONAL_KEYS = ("hpa", "pdb", "service_monitor")
#: Kinds of the objects a record adds beside the server (named after the model, several per kind), read by
#: the model's labels: (kind, apiVersion). Their ConfigMaps are read with the configuration's.
EXTRA_KINDS: Tuple[Tuple[str, str], ...] = (
    ("PersistentVolumeClaim", "v1"),
    ("ServiceAccount", "v1"),
    ("Role", "rbac.authorization.k8s.io/v1"),
    ("RoleBinding", "rbac.authorization.k8s.io/v1"),
    ("CronJob", "batch/v1"),
)
#: Body fields of the extra kinds, put back by a rollback.
_EXTRA_BODY = ("spec", "data", "rules", "roleRef", "subjects", "automountServiceAccountToken")
KEY_OF_KIND = {kind: key for key, (_api_version, kind) in SNAPSHOT_KINDS.items()}
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
#: Fields that change on every write, or that only the server sets: not a change of the object.
_VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid")


def references(model: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The Secrets and the claim the pods refer to; ``required`` ones stop the deploy when missing."""
    refs: List[Dict[str, Any]] = []
    for name in model.get("env_from_secrets") or []:
        refs.append({"kind": "Secret", "name": name, "field": "env_from_secrets", "required": True})
    source = model.get("model") or {}
    if source.get("credentials_secret"):
        refs.append({"kind": "Secret", "name": source["credentials_secret"], "field": "model.credentials_secret",
                     "required": True})
    if source.get("source") == "pvc" and not (source.get("pvc") or {}).get("create"):
        refs.append({"kind": "PersistentVolumeClaim", "name": source["pvc"]["claim_name"],
                     "field": "model.pvc.claim_name", "required": True})
    for name in (model.get("image") or {}).get("pull_secrets") or []:
        refs.append({"kind": "Secret", "name": name, "field": "image.pull_secrets", "required": False})
    return refs


def namespace_problem(namespace_obj: Optional[Obj], namespace: str, prefix: str) -> str:
    """Why the namespace cannot take the deploy, or ``""``."""
    if namespace_obj is not None and ((namespace_obj.get("status") or {}).get("phase") or "Active") == "Active":
        return ""
    return ("Namespace {ns} {what}. Create its baseline first: ansible-playbook -i <inventory> "
            "playbooks/bootstrap_cluster.yml (with -e ai_namespace_name={ns} for another name), or set {p}_namespace. "
            "Nothing was applied.").format(ns=namespace, p=prefix,
                                           what="does not exist" if namespace_obj is None else "is being deleted")


def missing_references_message(name: str, namespace: str, missing: Sequence[Mapping[str, Any]]) -> str:
    listed = "; ".join("{0} {1} (catalog field {2})".format(r["kind"], r["name"], r["field"]) for r in missing)
    return ("{n} refers to what namespace {ns} does not have: {listed}. Create it in the namespace (a Secret synced "
            "from Vault, the claim holding the model), or change the catalog entry. Nothing was applied."
            .format(n=name, ns=namespace, listed=listed))


def pull_secrets_warning(name: str, namespace: str, missing: Sequence[str]) -> str:
    return ("image.pull_secrets of {n} names {m}, which namespace {ns} does not have: pulls from a private registry "
            "will fail with ImagePullBackOff.".format(n=name, m=", ".join(missing), ns=namespace))


def current_replicas(snapshot: Mapping[str, Any]) -> Optional[int]:
    deployment = snapshot.get("deployment")
    if deployment is None:
        return None
    replicas = (deployment.get("spec") or {}).get("replicas")
    return None if replicas is None else int(replicas)


def canary_companions(snapshot: Mapping[str, Any]) -> List[str]:
    """The Deployments a canary left (``snapshot["canary_leftovers"]``) whose pods a canary deploy continues or
    replaces: the GPU preflight counts them within the canary's peak, not as other pods beside it."""
    return [str(item["name"]) for item in snapshot.get("canary_leftovers") or [] if item.get("kind") == "Deployment"]


def config_configmap(name: str, configmap: str) -> bool:
    """Whether ``configmap`` is one of the model's configuration ConfigMaps (``<model>-config-<hash>``)."""
    return configmap.startswith(name + "-config-")


def extra_key(kind: str, name: str) -> str:
    return "{0}/{1}".format(kind, name)


def absent_objects(snapshot: Mapping[str, Any], objects: Sequence[Obj], name: str) -> List[Dict[str, str]]:
    """The HorizontalPodAutoscaler, PodDisruptionBudget and ServiceMonitor the model had and no longer has, the
    objects a record added that it no longer asks for (a check switched off), and a canary's leftovers
    (``snapshot["canary_leftovers"]``)."""
    rendered = {obj["kind"] for obj in objects}
    absent = []
    for key in OPTIONAL_KEYS:
        api_version, kind = SNAPSHOT_KINDS[key]
        if snapshot.get(key) is not None and kind not in rendered:
            absent.append({"api_version": api_version, "kind": kind, "name": name})
    named = {extra_key(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    extras = snapshot.get("extras") or {}
    for key in sorted(extras):
        kind, _sep, obj_name = key.partition("/")
        if key not in named:
            absent.append({"api_version": extras[key].get("apiVersion", "v1"), "kind": kind, "name": obj_name})
    for configmap in snapshot.get("configmaps") or []:
        if not config_configmap(name, configmap) and extra_key("ConfigMap", configmap) not in named:
            absent.append({"api_version": "v1", "kind": "ConfigMap", "name": configmap})
    # What a canary left (an interrupted run, a canary taken out of the catalog): its routes first, its Deployment last.
    return absent + [dict(item) for item in snapshot.get("canary_leftovers") or []]


def restore_extras(snapshot: Mapping[str, Any], changed: Sequence[str]) -> List[Obj]:
    """The record's objects this run changed (``Kind/name``), as they were, for a rollback's apply. Claims are left:
    their spec cannot be put back (a size only grows)."""
    restore = []
    extras = snapshot.get("extras") or {}
    for key in changed:
        live = extras.get(key)
        if live is None or live.get("kind") == "PersistentVolumeClaim":
            continue
        meta = live.get("metadata") or {}
        obj: Obj = {"apiVersion": live["apiVersion"], "kind": live["kind"],
                    "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                                 "labels": meta.get("labels") or {}}}
        for field in _EXTRA_BODY:
            if field in live:
                obj[field] = copy.deepcopy(live[field])
        restore.append(obj)
    return restore


def restore_objects(snapshot: Mapping[str, Any]) -> List[Obj]:
    """The Service, HPA, PDB and ServiceMonitor as they were, for a rollback's apply."""
    restore = []
    for key in ("service", "hpa", "pdb", "service_monitor"):
        live = snapshot.get(key)
        if live is None:
            continue
        spec = live.get("spec") or {}
        if key == "service":
            spec = {"type": spec.get("type"), "selector": spec.get("selector") or {}, "ports": spec.get("ports")}
        meta = live.get("metadata") or {}
        restore.append({"apiVersion": live["apiVersion"], "kind": live["kind"],
                        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                                     "labels": meta.get("labels") or {}},
                        "spec": copy.deepcopy(spec)})
    return restore


def added_objects(objects: Sequence[Obj], snapshot: Mapping[str, Any]) -> List[Obj]:
    """What this run added, in reverse apply order: everything on a first deploy."""
    first = snapshot.get("deployment") is None
    configmaps = snapshot.get("configmaps") or []
    extras = snapshot.get("extras") or {}
    added = []
    for obj in objects:
        kind = obj["kind"]
        if (first or (kind == "ConfigMap" and obj["metadata"]["name"] not in configmaps)
                or (kind in KEY_OF_KIND and kind != "Deployment" and snapshot.get(KEY_OF_KIND[kind]) is None)
                or (kind not in KEY_OF_KIND and kind != "ConfigMap"
                    and extra_key(kind, obj["metadata"]["name"]) not in extras)):
            added.append(obj)
    return list(reversed(added))


def snapshot_revision(snapshot: Mapping[str, Any]) -> Optional[int]:
    deployment = snapshot.get("deployment")
    if deployment is None:
        return None
    value = ((deployment.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def pod_security_violations(warnings: Sequence[str]) -> List[str]:
    return [warning for warning in warnings if "PodSecurity" in warning]


def pod_security_message(name: str, namespace: str, violations: Sequence[str], prefix: str) -> str:
    return ("The pods of {n} would be refused by Pod Security admission in namespace {ns}: {v}. Nothing was applied. "
            "Remove what the message names from {p}_pod_labels/_pod_annotations or the image's needs, or relax the "
            "namespace's level (ai_namespace_pod_security_enforce).".format(
                n=name, ns=namespace, v="; ".join(violations), p=prefix))


def comparable(obj: Optional[Obj]) -> Optional[Obj]:
    """The object without what the server changes on its own (managedFields, resourceVersion, status...)."""
    if obj is None:
        return None
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in _VOLATILE_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations")
    if annotations:
        annotations.pop(REVISION_ANNOTATION, None)
        if not annotations:
            meta.pop("annotations")
    return out


def applied_changed(before: Optional[Obj], after: Optional[Obj], dry_run: bool) -> bool:
    """Whether a server-side apply changed the object: a no-op apply keeps resourceVersion; a dry run
    (which never stores) is compared by content only. A stored write whose content is the same changed only the
    field ownership (managedFields): the apply taking back ``spec.replicas`` after a canary's scale subresource
    writes, the next deploy after an abort. That is not a change of the object."""
    if before is None:
        return True
    if after is None:
        return False
    if not dry_run and (before.get("metadata") or {}).get("resourceVersion") == (after.get("metadata") or {}).get(
            "resourceVersion"):
        return False
    return comparable(before) != comparable(after)


def hide_managed_fields(obj: Optional[Obj]) -> Optional[Obj]:
    if obj is None:
        return None
    out = copy.deepcopy(dict(obj))
    (out.get("metadata") or {}).pop("managedFields", None)
    return out


def diff_entry(before: Optional[Obj], after: Optional[Obj], label: str) -> Dict[str, Any]:
    """One object's before/after for --diff (the callback formats them), managedFields hidden."""
    return {"before": hide_managed_fields(before) or {}, "after": hide_managed_fields(after) or {},
            "before_header": label, "after_header": label}


def failure_message(failure: str, name: str, namespace: str, prefix: str, rollback: bool, first_deploy: bool,
                    undo: Optional[Mapping[str, Any]], snapshot_rev: Optional[int]) -> str:
    """The final message of a failed rollout, after the rollback (or without one)."""
    head = re.sub(r"[.\s]*$", "", failure) + "."
    if not rollback:
        tail = ("The model was left as it is ({p}_rollback_on_failure is false): inspect it with 'kubectl -n {ns} "
                "describe deployment {n}', then fix and deploy again, or run playbooks/rollback_model.yml.")
    elif first_deploy:
        tail = ("This was the first deploy of {n}: its objects were removed, nothing is left half-applied. Fix the "
                "cause and deploy again.")
    elif undo and undo.get("complete"):
        state = undo.get("state") or {}
        return head + (" Rolled back automatically: Deployment {n} runs revision {rev}'s template again and is "
                       "available ({a}/{d} replicas); the other objects are as they were. Fix the cause and deploy "
                       "again.").format(n=name, rev=undo.get("undone_to_revision", "?"),
                                        a=state.get("available", "?"), d=state.get("desired", "?"))
    else:
        tail = ("The automatic rollback to revision {rev} did not bring the previous version back: {why}. Inspect "
                "with 'kubectl -n {ns} describe deployment {n}'.")
    return head + " " + tail.format(p=prefix, ns=namespace, n=name,
                                    rev=snapshot_rev if snapshot_rev is not None else "?",
                                    why=(undo or {}).get("msg") or "not attempted")


def unreachable_message(kubeconfig: Any, context: Optional[str], detail: str, doing: str = "",
                        applied: bool = False) -> str:
    """The API server could not be reached or refused: where, what was in progress, what state is left."""
    if isinstance(kubeconfig, Mapping):
        where = "(given inline)"
    else:
        where = kubeconfig or "(the default: K8S_AUTH_KUBECONFIG or ~/.kube/config)"
    state = ("Objects may have been applied already: run the deploy again once the API server answers "
             "(or playbooks/rollback_model.yml)." if applied else "Nothing was applied.")
    return ("Cannot reach the Kubernetes API server, or it refused the request{doing}, with kubeconfig '{kc}' and "
            "context '{ctx}': {d}. Start the cluster (inventories/local: 'make cluster-up'), or set "
            "ai_serving_kubeconfig and ai_serving_context in the inventory (group_vars/all/connection.yml). {state}"
            .format(doing=" (" + doing + ")" if doing else "", kc=where, ctx=context or "(the current context)",
                    d=re.sub(r"[.\s]*$", "", detail) or "no answer", state=state))
