"""The agent over HTTP: two routers in their own right follow its feed and report to it."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.api import api_app
from agent.apps import load_apps
from agent.local import LocalRuntime
from agent.settings import AgentSettings, LocalSettings
from router.errors import AgentUnavailable, RouterError
from router.feed import AgentClient
from router.routes import Routes, RouteTable
from router.server import Router
from router.settings import RouterSettings
from tests.agent.conftest import ListSink, get, write_app
from tests.conftest import free_port
from tests.helpers import eventually

HOST = "hello.test"


@dataclass
class Cluster:
    agent: Agent
    registry: CollectorRegistry
    api: str
    routers: list[Router]
    clients: list[AgentClient]

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.routers[i].port}"

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    path = tmp_path / "apps.toml"
    path.write_text(write_app(tmp_path, "hello", idle_after=getattr(request, "param", "0.2s")))
    registry = CollectorRegistry()
    agent = Agent(
        load_apps(path),
        runtime=LocalRuntime(settings=LocalSettings(stop_grace=2), sink=ListSink()),
        registry=registry,
        settings=AgentSettings(host="127.0.0.1", port=0, tick=0.01),
    )
    await agent.start()
    runner = web.AppRunner(api_app(agent, registry=registry))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api = f"http://127.0.0.1:{port}"
    routers, clients = [], []
    for i in range(2):
        routes = Routes()
        client = AgentClient(api, routes=routes, name=f"router-{i}", report_interval=0.05)
        router = Router(
            RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0),
            routes=routes,
            registry=CollectorRegistry(),
            sink=ListSink(),
            waker=client,
        )
        client.activity = router.activity
        await client.start()
        await router.start()
        routers.append(router)
        clients.append(client)
    for client in clients:
        await asyncio.wait_for(client.synced.wait(), 5)
    yield Cluster(agent, registry, api, routers, clients)
    for router, client in zip(routers, clients, strict=True):
        await router.stop(grace=1)
        await client.stop()
    await agent.stop()
    await runner.cleanup()


async def test_both_routers_follow_the_table_and_a_wake_through_one_serves_both(
    cluster: Cluster,
) -> None:
    for client in cluster.clients:
        assert client.routes.table.apps["hello"].hosts == (HOST,)
    async with aiohttp.ClientSession() as http:
        status, body, _ = await get(http, cluster.url(0), HOST)
        assert status == 200
        await eventually(lambda: bool(cluster.clients[1].routes.table.apps["hello"].endpoints))
        status, again, headers = await get(http, cluster.url(1), HOST)
    assert status == 200
    assert "Slipway-Wake" not in headers
    assert again.split()[-1] == body.split()[-1]  # the same process
    assert cluster.metric("slipway_agent_wakes_total", app="hello") == 1


# Idle well above the report interval, so a loaded machine's loop stalls cannot fake idleness.
@pytest.mark.parametrize("cluster", ["0.5s"], indirect=True)
async def test_a_request_in_flight_on_one_router_keeps_the_app_awake(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as http:
        await get(http, cluster.url(0), HOST)
        await eventually(lambda: cluster.metric("slipway_agent_routers") == 2)
        # 2 s on router 1, far past idle_after, while router 0 sees nothing.
        status, _, _ = await get(http, cluster.url(1), HOST, "/slow?s=2")
        assert status == 200
        assert cluster.metric("slipway_agent_sleeps_total", app="hello") == 0
    await eventually(lambda: str(cluster.agent.machines["hello"].phase) == "asleep")
    for client in cluster.clients:
        await eventually(lambda c=client: c.routes.table.apps["hello"].endpoints == ())  # type: ignore[misc]


async def test_requests_through_two_routers_racing_sleeps_are_all_served(
    cluster: Cluster,
) -> None:
    rng = random.Random(3)
    statuses: list[int] = []
    done = asyncio.Event()

    async def client(http: aiohttp.ClientSession, i: int) -> None:
        while not done.is_set():
            status, _, _ = await get(http, cluster.url(i), HOST)
            statuses.append(status)
            await asyncio.sleep(rng.uniform(0.0, 0.6))

    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(client(http, i)) for i in (0, 1)]
        try:
            await eventually(
                lambda: cluster.metric("slipway_agent_sleeps_total", app="hello") >= 5, 30
            )
        finally:
            done.set()
            await asyncio.gather(*tasks)
    assert len(statuses) > 10
    assert set(statuses) == {200}, [s for s in statuses if s != 200]


async def test_the_route_feed_is_a_long_poll_answered_on_change(cluster: Cluster) -> None:
    version = cluster.agent.table["version"]
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.get(f"{cluster.api}/v1/routes?after={version}&wait=0.3") as resp:
            assert resp.status == 204
        assert time.monotonic() - started >= 0.25

        async def poll() -> tuple[float, dict[str, object]]:
            async with http.get(f"{cluster.api}/v1/routes?after={version}&wait=10") as resp:
                assert resp.status == 200
                return time.monotonic(), await resp.json()

        waiting = asyncio.create_task(poll())
        await asyncio.sleep(0.1)
        woke = time.monotonic()
        async with http.post(f"{cluster.api}/v1/apps/hello/wake") as resp:
            assert resp.status == 202
            assert (await resp.json())["state"] == "waking"
        answered, table = await waiting
    # On the change, not when the 10 s wait ran out. Half the wait, not the 0.5 s this had:
    # a loaded machine can take that long for the wake's POST and the answer alone.
    assert answered - woke < 5
    assert table["version"] != version
    assert table["apps"]["hello"]["state"] == "waking"  # type: ignore[index]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("post", "/v1/activity", b"not json", 400, "the body is not valid JSON"),
        ("post", "/v1/activity", b'{"router": ""}', 400, "router must be a non-empty string"),
        (
            "post",
            "/v1/activity",
            b'{"router": "r", "version": 1, "apps": {"a": {"requests": 1, "in_flight": 0,'
            b' "idle_for": 0, "busy": -2}}}',
            400,
            "busy must be request-seconds >= 0",
        ),
        ("post", "/v1/apps/nope/wake", b"", 404, "no app named 'nope'"),
        ("get", "/v1/routes?after=x", b"", 400, "after must be a version number"),
    ],
)
async def test_bad_api_calls_get_a_clear_error(
    cluster: Cluster, method: str, path: str, body: bytes, status: int, error: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, cluster.api + path, data=body) as resp,
    ):
        assert resp.status == status
        assert error in (await resp.json())["error"]


async def test_the_agent_api_serves_ops_endpoints_and_app_states(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cluster.api}/readyz") as resp:
            assert resp.status == 200
        async with http.get(f"{cluster.api}/metrics") as resp:
            assert 'slipway_agent_apps{state="asleep"} 1.0' in await resp.text()
        async with http.get(f"{cluster.api}/v1/apps") as resp:
            assert (await resp.json())["hello"]["state"] == "asleep"


async def test_a_wake_the_agent_cannot_take_fails_at_once(cluster: Cluster) -> None:
    unreachable = AgentClient(f"http://127.0.0.1:{free_port()}", routes=Routes())
    await unreachable.start()
    try:
        with pytest.raises(AgentUnavailable, match="cannot reach the agent to wake hello"):
            await unreachable.wake("hello")
        wrong = AgentClient(cluster.api, routes=Routes())
        await wrong.start()
        try:
            with pytest.raises(RouterError, match="agent answered 404 to wake nope"):
                await wrong.wake("nope")
        finally:
            await wrong.stop()
    finally:
        await unreachable.stop()


async def test_the_router_reads_every_field_of_the_agents_table(cluster: Cluster) -> None:
    await cluster.agent.wake("hello")
    await eventually(lambda: str(cluster.agent.machines["hello"].phase) == "awake")
    table = RouteTable.from_payload(cluster.agent.table)  # type: ignore[arg-type]
    assert table.to_payload() == cluster.agent.table
    route = table.apps["hello"]
    assert (route.state, route.boot_timeout, route.max_held) == ("awake", 60.0, 100)
    assert [e.dyno for e in route.endpoints] == ["web.1"]


async def test_a_router_keeps_its_table_while_the_agent_restarts_then_follows_the_new_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "apps.toml"
    path.write_text(write_app(tmp_path, "hello"))
    port = free_port()

    async def start_agent() -> tuple[Agent, web.AppRunner]:
        registry = CollectorRegistry()
        agent = Agent(
            load_apps(path),
            runtime=LocalRuntime(sink=ListSink()),
            registry=registry,
            settings=AgentSettings(host="127.0.0.1", port=port),
        )
        await agent.start()
        runner = web.AppRunner(api_app(agent, registry=registry))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return agent, runner

    first, runner = await start_agent()
    routes = Routes()
    client = AgentClient(f"http://127.0.0.1:{port}", routes=routes, report_interval=0.05)
    await client.start()
    try:
        await asyncio.wait_for(client.synced.wait(), 5)
        old = routes.table.version
        assert old == first.table["version"]
        await first.stop()
        await runner.cleanup()
        await asyncio.sleep(0.5)  # reports and polls fail meanwhile
        assert routes.table.version == old
        assert routes.table.apps["hello"].hosts == (HOST,)
        second, runner = await start_agent()
        try:
            deadline = time.monotonic() + 10
            while routes.table.version != second.table["version"]:
                assert time.monotonic() < deadline, "the router never followed the new agent"
                await asyncio.sleep(0.02)
            assert second.table["version"] > old  # versions grow across restarts
            await eventually(lambda: second.reports.routers() == [client.name])
        finally:
            await second.stop()
            await runner.cleanup()
    finally:
        await client.stop()
