"""The tests play Kubernetes' controllers: pods for replicas, EndpointSlices for readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers import TIMEOUT
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE


def pod(app: str, process: str, n: int, *, ip: str, waiting: str | None = None) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = []
    if waiting is not None:
        statuses = [
            {
                "name": process,
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": waiting, "message": "back-off 40s"}},
            }
        ]
    return {
        "metadata": {
            "name": f"{app}-{process}-{n}",
            "namespace": NAMESPACE,
            "labels": {"slipway.dev/app": app, "slipway.dev/process": process},
        },
        "status": {"phase": "Running", "podIP": ip, "containerStatuses": statuses},
    }


def endpoint_slice(
    app: str, process: str, endpoints: list[tuple[str, str, bool]], *, port: int
) -> dict[str, Any]:
    """A slice of the app's Service: (pod name, address, ready) per endpoint."""
    return {
        "metadata": {
            "name": f"{app}-{process}-abcde",
            "namespace": NAMESPACE,
            "labels": {
                "slipway.dev/app": app,
                "slipway.dev/process": process,
                "kubernetes.io/service-name": f"{app}-{process}",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [address],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": name, "namespace": NAMESPACE},
            }
            for name, address, ready in endpoints
        ],
    }


async def replicas_become(
    apiserver: ApiServer, name: str, replicas: int, timeout: float = TIMEOUT
) -> None:
    """Wait (bounded) until the Deployment's spec asks for ``replicas``: what a controller sees."""
    async with asyncio.timeout(timeout):
        while True:
            obj = apiserver.get("deployments", NAMESPACE, name)
            if obj is not None and obj["spec"].get("replicas") == replicas:
                return
            await asyncio.sleep(0.01)
