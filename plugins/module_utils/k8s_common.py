# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options and read access to the Kubernetes API for our modules.

Our modules take exactly kubernetes.core's connection options, so users pass
what they already pass to ``kubernetes.core.k8s``: ``AUTH_ARG_SPEC`` is a copy
of kubernetes.core's (documented by its ``kubernetes.core.k8s_auth_options``
doc fragment) and the client is built by kubernetes.core's own
``get_api_client`` (environment variables ``K8S_AUTH_*``, in-cluster config,
kubeconfig files or dicts, impersonation...). kubernetes.core is a declared
dependency of this collection.

Objects come back as plain dicts in the API's JSON form (camelCase keys), the
form :mod:`gpu_fit` works on. Failures raise :class:`K8sAccessError` with a
message that names the API server / kubeconfig and the fix; nothing here calls
``fail_json``.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import (
    AUTH_ARG_SPEC as _CORE_AUTH_ARG_SPEC,
)
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import (
    get_api_client,
)
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import (
    AnsibleK8SModule,
)

try:
    from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError
except ImportError:  # reported by AnsibleK8SModule's requirement check
    DynamicApiError = ResourceNotFoundError = None  # type: ignore

try:
    from urllib3.exceptions import HTTPError as _Urllib3Error
    from urllib3.exceptions import MaxRetryError, SSLError
except ImportError:  # urllib3 comes with kubernetes
    _Urllib3Error = MaxRetryError = SSLError = None  # type: ignore

#: kubernetes.core's connection options (kubeconfig, context, host, api_key...);
#: ``api_key``, ``password`` and ``kubeconfig`` (which may be an inline dict with
#: tokens) are ``no_log``.
AUTH_ARG_SPEC: Dict[str, Dict[str, Any]] = copy.deepcopy(_CORE_AUTH_ARG_SPEC)

#: What the read-only checks need, for the 403 message.
READ_PERMISSIONS = (
    "get/list on nodes and pods (all namespaces), and on resourcequotas, "
    "deployments and replicasets in the namespace"
)


class K8sAccessError(Exception):
    """The API server could not be reached, refused the credentials or the request."""

    #: True when the server did not answer at all (refused, DNS, timeout): the run may retry or say so.
    unreachable = False


class K8sUnreachableError(K8sAccessError):
    """The API server did not answer (connection refused, DNS, timeout)."""

    unreachable = True


def auth_argument_spec() -> Dict[str, Dict[str, Any]]:
    """A fresh copy of :data:`AUTH_ARG_SPEC` to merge into a module's argument spec."""
    return copy.deepcopy(AUTH_ARG_SPEC)


class K8sModule(AnsibleK8SModule):
    """kubernetes.core's module base (requirement checks included) plus secret masking."""

    def hide(self, value: Optional[str]) -> None:
        """Never print ``value`` in the module's output (a token read from a kubeconfig)."""
        if value:
            self._module.no_log_values.add(value)


def describe_target(params: Dict[str, Any], host: Optional[str] = None) -> str:
    """Where the module connects, for messages: API server, kubeconfig and context (never secrets)."""
    parts: List[str] = []
    host = host or params.get("host")
    if host:
        parts.append("API server {0}".format(host))
    kubeconfig = params.get("kubeconfig")
    if isinstance(kubeconfig, dict):
        parts.append("kubeconfig given inline")
    elif kubeconfig:
        # The option is no_log (it may hold an inline config), so Ansible masks its
        # exact value in any output; the file name alone still tells which file.
        parts.append("kubeconfig option, file {0}".format(os.path.basename(str(kubeconfig).rstrip("/"))))
    elif not params.get("host"):
        source = os.environ.get("K8S_AUTH_KUBECONFIG") or os.environ.get("KUBECONFIG") or "~/.kube/config"
        parts.append("kubeconfig {0}".format(source))
    if params.get("context"):
        parts.append("context {0}".format(params["context"]))
    return ", ".join(parts) or "the default Kubernetes configuration"


