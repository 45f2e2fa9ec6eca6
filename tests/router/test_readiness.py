"""A router fed by an agent is ready only once it holds a route table.

A new pod of a rollout that took traffic before its first table would answer 404 for
every app until the table came; readiness keeps the ingress off it until then.
"""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry

from router.routes import AppRoute, Routes, RouteTable
from router.server import Router
from router.settings import RouterSettings
from tests.router.conftest import AppProcess, ListSink


class NoWake:
    async def wake(self, app: str) -> None:
        raise AssertionError("no request is sent in this test")


async def test_a_router_fed_by_an_agent_is_not_ready_until_its_first_route_table(
    app: AppProcess,
) -> None:
    settings = RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0)
    routes = Routes()
    router = Router(
        settings, routes=routes, registry=CollectorRegistry(), sink=ListSink(), waker=NoWake()
    )
    await router.start()
    try:
        ops = f"http://127.0.0.1:{router.ops_port}/readyz"
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(ops) as resp:
                assert resp.status == 503
                assert "no route table yet" in await resp.text()
            hello = AppRoute("hello", hosts=("hello.test",), endpoints=(app.endpoint,))
            routes.replace(RouteTable.build(1, [hello]))
            async with http.get(ops) as resp:
                assert resp.status == 200
    finally:
        await router.stop(grace=1)


async def test_a_router_with_a_static_table_is_ready_at_once(app: AppProcess) -> None:
    settings = RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0)
    hello = AppRoute("hello", hosts=("hello.test",), endpoints=(app.endpoint,))
    routes = Routes(RouteTable.build(1, [hello]))
    router = Router(
        settings, routes=routes, registry=CollectorRegistry(), sink=ListSink(), waker=NoWake()
    )
    await router.start()
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        url = f"http://127.0.0.1:{router.ops_port}/readyz"
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            assert resp.status == 200
    finally:
        await router.stop(grace=1)
