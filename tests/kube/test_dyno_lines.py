"""On Kubernetes the agent's R14/R15 lines reach the app's log stream as the platform's:
posted to the logs service's ``/platform/lines`` with the agent's token (kit/logpost.py),
never through the forward port, where a ``dyno`` claim stays an app line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from agent.dynowatch import DynoMonitor, DynoSettings
from kit.logpost import PlatformLogSink
from tests.conftest import free_port
from tests.kube.apiserver import ApiServer
from tests.kube.test_dynos import pod_metrics, serve, source
from tests.kube.test_serve import BLOG, Fleet
from tests.logs.test_platform import PLATFORM, read, started

POD = "blog-worker-6c7-aaaaa"


def over_quota() -> dict[str, object]:
    return pod_metrics(POD, "worker", memory="600Mi", cpu="100m", at="2026-01-01T00:00:00Z")


async def test_an_r14_on_kubernetes_reaches_the_app_s_stream_as_a_platform_line(
    apiserver: ApiServer, api: client.ApiClient, tmp_path: Path
) -> None:
    logs = await started(tmp_path, PLATFORM)
    registry = CollectorRegistry()
    sink = PlatformLogSink(
        f"http://127.0.0.1:{logs.http_port}",
        token=PLATFORM,
        registry=registry,
        interval=0.05,
        component="agent",
    )
    monitor = DynoMonitor(
        source(api), sink=sink, registry=registry, settings=DynoSettings(interval=0.01)
    )
    poster = asyncio.create_task(sink.run())
    try:
        serve(apiserver, over_quota())
        await monitor.round(0.0)

        async def dyno_lines() -> list[tuple[str, str]]:
            return [(x["process"], x["text"]) for x in await read(logs, "blog")
                    if x["source"] == "dyno"]  # fmt: skip

        r14 = (POD, "Error R14 (Memory quota exceeded)")

        async with asyncio.timeout(5):
            while r14 not in await dyno_lines():
                await asyncio.sleep(0.05)
        # The runtime-metrics line first (the app asks for them), then the R14 pair.
        texts = [text for _, text in await dyno_lines()]
        assert texts[0].startswith(f"source={POD} ")
        assert "sample#memory_rss=600.00MB" in texts[0]
        sent = registry.get_sample_value("slipway_agent_platform_lines_sent_total")
        assert sent == len(texts)
    finally:
        poster.cancel()
        await logs.stop()


async def test_the_elected_agent_posts_its_r14_lines_with_its_token(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    """``serve_kubernetes`` as the pod runs it: SLIPWAY_AGENT_LOGS_URL and the agent token
    (the chart gives the logs service the same token) take the line to blog's stream."""
    logs = await started(tmp_path, PLATFORM)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    fleet = Fleet(apiserver, tmp_path, http)
    try:
        serve(apiserver, pod_metrics("blog-web-5d9f-x1y2z", "web", memory="600Mi", cpu="10m",
                                     at="2026-01-01T00:00:00Z"))  # fmt: skip
        await fleet.start(
            "agent-a", [BLOG], logs_url=f"http://127.0.0.1:{logs.http_port}", token=PLATFORM,
            dynos=DynoSettings(interval=0.05),
        )  # fmt: skip
        async with asyncio.timeout(10):
            while not [x for x in await read(logs, "blog") if x["source"] == "dyno"]:
                await asyncio.sleep(0.05)
        lines = [(x["process"], x["text"]) for x in await read(logs, "blog")
                 if x["source"] == "dyno"]  # fmt: skip
        assert ("blog-web-5d9f-x1y2z", "Error R14 (Memory quota exceeded)") in lines
    finally:
        await fleet.close()
        await http.close()
        await logs.stop()


async def test_lines_wait_while_the_logs_service_is_away_and_the_oldest_go_past_capacity(
    tmp_path: Path,
) -> None:
    port = free_port()
    registry = CollectorRegistry()
    sink = PlatformLogSink(
        f"http://127.0.0.1:{port}",
        token=PLATFORM,
        registry=registry,
        capacity=2,
        component="agent",
    )
    sink.publish("blog", "dyno", "web.1", "line 0", 1.0)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await sink.flush(session)  # nothing listens there yet
        # Kept, in order, with lines published during the outage; past 2, the oldest goes.
        sink.publish("blog", "dyno", "web.1", "line 1", 2.0)
        sink.publish("blog", "dyno", "web.1", "line 2", 3.0)
        logs = await started(tmp_path, PLATFORM, port=port)
        try:
            await sink.flush(session)
            assert [x["text"] for x in await read(logs, "blog")] == ["line 1", "line 2"]
        finally:
            await logs.stop()
    assert registry.get_sample_value("slipway_agent_platform_lines_sent_total") == 2
    dropped = registry.get_sample_value(
        "slipway_agent_platform_lines_dropped_total", {"reason": "overflow"}
    )
    assert dropped == 1


async def test_a_refused_batch_is_dropped_and_counted_not_retried_forever(tmp_path: Path) -> None:
    logs = await started(tmp_path, PLATFORM)
    registry = CollectorRegistry()
    sink = PlatformLogSink(
        f"http://127.0.0.1:{logs.http_port}",
        token="wrong",
        registry=registry,
        interval=0.05,
        component="agent",
    )
    try:
        sink.publish("blog", "dyno", "web.1", "Error R14 (Memory quota exceeded)", 1.0)
        async with aiohttp.ClientSession() as session:
            await sink.flush(session)
            await sink.flush(session)  # nothing left to send
        dropped = registry.get_sample_value(
            "slipway_agent_platform_lines_dropped_total", {"reason": "refused"}
        )
        assert dropped == 1
        assert await read(logs, "blog") == []
    finally:
        await logs.stop()