class KubeReader:
    """Read-only access to the API through kubernetes.core's client; dicts in, dicts out."""

    def __init__(self, module: Optional[K8sModule] = None, params: Optional[Dict[str, Any]] = None,
                 hide: Optional[Callable[[str], None]] = None) -> None:
        # A module run passes its module; the controller-side action plugins pass
        # the connection options (params) and a hide callback for tokens.
        self._params = module.params if module is not None else dict(params or {})
        self.host = ""
        hide = module.hide if module is not None else (hide or (lambda value: None))
        try:
            if module is not None:
                self._client = get_api_client(module=module)
            else:
                self._client = get_api_client(**{k: v for k, v in self._params.items() if v is not None})
        except Exception as exc:  # CoreException, ConfigException, missing files, connection errors
            if _is_connection_error(exc):
                raise self._error("connect", exc) from exc
            raise K8sAccessError(
                "cannot load the Kubernetes client configuration ({0}): {1}. Set kubeconfig (and context) "
                "or host with api_key, or K8S_AUTH_KUBECONFIG".format(
                    describe_target(self._params), str(exc).rstrip(".")
                )
            ) from exc
        configuration = self._client.configuration
        self.host = str(getattr(configuration, "host", "") or "")
        for value in (getattr(configuration, "api_key", None) or {}).values():
            hide(str(value))
            if str(value).startswith("Bearer "):
                hide(str(value)[len("Bearer ") :])

    @property
    def api_client(self) -> Any:
        """The kubernetes ApiClient under the dynamic client: sends any path with the configured credentials."""
        return self._client.client.client

    @property
    def target(self) -> str:
        return describe_target(self._params, self.host)

    def list(
        self,
        kind: str,
        api_version: str = "v1",
        namespace: Optional[str] = None,
        label_selector: Optional[str] = None,
        field_selector: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """All objects of ``kind`` (in ``namespace``, or cluster-wide when ``None``)."""
        params: Dict[str, Any] = {}
        if namespace:
            params["namespace"] = namespace
        if label_selector:
            params["label_selector"] = label_selector
        if field_selector:
            params["field_selector"] = field_selector
        what = "list {0}{1}".format(kind, " in namespace " + namespace if namespace else "")
        result = self._call(what, kind, api_version, params)
        return list(result.get("items") or [])

    def get(
        self, kind: str, name: str, namespace: Optional[str] = None, api_version: str = "v1"
    ) -> Optional[Dict[str, Any]]:
        """One object, or ``None`` when it does not exist."""
        params: Dict[str, Any] = {"name": name}
        if namespace:
            params["namespace"] = namespace
        what = "get {0} {1}{2}".format(kind, name, " in namespace " + namespace if namespace else "")
        try:
            return self._call(what, kind, api_version, params)
        except _NotFound:
            return None

    def serves(self, kind: str, api_version: str = "v1") -> bool:
        """Whether the API server serves ``kind`` in ``api_version`` (False for a CRD not installed)."""
        try:
            self._client.resource(kind, api_version)
        except Exception as exc:  # mapped to a clear message below
            if ResourceNotFoundError is not None and isinstance(exc, ResourceNotFoundError):
                return False
            raise self._error("discover {0} ({1})".format(kind, api_version), exc) from exc
        return True

    def _call(self, what: str, kind: str, api_version: str, params: Dict[str, Any]) -> Dict[str, Any]:
        try:
            resource = self._client.resource(kind, api_version)
            return self._client.get(resource, **params).to_dict()
        except Exception as exc:  # mapped to a clear message below
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: Exception) -> Exception:
        status = getattr(exc, "status", None)
        if DynamicApiError is not None and isinstance(exc, DynamicApiError):
            detail = exc.summary()
            if status == 404 and what.startswith("get "):
                return _NotFound(detail)
            if status == 401:
                return K8sAccessError(
                    "cannot {0}: the API server rejected the credentials (401 Unauthorized) at {1}. "
                    "Renew the token or certificate of the kubeconfig user, or pass a valid api_key".format(
                        what, self.target
                    )
                )
            if status == 403:
                return K8sAccessError(
                    "cannot {0}: forbidden (403) at {1}: {2}. The check needs {3}; bind such a Role/ClusterRole "
                    "to the user, or use another context".format(what, self.target, detail, READ_PERMISSIONS)
                )
            return K8sAccessError("cannot {0} at {1}: {2} ({3})".format(what, self.target, detail, status))
        if ResourceNotFoundError is not None and isinstance(exc, ResourceNotFoundError):
            return K8sAccessError(
                "cannot {0}: the API server at {1} does not serve it: {2}".format(what, self.target, exc)
            )
        reason = getattr(exc, "reason", None) if MaxRetryError is not None and isinstance(exc, MaxRetryError) else exc
        if SSLError is not None and isinstance(reason, SSLError):
            return K8sAccessError(
                "cannot {0}: TLS verification with {1} failed: {2}. Give the cluster's CA with ca_cert "
                "(or in the kubeconfig); validate_certs=false only for throwaway clusters".format(
                    what, self.target, reason
                )
            )
        if _is_connection_error(exc):
            return K8sUnreachableError(
                "cannot {0}: the API server is unreachable ({1}): {2}. Check that the cluster is running and that "
                "kubeconfig/context (or host) point at it".format(what, self.target, reason)
            )
        return K8sAccessError("cannot {0} at {1}: {2}".format(what, self.target, exc))


def _is_connection_error(exc: Exception) -> bool:
    """urllib3/socket errors: the server could not be reached (refused, DNS, TLS, timeout)."""
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return False
    return isinstance(exc, OSError) or (_Urllib3Error is not None and isinstance(exc, _Urllib3Error))


class _NotFound(Exception):
    """Internal: a ``get`` answered 404."""
