"""The request charts' endpoints under ``slipway up``: a real router, a real app, real requests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.control.conftest import ADMIN_TOKEN
from tests.dashboard_live.conftest import World, start_world
from tests.helpers import eventually


def totals(body: dict[str, Any]) -> tuple[dict[str, int], dict[str, int], int]:
    requests = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    codes: dict[str, int] = {}
    wakes = 0
    for point in body["points"]:
        for cls, n in point["requests"].items():
            requests[cls] += n
        for code, n in point["codes"].items():
            codes[code] = codes.get(code, 0) + n
        wakes += point["wakes"]
    return requests, codes, wakes


async def traffic(world: World) -> None:
    assert await world.get("/") == 200  # wakes the app
    assert await world.get("/") == 200
    assert await world.get("/status/302") == 302
    assert await world.get("/status/404") == 404
    assert await world.get("/close") == 503  # H13


async def metrics(world: World, query: str = "", token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    since = int(time.time()) - 600
    return await world.call(
        "GET", f"/apps/hello/metrics/requests?since={since}{query}", token=token
    )


class TestRequestCharts:
    async def test_counts_latency_codes_and_wakes_come_from_the_routed_requests(
        self, world: World, code: Path
    ) -> None:
        await world.deploy(code)
        await traffic(world)

        found: dict[str, Any] = {}

        async def counted() -> bool:
            status, body = await metrics(world)
            assert status == 200, body
            found.update(body)
            return sum(totals(body)[0].values()) >= 5

        await eventually(counted)
        body = found
        requests, codes, wakes = totals(body)
        assert requests == {"2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1}
        assert codes == {"H13": 1}
        assert wakes == 1
        assert body["source"] == "rollup"
        assert body["step"] == 60
        assert len(body["points"]) in (10, 11)  # 600 s of minutes
        busy = [p for p in body["points"] if p["latency_ms"] is not None]
        assert busy
        assert all(set(p["latency_ms"]) == {"p50", "p95", "p99"} for p in busy)
        woke = [p for p in body["points"] if p["wakes"]]
        assert woke[0]["wake_ms"]["max"] > 0

        status, events = await world.call(
            "GET", f"/apps/hello/events?since={int(time.time()) - 600}"
        )
        assert status == 200
        kinds = [e["kind"] for e in events["events"]]
        assert "deploy" in kinds
        assert "wake" in kinds
        assert kinds.index("deploy") < kinds.index("wake")
        deploy = next(e for e in events["events"] if e["kind"] == "deploy")
        assert deploy["detail"].startswith("v2")

    async def test_a_restart_is_an_event(self, world: World, code: Path) -> None:
        await world.deploy(code)
        assert await world.get("/") == 200
        status, _ = await world.call("DELETE", "/apps/hello/dynos")
        assert status == 202
        _, events = await world.call("GET", "/apps/hello/events")
        assert [e["detail"] for e in events["events"] if e["kind"] == "restart"] == ["all"]

    async def test_the_charts_survive_a_restart_of_slipway_up(
        self, code: Path, tmp_path: Path
    ) -> None:
        state = tmp_path / "state"
        state.mkdir()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            up = await start_world(state)
            try:
                first = World(up, session)
                await first.deploy(code)
                await traffic(first)
            finally:
                await up.stop()  # saves the rollup
            assert (state / "rollup.json").exists()
            up = await start_world(state)
            try:
                status, body = await metrics(World(up, session))
                assert status == 200
                assert totals(body)[0] == {"2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1}
            finally:
                await up.stop()


class TestWhoSeesWhat:
    async def test_an_app_token_sees_its_app_and_gets_404_for_any_other(
        self, world: World, code: Path
    ) -> None:
        await world.deploy(code)
        assert (await world.call("POST", "/apps", {"name": "other"}))[0] == 201
        _, own = await world.call("POST", "/tokens", {"name": "t1", "app": "hello"})
        _, foreign = await world.call("POST", "/tokens", {"name": "t2", "app": "other"})
        assert (await metrics(world, token=own["token"]))[0] == 200
        assert (await world.call("GET", "/apps/hello/events", token=own["token"]))[0] == 200
        status, body = await metrics(world, token=foreign["token"])
        assert (status, body["id"]) == (404, "app_not_found")
        status, body = await world.call("GET", "/apps/hello/events", token=foreign["token"])
        assert (status, body["id"]) == (404, "app_not_found")
        # The same answer as for an app that does not exist: nothing to learn from it.
        status, _ = await world.call("GET", "/apps/nosuch/metrics/requests")
        assert status == 404

    async def test_no_token_is_401(self, world: World) -> None:
        async with world.session.get(world.base + "/apps/hello/metrics/requests") as response:
            assert response.status == 401


class TestQueries:
    async def test_each_malformed_query_gets_a_400_that_says_what_to_ask(
        self, world: World, code: Path
    ) -> None:
        await world.deploy(code)
        now = int(time.time())
        cases = {
            f"since={now - 600}&step=61": "step must be one of 60, 120",
            f"since={now - 600}&step=abc": "step must be one of",
            f"since={now - 600}&step=-60": "step must be one of",
            "since=yesterday": "unix seconds",
            "since=nan": "unix seconds",
            "since=-5": "unix seconds",
            "colour=blue": "unknown query",
            "until=5": "unknown query",
        }
        for query, says in cases.items():
            status, body = await world.call("GET", f"/apps/hello/metrics/requests?{query}")
            assert status == 400, (query, body)
            assert says in body["message"], (query, body)
        status, body = await world.call("GET", "/apps/hello/events?since=x")
        assert status == 400
        assert "unix seconds" in body["message"]

    async def test_a_day_back_is_answered_in_ten_minute_points(
        self, world: World, code: Path
    ) -> None:
        await world.deploy(code)
        since = int(time.time()) - 86400
        for query in (f"since={since}", f"since={since}&step=60"):
            status, body = await world.call("GET", f"/apps/hello/metrics/requests?{query}")
            assert status == 200
            assert body["step"] == 600  # minutes are kept 2 hours: the answer says so
            assert len(body["points"]) in (144, 145)

    async def test_since_is_clamped_to_the_week_kept_and_to_now(
        self, world: World, code: Path
    ) -> None:
        await world.deploy(code)
        now = time.time()
        _, body = await world.call(
            "GET", f"/apps/hello/metrics/requests?since={int(now) - 30 * 86400}"
        )
        assert body["since"] >= now - 7 * 86400
        assert len(body["points"]) in (1008, 1009)
        _, body = await world.call("GET", f"/apps/hello/metrics/requests?since={int(now) + 3600}")
        assert body["since"] <= time.time()
        assert len(body["points"]) == 1
