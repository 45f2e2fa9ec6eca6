"""An app gone from the route table (deleted) leaves no series on the router's /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from router.routes import AppRoute
from tests.helpers import eventually
from tests.router.conftest import AppProcess, RunningRouter, in_flight, start_router


def alpha(app: AppProcess, *, maintenance: bool = False) -> AppRoute:
    return AppRoute(
        "alpha", hosts=("alpha.test",), endpoints=(app.endpoint,), maintenance=maintenance
    )


def beta(app: AppProcess) -> AppRoute:
    return AppRoute("beta", hosts=("beta.test",), endpoints=(app.endpoint,))


@pytest.fixture
async def two(app: AppProcess) -> AsyncIterator[RunningRouter]:
    running = await start_router([alpha(app), beta(app)])
    yield running
    await running.router.stop(grace=1)


async def get(http: aiohttp.ClientSession, r: RunningRouter, host: str, path: str = "/") -> int:
    async with http.get(f"{r.url}{path}", headers={"Host": host}) as resp:
        await resp.read()
        return resp.status


async def scrape(http: aiohttp.ClientSession, r: RunningRouter) -> list[str]:
    async with http.get(f"http://127.0.0.1:{r.router.ops_port}/metrics") as resp:
        assert resp.status == 200
        return (await resp.text()).splitlines()


def naming(lines: list[str], app: str) -> list[str]:
    return [line for line in lines if f'app="{app}"' in line]


async def test_an_app_removed_from_the_table_leaves_no_series_and_the_others_keep_theirs(
    two: RunningRouter, app: AppProcess
) -> None:
    r = two
    async with aiohttp.ClientSession() as http:
        r.route(alpha(app, maintenance=True), beta(app))
        assert await get(http, r, "alpha.test") == 503  # H80: an error series for alpha
        r.route(alpha(app), beta(app))
        for host in ("alpha.test", "beta.test"):
            assert await get(http, r, host) == 200
            assert await get(http, r, host, "/status/500") == 500
        async with http.post(f"{r.url}/upload", data=b"abc", headers={"Host": "alpha.test"}):
            pass
        before = await scrape(http, r)
        families = {line.split("{")[0] for line in naming(before, "alpha")}
        assert {
            "slipway_router_requests_total",
            "slipway_router_request_duration_seconds_bucket",
            "slipway_router_in_flight",
            "slipway_router_errors_total",
            "slipway_router_received_bytes_total",
            "slipway_router_sent_bytes_total",
        } <= families, families

        r.route(beta(app))  # alpha deleted: the agent's next table lacks it
        after = await scrape(http, r)
        assert naming(after, "alpha") == []
        assert {line.split("{")[0] for line in naming(after, "beta")} >= {
            "slipway_router_requests_total",
            "slipway_router_request_duration_seconds_bucket",
            "slipway_router_in_flight",
        }
        assert r.metric("slipway_router_requests_total", **_ok("beta")) == 1
        assert "alpha" not in r.router.activity.apps  # nor in the agent's activity reports

        # A later app of the same name starts from nothing.
        r.route(alpha(app), beta(app))
        assert await get(http, r, "alpha.test") == 200
        assert r.metric("slipway_router_requests_total", **_ok("alpha")) == 1
        assert r.metric("slipway_router_request_duration_seconds_count", app="alpha") == 1


async def test_a_request_in_flight_at_the_removal_ends_counted_and_its_series_go_after(
    two: RunningRouter, app: AppProcess
) -> None:
    """Its end needs the app's in-flight entry and counts the request: the series stay
    until then (the gauge shows the request still running), and go at the next sweep."""
    r = two
    async with aiohttp.ClientSession() as http:
        assert await get(http, r, "alpha.test") == 200
        slow = asyncio.create_task(get(http, r, "alpha.test", "/slow?seconds=1"))
        await eventually(lambda: in_flight(r, "alpha") == 1)
        r.route(beta(app))
        assert r.metric("slipway_router_in_flight", app="alpha") == 1
        assert await slow == 200
        await eventually(lambda: not naming_registry(r, "alpha"), what="alpha's series to go")
        assert naming(await scrape(http, r), "alpha") == []
        assert await get(http, r, "alpha.test") == 404  # counted under no app
        assert await get(http, r, "beta.test") == 200
        assert r.metric("slipway_router_requests_total", **_ok("beta")) == 1
        assert naming(await scrape(http, r), "alpha") == []


def naming_registry(r: RunningRouter, app: str) -> list[str]:
    return [
        sample.name
        for family in r.registry.collect()
        for sample in family.samples
        if sample.labels.get("app") == app
    ]


def _ok(app: str) -> dict[str, str]:
    return {"app": app, "method": "GET", "status_class": "2xx"}
