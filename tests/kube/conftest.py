"""An apiserver (kmock + the shim) on 127.0.0.1 and a real kubernetes-asyncio client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
from kubernetes_asyncio import client

from tests.kube.apiserver import ApiServer

NAMESPACE = "apps"


@pytest.fixture
async def apiserver() -> AsyncIterator[ApiServer]:
    async with ApiServer() as server, kmock.Server(server):
        yield server


def make_client(server: ApiServer) -> client.ApiClient:
    config = client.Configuration(host=str(server.url).rstrip("/"))
    return client.ApiClient(configuration=config)


@pytest.fixture
async def api(apiserver: ApiServer) -> AsyncIterator[client.ApiClient]:
    async with make_client(apiserver) as api:
        yield api


def write_kubeconfig(server: ApiServer, path: Path) -> Path:
    """A kubeconfig for the apiserver, as ``kubectl`` (and an agent outside a pod) reads it."""
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: t, cluster: {{server: "{str(server.url).rstrip("/")}"}}}}]
users: [{{name: t, user: {{token: t}}}}]
contexts: [{{name: t, context: {{cluster: t, user: t}}}}]
current-context: t
"""
    )
    return path
