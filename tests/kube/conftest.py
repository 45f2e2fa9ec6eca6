"""An apiserver (kmock + the shim) on 127.0.0.1 and a real kubernetes-asyncio client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
