"""The request charts on Kubernetes: the same endpoint reads Prometheus's ``query_range``.

The fake Prometheus is a real HTTP server on loopback that answers each query from
a table of series keyed by the metric the query names, as Prometheus's matrix JSON,
and records every query, so the tests check both what is asked and what is made of
the answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from control.api.app import build_app
from control.rollup.prometheus import MetricsUnavailable, PrometheusSource
from control.service import Control
from control.store.db import Store
from tests.conftest import free_port
from tests.control.conftest import ADMIN_TOKEN
from tests.control.targets import RecordingTarget


@dataclass
class FakePrometheus:
    #: (metric name, by-label value) -> value for every timestamp asked.
    values: dict[tuple[str, str], float] = field(default_factory=dict)
    queries: list[dict[str, str]] = field(default_factory=list)
    fail: int | None = None

    async def query_range(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.queries.append(q)
        if self.fail is not None:
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "parse error"},
                status=self.fail,
            )
        start, end, step = float(q["start"]), float(q["end"]), int(q["step"])
        stamps = list(range(int(start), int(end) + 1, step))
        metric = re.search(r"(slipway_[a-z_]+?)(?:_bucket)?\{", q["query"])
        assert metric is not None, q["query"]
        by = re.search(r"by \((status_class|code)\)", q["query"])
        quantile = re.match(r"histogram_quantile\(([0-9.]+)", q["query"])
        result = []
        for (name, label), value in self.values.items():
            if name != metric.group(1):
                continue
            if quantile is not None and label != quantile.group(1):
                continue
            series: dict[str, Any] = {"metric": {by.group(1): label} if by else {}}
            series["values"] = [[t, repr(value)] for t in stamps]
            result.append(series)
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        )


@dataclass
class Charts:
    base: str
    session: aiohttp.ClientSession
    prometheus: FakePrometheus

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(
            self.base + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as response:
            return response.status, await response.json()


@pytest.fixture
async def charts(tmp_path: Path) -> AsyncIterator[Charts]:
    fake = FakePrometheus()
    prom_app = web.Application()
    prom_app.router.add_get("/api/v1/query_range", fake.query_range)
    prom_runner = web.AppRunner(prom_app)
    await prom_runner.setup()
    prom_port = free_port()
    await web.TCPSite(prom_runner, "127.0.0.1", prom_port).start()
    source = PrometheusSource(f"http://127.0.0.1:{prom_port}/")
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
    control = Control(store=store, target=RecordingTarget())
    await control.start(bootstrap_admin_token=ADMIN_TOKEN)
    app = build_app(control, registry=CollectorRegistry(), ready=lambda: None, requests=source)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        async with session.post(
            f"http://127.0.0.1:{port}/apps",
            json={"name": "hello"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response:
            assert response.status == 201
        yield Charts(f"http://127.0.0.1:{port}", session, fake)
    finally:
        await session.close()
        await source.close()
        await runner.cleanup()
        await store.close()
        await prom_runner.cleanup()


class TestPrometheusCharts:
    async def test_points_are_made_from_the_routers_and_the_agents_series(
        self, charts: Charts
    ) -> None:
        charts.prometheus.values = {
            ("slipway_router_requests_total", "2xx"): 12.0,
            ("slipway_router_requests_total", "5xx"): 3.0,
            ("slipway_router_request_duration_seconds", "0.5"): 0.02,
            ("slipway_router_request_duration_seconds", "0.95"): 0.2,
            ("slipway_router_request_duration_seconds", "0.99"): 1.5,
            ("slipway_router_errors_total", "H12"): 2.0,
            ("slipway_agent_wakes_total", ""): 1.0,
            ("slipway_agent_wake_duration_seconds", "0.5"): 0.8,
            ("slipway_agent_wake_duration_seconds", "1.0"): 2.5,
        }
        since = int(time.time()) - 300
        status, body = await charts.get(f"/apps/hello/metrics/requests?since={since}&step=60")
        assert status == 200, body
        assert body["source"] == "prometheus"
        assert len(body["points"]) in (5, 6)
        point = body["points"][0]
        assert point["requests"] == {"2xx": 12, "3xx": 0, "4xx": 0, "5xx": 3}
        assert point["latency_ms"] == {"p50": 20.0, "p95": 200.0, "p99": 1500.0}
        assert point["codes"] == {"H12": 2}
        assert point["wakes"] == 1
        assert point["wake_ms"] == {"p50": 800.0, "max": 2500.0}
        asked = [q["query"] for q in charts.prometheus.queries]
        assert all('app="hello"' in q for q in asked)
        assert all("[60s]" in q for q in asked)
        assert {q["step"] for q in charts.prometheus.queries} == {"60"}

    async def test_a_step_without_data_has_no_latency_rather_than_zero(
        self, charts: Charts
    ) -> None:
        status, body = await charts.get("/apps/hello/metrics/requests")
        assert status == 200
        assert all(p["latency_ms"] is None for p in body["points"])
        assert all(sum(p["requests"].values()) == 0 for p in body["points"])

    async def test_sleeps_and_crashes_are_events(self, charts: Charts) -> None:
        charts.prometheus.values = {
            ("slipway_agent_sleeps_total", ""): 1.0,
            ("slipway_agent_wakes_total", ""): 2.0,
        }
        status, body = await charts.get(f"/apps/hello/events?since={int(time.time()) - 600}")
        assert status == 200
        kinds = {e["kind"] for e in body["events"]}
        assert kinds == {"sleep", "wake"}
        wake = next(e for e in body["events"] if e["kind"] == "wake")
        assert wake["detail"] == "2 in 60s"

    async def test_prometheus_refusing_or_down_is_a_503_that_names_the_setting(
        self, charts: Charts
    ) -> None:
        charts.prometheus.fail = 400
        status, body = await charts.get("/apps/hello/metrics/requests")
        assert status == 503
        assert body["id"] == "metrics_unavailable"
        assert "parse error" in body["message"]


async def test_an_unreachable_prometheus_is_a_503(tmp_path: Path) -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(MetricsUnavailable, match="SLIPWAY_PROMETHEUS_URL") as caught:
            await source.points("hello", since=time.time() - 120, until=time.time(), step=60)
        assert caught.value.status == 503
    finally:
        await source.close()
