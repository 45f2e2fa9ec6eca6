"""Router lines reach the app's log stream through the logs service in another process.

On Kubernetes the routers post their lines to the logs service's ``/platform/lines``
(``SLIPWAY_ROUTER_LOGS_URL``, with the agent token the logs service takes as its
platform token). A real router on loopback in front of a real app process, posting to a
real logs service on loopback; and the same router with the logs service down or hung,
where requests go on at full speed and the oldest queued lines are dropped and counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from kit.runner import supervise
from router.cli import _serve
from router.routes import AppRoute, Routes, RouteTable
from router.server import Router
from router.settings import RouterSettings
from tests.conftest import free_port
from tests.helpers import eventually
from tests.logs.test_platform import PLATFORM, read, started
from tests.router.conftest import AppProcess

HOST = {"Host": "hello.test"}
SECRET = "SECRETxyz123"
DROPPED = "slipway_router_platform_lines_dropped_total"


def table(app: AppProcess) -> Routes:
    return Routes(
        RouteTable.build(1, [AppRoute("hello", hosts=("hello.test",), endpoints=(app.endpoint,))])
    )


def settings(logs_url: str | None, **more: object) -> RouterSettings:
    return RouterSettings(
        host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0, logs_url=logs_url, **more
    )  # type: ignore[arg-type]


async def test_serve_router_posts_its_lines_to_the_app_s_stream_masked(
    app: AppProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``slipway serve router`` as the chart runs it: SLIPWAY_ROUTER_LOGS_URL and the agent
    token; the app's stream then holds the router's line, its secret query value masked."""
    logs = await started(tmp_path, PLATFORM)
    monkeypatch.setenv("SLIPWAY_AGENT_TOKEN", PLATFORM)
    port, ops = free_port(), free_port()
    own = RouterSettings(
        host="127.0.0.1",
        port=port,
        ops_host="127.0.0.1",
        ops_port=ops,
        logs_url=f"http://127.0.0.1:{logs.http_port}",
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(
        supervise(lambda t, s: _serve(own, table(app), None, t, s), stop=stop)
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def answered() -> int:
                url = f"http://127.0.0.1:{port}/headers?access_token={SECRET}&page=2"
                try:
                    async with http.get(url, headers=HOST) as resp:
                        return resp.status
                except aiohttp.ClientConnectionError:
                    return 0  # not listening yet

            assert await eventually(answered) == 200

            async def router_lines() -> list[dict[str, object]]:
                return [x for x in await read(logs, "hello") if x["source"] == "router"]

            (line,) = await eventually(router_lines, what="the router line in hello's stream")
            assert line["process"] == "router"
            text = str(line["text"])
            assert text.startswith("at=info method=GET "), text
            assert 'path="/headers?access_token=***&page=2"' in text, text
            assert "host=hello.test app=hello " in text, text
            assert "status=200 " in text, text
            assert SECRET not in text
            assert abs(float(str(line["time"])) - time.time()) < 30
            async with http.get(f"http://127.0.0.1:{ops}/metrics") as resp:
                metrics = await resp.text()
            assert "slipway_router_platform_lines_sent_total 1.0" in metrics, metrics
        stop.set()
        assert await asyncio.wait_for(serving, 30) == 0
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)
        await logs.stop()


async def test_a_drained_router_posts_its_last_lines_on_the_way_out(
    app: AppProcess, tmp_path: Path
) -> None:
    """Lines queued when the drain ends (the poster has not posted them yet) are not lost."""
    logs = await started(tmp_path, PLATFORM)
    router = Router(
        settings(f"http://127.0.0.1:{logs.http_port}"),
        routes=table(app),
        registry=CollectorRegistry(),
        token=PLATFORM,
    )
    poster = router.poster
    assert poster is not None
    poster.interval = 3600.0  # only the drain posts
    await router.start()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(f"http://127.0.0.1:{router.port}/", headers=HOST) as resp:
                    assert resp.status == 200
        assert await read(logs, "hello") == []
        await eventually(lambda: poster.queued == 3)
    finally:
        await router.stop(grace=1)
    lines = [x for x in await read(logs, "hello") if x["source"] == "router"]
    assert len(lines) == 3
    await logs.stop()


@pytest.fixture(params=["refusing", "hung"])
async def dead_logs(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A logs service that is down (nothing listens) or hung (accepts, never answers)."""
    if request.param == "refusing":
        yield f"http://127.0.0.1:{free_port()}"
        return
    release = asyncio.Event()

    async def hang(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    hung = web.Application()
    hung.router.add_post("/platform/lines", hang)
    runner = web.AppRunner(hung, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        release.set()
        await runner.cleanup()


async def timed_requests(port: int, count: int) -> list[float]:
    """Seconds each of ``count`` sequential keep-alive requests took, all answered 200."""
    took = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for _ in range(count):
            started_at = time.perf_counter()
            async with http.get(f"http://127.0.0.1:{port}/", headers=HOST) as resp:
                assert resp.status == 200
                await resp.read()
            took.append(time.perf_counter() - started_at)
    return took


async def test_with_the_logs_service_down_requests_go_on_and_the_oldest_lines_drop(
    app: AppProcess, dead_logs: str
) -> None:
    capacity, count = 50, 400
    baseline = Router(settings(None), routes=table(app), registry=CollectorRegistry())
    await baseline.start()
    try:
        await timed_requests(baseline.port, 20)  # warm the pool
        normal = sorted(await timed_requests(baseline.port, count))
    finally:
        await baseline.stop(grace=1)

    registry = CollectorRegistry()
    router = Router(settings(dead_logs), routes=table(app), registry=registry, token=PLATFORM)
    poster = router.poster
    assert poster is not None
    poster.capacity = capacity
    poster.interval = 0.05  # it tries (and fails, or hangs) while the requests go on
    await router.start()
    try:
        await timed_requests(router.port, 20)
        took = sorted(await timed_requests(router.port, count))
        # As fast as without a logs service: the median and the 95th percentile within a few
        # milliseconds of the baseline's (the line is an append, never a wait).
        for q in (0.5, 0.95):
            at = int(q * count)
            assert took[at] < normal[at] * 3 + 0.005, (q, took[at], normal[at])
        assert max(took) < 1.0  # the hung post's 10 s timeout is nobody's request's
        # Bounded: never more than ``capacity`` lines queued (one batch may be in flight).
        assert poster.queued <= capacity
        dropped = registry.get_sample_value(DROPPED, {"reason": "overflow"})
        assert dropped is not None
        assert dropped >= count + 20 - 2 * capacity
        assert registry.get_sample_value("slipway_router_platform_lines_queued") == poster.queued
        assert registry.get_sample_value("slipway_router_platform_lines_sent_total") == 0
    finally:
        await router.stop(grace=1)
    # The drain's last post gives up in time, however the logs service fails.
    assert "router-log-lines" not in router._tasks.names()
