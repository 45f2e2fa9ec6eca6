"""The exporters' targets of dedicated add-ons on Kubernetes: one Secret per exporter.

On one machine the control plane writes the targets files where the
exporters read them (``exporter_targets.write``). On a cluster the exporters
run in pods of their own, so it writes, after every add-on change and at
start, a Secret per exporter (``slipway-exporter-postgres-addon-targets``,
named by the chart) in the platform's namespace, with one key,
``targets.toml``: a target per dedicated instance (its Service's DNS name,
its own password inline, since the whole file is a Secret; labels app,
addon, plan; the plan's limits). The exporter mounts it (``optional``: it
may not exist yet) and reads it beside the operator's targets file as its
``--addon-targets``, re-read when the kubelet updates the mount. Shared-server
tenants are not in it: the operator's file polls their server.

What the control plane's Role in the platform's namespace must allow is
exactly ``RBAC``: create (a first write) and update of those Secrets by name;
no get, list or watch.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from control.addons.instances import APP_PREFIX
from control.addons.kube_dedicated import MANAGED_BY, Manifest
from control.errors import AddonError
from control.exporter_targets import Servers, render
from control.models import Addon

log = logging.getLogger(__name__)

#: The key the exporters' Deployment mounts as its ``--addon-targets`` file.
TARGETS_KEY = "targets.toml"

#: (apiGroup, resource) -> verbs: what this module calls (update by resourceNames).
RBAC: dict[tuple[str, str], tuple[str, ...]] = {("", "secrets"): ("create", "update")}

_Call = Callable[..., Awaitable[Any]]


def secret(name: str, namespace: str, service: str, addons: list[Addon]) -> Manifest:
    """The Secret for ``service``'s exporter (pure)."""
    dedicated = [a for a in addons if a.resource.startswith(APP_PREFIX)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "app.kubernetes.io/component": f"exporter-{service}",
            },
        },
        "type": "Opaque",
        "stringData": {
            TARGETS_KEY: render(
                dedicated, service=service, dsn_dir=None, servers=Servers(kubernetes=True)
            )
        },
    }


class KubeExporterTargets:
    """A ``TargetsWriter`` (attachments.py) that writes the exporters' Secrets."""

    def __init__(
        self, api: client.ApiClient, *, namespace: str, secrets: Mapping[str, str]
    ) -> None:
        """``secrets``: service (postgres, redis) -> the Secret its exporter mounts."""
        self._core = client.CoreV1Api(api)
        self._namespace = namespace
        self._secrets = dict(secrets)

    async def __call__(self, addons: list[Addon]) -> None:
        # Typed for V1Secret; they take the same object as a plain mapping.
        replace: _Call = self._core.replace_namespaced_secret
        create: _Call = self._core.create_namespaced_secret
        for service, name in self._secrets.items():
            body = secret(name, self._namespace, service, addons)
            try:
                try:
                    await replace(name, self._namespace, body)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    await create(self._namespace, body)
            except ApiException as exc:
                raise AddonError(
                    f"writing the {service} exporter's targets Secret {name}: "
                    f"{exc.status} {exc.reason}"
                ) from None
            except aiohttp.ClientError as exc:
                raise AddonError(
                    f"writing the {service} exporter's targets Secret {name}: {type(exc).__name__}"
                ) from None
        log.info("exporter targets written", extra={"secrets": len(self._secrets)})
