"""kit/logpost.py, the platform-line poster the agent and the routers share: its bounds,
its batches and its backoff, against a real logs service (or a failing one) on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from kit.logpost import PlatformLogSink
from logs.platform import MAX_BODY
from tests.helpers import eventually
from tests.logs.test_platform import ADMIN, PLATFORM, started


def sink(url: str, registry: CollectorRegistry, **more: float) -> PlatformLogSink:
    return PlatformLogSink(url, token=PLATFORM, registry=registry, component="router", **more)  # type: ignore[arg-type]


def test_the_queue_is_bounded_in_bytes_too_the_oldest_going_first() -> None:
    registry = CollectorRegistry()
    poster = sink("http://127.0.0.1:9", registry, max_bytes=10_000)
    for i in range(100):
        poster.publish("shop", "router", "router", f"{i:04d}" + "x" * 996, float(i))
    assert poster.queued == 10
    assert poster.queued_bytes == 10_000
    dropped = registry.get_sample_value(
        "slipway_router_platform_lines_dropped_total", {"reason": "overflow"}
    )
    assert dropped == 90
    # A line longer than the logs service keeps is cut here, not queued whole.
    poster.publish("shop", "router", "router", "y" * 1_000_000, 100.0)
    assert poster.queued_bytes <= 10_000


async def test_long_lines_go_in_batches_the_logs_service_accepts(tmp_path: Path) -> None:
    """300 lines of 8 KB (request paths at the router's limit) are more than one request
    may carry: they go in several, and every line arrives."""
    logs = await started(tmp_path, PLATFORM)
    registry = CollectorRegistry()
    poster = sink(f"http://127.0.0.1:{logs.http_port}", registry)
    texts = [f'at=info method=GET path="/{i:03d}{"p" * 8000}"' for i in range(300)]
    assert sum(len(t) for t in texts) > MAX_BODY
    try:
        for i, text in enumerate(texts):
            poster.publish("shop", "router", "router", text, 1_796_536_800.0 + i)
        async with aiohttp.ClientSession() as session:
            await poster.flush(session)
        assert registry.get_sample_value("slipway_router_platform_lines_sent_total") == 300
        assert poster.queued == 0
        url = f"http://127.0.0.1:{logs.http_port}/apps/shop/logs?lines=1000"
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            body = await resp.text()
        kept = [json.loads(x[6:])["text"] for x in body.splitlines() if x.startswith("data: ")]
        assert kept == texts
    finally:
        await logs.stop()


async def test_failed_posts_back_off_doubling_to_the_bound_then_deliver() -> None:
    attempts: list[float] = []
    failing = True

    async def lines(request: web.Request) -> web.Response:
        attempts.append(asyncio.get_running_loop().time())
        await request.read()
        return web.Response(status=503 if failing else 204)

    app = web.Application()
    app.router.add_post("/platform/lines", lines)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    registry = CollectorRegistry()
    poster = sink(
        f"http://127.0.0.1:{runner.addresses[0][1]}", registry, interval=0.05, max_backoff=0.2
    )
    poster.publish("shop", "router", "router", "at=info", 1.0)
    task = asyncio.create_task(poster.run())
    try:
        await eventually(lambda: len(attempts) >= 6)
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        # 0.1, 0.2, 0.2, ...: doubling from the interval, then held at max_backoff. None is
        # the 0.05 of a healthy service; unheld, the fifth would be 1.6 s. A loaded machine
        # adds to every gap, so the upper bound sits between the two.
        assert gaps[0] > 0.08, gaps
        assert all(g > 0.18 for g in gaps[1:5]), gaps
        assert all(g < 1.2 for g in gaps), gaps
        assert poster.queued == 1  # kept while the service fails
        failing = False
        sent = "slipway_router_platform_lines_sent_total"
        await eventually(lambda: registry.get_sample_value(sent) == 1)
        assert poster.queued == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
