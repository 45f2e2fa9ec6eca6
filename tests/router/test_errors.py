"""Every way a request can fail, answered with Heroku's code and a page that says why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDict

from router.routes import AppRoute, AppState, Endpoint
from tests.conftest import free_port
from tests.helpers import eventually
from tests.router.conftest import AppProcess, RunningRouter, in_flight, start_router
from tests.router.rawapps import RawApp

HOST = {"Host": "hello.test"}


async def get(url: str, **headers: str) -> tuple[int, CIMultiDict[str], str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, resp.headers.copy(), await resp.text()


@pytest.fixture
async def running(request: pytest.FixtureRequest) -> AsyncIterator[list[RunningRouter]]:
    """Routers a test starts, stopped afterwards."""
    started: list[RunningRouter] = []
    yield started
    for r in started:
        await r.router.stop(grace=0.5)


async def test_an_unknown_host_gets_a_404_page_with_a_code(router: RunningRouter) -> None:
    status, headers, body = await get(router.url, Host="nobody.test")
    assert status == 404
    assert headers["Slipway-Error"] == "no_such_app"
    assert "No such app" in body
    assert headers["X-Request-Id"] in body
    assert router.metric("slipway_router_errors_total", app="", code="no_such_app") == 1


async def test_errors_are_json_for_clients_that_ask_for_it(router: RunningRouter) -> None:
    status, headers, body = await get(router.url, Host="nobody.test", Accept="application/json")
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["id"] == "no_such_app"
    assert payload["request_id"] == headers["X-Request-Id"]


async def test_a_request_without_host_is_rejected(router: RunningRouter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    assert data.startswith(b"HTTP/1.1 400")
    writer.close()


async def test_a_refused_endpoint_is_skipped_for_a_live_one(
    app: AppProcess, running: list[RunningRouter]
) -> None:
    dead = Endpoint("127.0.0.1", free_port(), "web.1")
    r = await start_router(
        [AppRoute("hello", hosts=("hello.test",), endpoints=(dead, app.endpoint))]
    )
    running.append(r)
    for _ in range(4):  # round robin starts on each endpoint in turn
        status, _, _ = await get(r.url, **HOST)
        assert status == 200
    assert (r.metric("slipway_router_upstream_connect_errors_total", app="hello") or 0) >= 1


async def test_all_endpoints_refusing_is_h21(running: list[RunningRouter]) -> None:
    dead = Endpoint("127.0.0.1", free_port(), "web.1")
    r = await start_router([AppRoute("hello", hosts=("hello.test",), endpoints=(dead,))])
    running.append(r)
    status, headers, body = await get(r.url, **HOST)
    assert status == 503
    assert headers["Slipway-Error"] == "H21"
    assert "Connection refused" in body or "connect" in body.lower()
    assert "at=error code=H21" in r.sink.only()


async def test_an_app_slower_than_the_timeout_is_h12(
    app: AppProcess, running: list[RunningRouter]
) -> None:
    r = await start_router(
        [AppRoute("hello", hosts=("hello.test",), endpoints=(app.endpoint,))],
        upstream_timeout=0.5,
    )
    running.append(r)
    status, headers, _ = await get(f"{r.url}/slow?seconds=3", **HOST)
    assert status == 504
    assert headers["Slipway-Error"] == "H12"
    line = r.sink.only()
    assert 'at=error code=H12 desc="Request timeout"' in line
    assert "status=504" in line


async def test_a_slow_upload_is_not_counted_against_the_app(
    app: AppProcess, running: list[RunningRouter]
) -> None:
    """The 30 s (here 2 s) are the app's, from when it has the whole request: the upload
    takes 3 s, yet the app answering it in far less than 2 s is not an H12."""
    r = await start_router(
        [AppRoute("hello", hosts=("hello.test",), endpoints=(app.endpoint,))],
        upstream_timeout=2.0,
    )
    running.append(r)
    reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: hello.test\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(6):
        writer.write(b"3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)
    writer.write(b"0\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()


async def test_an_app_closing_without_answering_is_h13(running: list[RunningRouter]) -> None:
    raw = await RawApp("close").start()
    r = await start_router(
        [AppRoute("hello", hosts=("hello.test",), endpoints=(Endpoint("127.0.0.1", raw.port),))]
    )
    running.append(r)
    status, headers, _ = await get(r.url, **HOST)
    assert status == 503
    assert headers["Slipway-Error"] == "H13"
    await raw.stop()


async def test_a_pooled_connection_the_app_closed_is_retried_on_a_fresh_one(
    running: list[RunningRouter],
) -> None:
    """The keep-alive race: the app closes an idle connection just as it is reused."""
    raw = await RawApp("close-second").start()
    r = await start_router(
        [AppRoute("hello", hosts=("hello.test",), endpoints=(Endpoint("127.0.0.1", raw.port),))]
    )
    running.append(r)
    for _ in range(3):
        status, _, body = await get(r.url, **HOST)
        assert (status, body) == (200, "ok")
    assert raw.connections >= 2
    await raw.stop()


async def test_a_client_that_leaves_is_logged_as_499_h27(
    app: AppProcess, running: list[RunningRouter]
) -> None:
    r = await start_router([AppRoute("hello", hosts=("hello.test",), endpoints=(app.endpoint,))])
    running.append(r)
    _reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
    writer.write(b"GET /slow?seconds=5 HTTP/1.1\r\nHost: hello.test\r\n\r\n")
    await writer.drain()
    # Gone while the app works on it (not before the router has read it).
    await eventually(lambda: in_flight(r) == 1)
    writer.close()
    await eventually(lambda: r.sink.lines)
    line = r.sink.only()
    assert "code=H27" in line
    assert "status=499" in line
    assert r.router.activity.apps["hello"].in_flight == 0


async def test_a_request_line_over_the_limit_is_414(router: RunningRouter) -> None:
    status, headers, _ = await get(f"{router.url}/{'a' * 9000}", **HOST)
    assert status == 414
    assert headers["Connection"] == "close"


async def test_headers_over_the_limit_are_431(router: RunningRouter) -> None:
    many = {f"X-H{i}": "v" * 100 for i in range(100)}
    status, _, _ = await get(router.url, **HOST, **many)
    assert status == 431


async def test_one_enormous_header_is_431_before_it_is_buffered(router: RunningRouter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: hello.test\r\nX-Big: ")
    for _ in range(10):
        writer.write(b"v" * 65536)
    data = await asyncio.wait_for(reader.read(), 5)
    assert data.startswith(b"HTTP/1.1 431")
    writer.close()


async def test_an_app_without_processes_and_no_waker_is_h14(running: list[RunningRouter]) -> None:
    r = await start_router([AppRoute("hello", hosts=("hello.test",), state=AppState.ASLEEP)])
    running.append(r)
    status, headers, _ = await get(r.url, **HOST)
    assert (status, headers["Slipway-Error"]) == (503, "H14")


async def test_a_crashed_app_is_h10_with_the_reason(running: list[RunningRouter]) -> None:
    r = await start_router(
        [
            AppRoute(
                "hello",
                hosts=("hello.test",),
                state=AppState.CRASHED,
                reason="web.1 exited with code 3",
            )
        ]
    )
    running.append(r)
    status, headers, body = await get(r.url, **HOST)
    assert (status, headers["Slipway-Error"]) == (503, "H10")
    assert "exited with code 3" in body
