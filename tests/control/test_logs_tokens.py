"""The logs service takes the control plane's tokens over HTTP (``/auth/verify``), as on a cluster.

A real control API and a real logs service on loopback: an app token reads
its app's logs and no other's, an unknown token reads nothing, a "yes" is
trusted for a few seconds only, and an unreachable control plane is a 503
that says so, never a silent "allowed".
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from logs.auth import ControlPlaneTokens
from logs.component import LogsComponent
from logs.settings import LogsSettings
from tests.conftest import free_port
from tests.control.conftest import Api


@pytest.fixture
async def logs(api: Api, tmp_path: Path) -> AsyncIterator[str]:
    component = LogsComponent(
        LogsSettings(http_port=0, forward_port=0, control_url=api.base, admin_token=None)
    )
    await component.start()
    component.service.publish("shop", "app", "web.1", "hello from shop", time.time())
    try:
        yield f"http://127.0.0.1:{component.http_port}"
    finally:
        await component.stop()


async def read(logs: str, app: str, token: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{logs}/apps/{app}/logs?format=text&lines=10",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        return resp.status, await resp.text()


async def test_an_app_token_reads_its_apps_logs_only(api: Api, logs: str) -> None:
    for name in ("shop", "other"):
        assert (await api.call("POST", "/apps", json={"name": name}))[0] == 201
    _, minted, _ = await api.call("POST", "/tokens", json={"name": "ci", "app": "shop"})
    status, text = await read(logs, "shop", minted["token"])
    assert status == 200
    assert "app[web.1]: hello from shop" in text
    assert (await read(logs, "other", minted["token"]))[0] == 403
    assert (await read(logs, "shop", "slw_no_such_token"))[0] == 403


async def test_a_revoked_token_is_trusted_for_the_ttl_and_no_longer(api: Api) -> None:
    await api.call("POST", "/apps", json={"name": "shop"})
    _, minted, _ = await api.call("POST", "/tokens", json={"name": "ci", "app": "shop"})
    now = [100.0]
    tokens = ControlPlaneTokens(api.base, ttl=5.0, clock=lambda: now[0])
    try:
        assert await tokens.allows(minted["token"], app="shop")
        assert (await api.call("DELETE", f"/tokens/{minted['id']}"))[0] == 200
        now[0] += 4.0
        assert await tokens.allows(minted["token"], app="shop")  # cached "yes"
        now[0] += 2.0
        api.control.tokens.forget_all()  # the control plane's own 1 s cache, not ours
        assert not await tokens.allows(minted["token"], app="shop")
    finally:
        await tokens.close()


async def test_an_unreachable_control_plane_is_a_503_that_says_so(tmp_path: Path) -> None:
    component = LogsComponent(
        LogsSettings(http_port=0, forward_port=0, control_url=f"http://127.0.0.1:{free_port()}")
    )
    await component.start()
    try:
        status, text = await read(f"http://127.0.0.1:{component.http_port}", "shop", "slw_x")
    finally:
        await component.stop()
    assert status == 503
    assert "control plane unreachable" in text
