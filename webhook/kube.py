"""The Kubernetes client, for the commands that read a cluster (explain, audit).

Imported lazily: the webhook's request path never talks to the API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException


class ClusterError(RuntimeError):
    """The cluster could not be reached or read; commands exit 2."""


def core_api(kubeconfig: str | None = None, context: str | None = None) -> Any:
    try:
        if kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.CoreV1Api()
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    except (ConfigException, OSError) as error:
        raise ClusterError(f"cannot load a kubeconfig: {error}") from None
    return client.CoreV1Api(api_client)


def read_pod(core: Any, namespace: str, name: str) -> dict[str, Any]:
    try:
        response = core.read_namespaced_pod(name, namespace, _preload_content=False)
    except ApiException as error:
        raise ClusterError(f"cannot read pod {namespace}/{name}: {error.reason}") from None
    except Exception as error:  # connection refused, TLS, ...: never a traceback
        raise ClusterError(f"cannot reach the cluster: {error}") from None
    pod: dict[str, Any] = json.loads(response.data)
    return pod


def list_pods(core: Any, namespace: str | None, page: int = 500) -> Iterator[dict[str, Any]]:
    """Every pod, a page at a time, so a large cluster is not read in one response."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": page, "_preload_content": False}
        if token:
            kwargs["_continue"] = token
        try:
            if namespace:
                response = core.list_namespaced_pod(namespace, **kwargs)
            else:
                response = core.list_pod_for_all_namespaces(**kwargs)
        except ApiException as error:
            raise ClusterError(f"cannot list pods: {error.status} {error.reason}") from None
        except Exception as error:
            raise ClusterError(f"cannot reach the cluster: {error}") from None
        body = json.loads(response.data)
        yield from body.get("items", [])
        token = body.get("metadata", {}).get("continue")
        if not token:
            return
