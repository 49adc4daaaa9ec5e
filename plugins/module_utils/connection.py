# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's connection settings, checked before any module reaches for the cluster.

A wrong kubeconfig path or context is named with the variable that holds it, instead of the Kubernetes
client's error about a file's basename. Only a kubeconfig file can be read here: an inline kubeconfig (a
dict), K8S_AUTH_* and ~/.kube/config are left to the client.
"""

from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional

try:
    import yaml
except ImportError:  # ansible-core depends on PyYAML; a module_utils import must not fail without it
    yaml = None

_WHERE = ("in the inventory (group_vars/all/connection.yml, or the cluster host's variables in an inventory of "
          "several clusters)")


def _kind(value: Any) -> str:
    """The plain type name of a variable's value (Ansible hands tagged subclasses of str, list, dict)."""
    for kind in (bool, int, float, str, list, tuple, dict):
        if isinstance(value, kind):
            return kind.__name__
    return type(value).__name__


def kubeconfig_problem(kubeconfig: Any) -> Optional[str]:
    """What is wrong with ``ai_serving_kubeconfig`` (None: unset, an inline kubeconfig or a file), or None."""
    if kubeconfig is None or isinstance(kubeconfig, Mapping):
        return None
    if isinstance(kubeconfig, str) and kubeconfig:
        path = os.path.expanduser(kubeconfig)
        if os.path.isfile(path):
            return None
        expanded = ", " + path if kubeconfig.startswith("~") else ""
        state = "is not a regular file" if os.path.exists(path) else "does not exist"
        what = "The kubeconfig file '{0}' (ai_serving_kubeconfig{1}) {2}.".format(kubeconfig, expanded, state)
    else:
        what = "ai_serving_kubeconfig is empty or not a path (a {0}).".format(_kind(kubeconfig))
    return ("{0} Point ai_serving_kubeconfig {1} at your cluster's kubeconfig, or remove it to use "
            "K8S_AUTH_KUBECONFIG or ~/.kube/config; for inventories/local set AI_SERVING_KUBECONFIG or start the "
            "local cluster with 'make cluster-up'. Nothing was changed.".format(what, _WHERE))


def kubeconfig_contexts(text: str) -> List[str]:
    """The context names of a kubeconfig's text (ValueError when it is not a kubeconfig)."""
    if yaml is None:
        raise ValueError("PyYAML is not installed on the controller")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError("it is not YAML ({0})".format(str(exc).splitlines()[0])) from None
    if document is None:
        return []
    if not isinstance(document, Mapping):
        raise ValueError("it is not a kubeconfig (a {0}, not a mapping)".format(type(document).__name__))
    contexts = document.get("contexts") or []
    if not isinstance(contexts, list):
        raise ValueError("its contexts are not a list")
    return [str(item["name"]) for item in contexts if isinstance(item, Mapping) and "name" in item]


def context_problem(kubeconfig: Any, context: Any) -> Optional[str]:
    """What is wrong with ``ai_serving_context`` given a kubeconfig file that exists, or None.

    Only a file can be read: with an inline kubeconfig or none, the context is left to the client.
    """
    if context is None or not isinstance(kubeconfig, str) or not kubeconfig:
        return None
    path = os.path.expanduser(kubeconfig)
    try:
        with open(path, encoding="utf-8") as handle:
            contexts = kubeconfig_contexts(handle.read())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ("The kubeconfig file '{0}' (ai_serving_kubeconfig) cannot be read: {1}. Point ai_serving_kubeconfig "
                "{2} at your cluster's kubeconfig. Nothing was changed.".format(kubeconfig, exc, _WHERE))
    if isinstance(context, str) and context in contexts:
        return None
    return ("ai_serving_context is '{0}', which kubeconfig {1} does not have; it has: {2}. Fix ai_serving_context "
            "in the inventory (group_vars/all/connection.yml, or the cluster host's variables). Nothing was "
            "changed.".format(context, path, ", ".join(contexts) if contexts else "(no context)"))


def connection_problem(kubeconfig: Any, context: Any) -> Optional[str]:
    """The first problem of the connection settings (the path first, then the context), or None."""
    return kubeconfig_problem(kubeconfig) or context_problem(kubeconfig, context)
