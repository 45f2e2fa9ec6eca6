"""The kubernetes-asyncio client for the agent: in-cluster credentials, else a kubeconfig."""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

from agent.kubernetes.errors import Rejected


async def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A client from the pod's service account, or from ``kubeconfig`` / $KUBECONFIG.

    The caller closes it (``async with`` or ``await api.close()``).
    """
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as exc:
            raise Rejected(f"in-cluster Kubernetes credentials are unusable: {exc}") from exc
    else:
        try:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
        except (ConfigException, OSError) as exc:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise Rejected(f"cannot load kubeconfig {where}: {exc}") from exc
    return client.ApiClient(configuration=configuration)
