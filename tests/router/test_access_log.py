"""Secrets in request paths stay out of the router's lines: this process's log and the app's.

A real router on loopback in front of a real app process; the app still gets the
path as sent, only the lines are masked (kit/redact.py's ``mask_path``).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from router.accesslog import StreamSink
from router.routes import AppRoute, Routes, RouteTable
from router.server import Router
from router.settings import RouterSettings
from tests.helpers import eventually
from tests.router.conftest import AppProcess, RunningRouter, send

HOST = {"Host": "hello.test"}
SECRET = "SECRETxyz123"


@pytest.fixture
async def stderr_router(app: AppProcess) -> AsyncIterator[tuple[Router, io.StringIO]]:
    """A router whose sink is the stream sink (``slipway serve router``'s stderr)."""
    stream = io.StringIO()
    routes = Routes(
        RouteTable.build(1, [AppRoute("hello", hosts=("hello.test",), endpoints=(app.endpoint,))])
    )
    router = Router(
        RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0),
        routes=routes,
        registry=CollectorRegistry(),
        sink=StreamSink(stream),
    )
    await router.start()
    yield router, stream
    await router.stop(grace=1)


async def test_an_access_token_in_the_query_is_masked_in_the_access_log(
    stderr_router: tuple[Router, io.StringIO],
) -> None:
    router, stream = stderr_router
    url = f"http://127.0.0.1:{router.port}/headers?access_token={SECRET}&page=2"
    async with aiohttp.ClientSession() as http, http.get(url, headers=HOST) as resp:
        assert resp.status == 200
        seen = await resp.json()
    # The app gets the request as it was sent: only the log is masked.
    assert seen["path_qs"] == f"/headers?access_token={SECRET}&page=2"
    text = await eventually(stream.getvalue)
    lines = text.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("slipway[router]: at=info method=GET ")
    assert 'path="/headers?access_token=***&page=2"' in lines[0], lines[0]
    assert SECRET not in text


async def test_the_apps_router_lines_mask_every_credential_and_keep_the_rest(
    router: RunningRouter,
) -> None:
    query = (
        f"token={SECRET}1&api_key={SECRET}2&apikey={SECRET}3&password={SECRET}4"
        f"&secret={SECRET}5&X-Amz-Signature={SECRET}6&sig={SECRET}7&code={SECRET}8"
        f"&Access_Token={SECRET}9&%61ccess_token={SECRET}0&page=2&sort=price;q=shoes"
    )
    for path in (f"/headers?{query}", "/status/404?access_token=" + SECRET, "/"):
        # Raw bytes: sent as written, %61 and all (aiohttp's URLs would decode it).
        head = f"GET {path} HTTP/1.1\r\nHost: hello.test\r\nConnection: close\r\n\r\n"
        assert (await send(router.port, head.encode())).startswith(b"HTTP/1.1 ")
    await eventually(lambda: len(router.sink.lines) == 3)
    [first, missing, plain] = [line for _, line in router.sink.lines]
    for line in (first, missing, plain):
        assert SECRET not in line, line
    names = ("token", "api_key", "apikey", "password", "secret", "X-Amz-Signature", "sig")
    for name in (*names, "code", "Access_Token", "%61ccess_token"):
        assert f"{name}=***" in first, first
    assert "&page=2&sort=price;q=shoes" in first
    assert 'path="/status/404?access_token=***"' in missing
    assert "status=404" in missing
    assert 'path="/"' in plain
