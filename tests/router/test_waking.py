"""Requests for an app with no endpoint are held, the app woken once, and then served.

The waker here does what the agent does, for real: it starts an app process
and publishes its endpoint in the route table once it accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from router.routes import AppRoute, AppState, Endpoint, Routes, RouteTable
from tests.router.conftest import AppProcess, RunningRouter, start_app, start_router

HOST = {"Host": "hello.test"}


@dataclass
class ProcessWaker:
    """Wakes ``hello`` by starting a real app process, like LocalRuntime will."""

    routes: Routes | None = None
    calls: int = 0
    mode: str = "start"  # start | never | crash | raise
    started: list[AppProcess] = field(default_factory=list)

    async def wake(self, app: str) -> None:
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("runtime unreachable")
        asyncio.get_running_loop().create_task(self._boot(app))

    async def _boot(self, app: str) -> None:
        assert self.routes is not None
        if self.mode == "never":
            return
        if self.mode == "crash":
            await asyncio.sleep(0.1)
            self.publish(app, state=AppState.CRASHED, reason="web.1 exited with code 1")
            return
        process = await asyncio.to_thread(start_app, "woken")
        self.started.append(process)
        self.publish(app, endpoints=(process.endpoint,))

    def publish(
        self,
        app: str,
        *,
        endpoints: tuple[Endpoint, ...] = (),
        state: AppState = AppState.AWAKE,
        reason: str = "",
    ) -> None:
        assert self.routes is not None
        old = self.routes.table.apps[app]
        new = AppRoute(
            app,
            hosts=old.hosts,
            endpoints=endpoints,
            state=state,
            reason=reason,
            boot_timeout=old.boot_timeout,
            max_held=old.max_held,
        )
        self.routes.replace(RouteTable.build(self.routes.table.version + 1, [new]))

    def stop(self) -> None:
        for process in self.started:
            process.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.proc.wait(5)


@pytest.fixture
async def asleep(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[RunningRouter, ProcessWaker]]:
    params = getattr(request, "param", {})
    waker = ProcessWaker(mode=params.get("mode", "start"))
    r = await start_router(
        [
            AppRoute(
                "hello",
                hosts=("hello.test",),
                state=AppState.ASLEEP,
                boot_timeout=params.get("boot_timeout", 10.0),
                max_held=params.get("max_held", 100),
            )
        ],
        waker=waker,
    )
    waker.routes = r.routes
    yield r, waker
    await r.router.stop(grace=0.5)
    waker.stop()


async def test_the_first_request_wakes_the_app_and_gets_its_answer(
    asleep: tuple[RunningRouter, ProcessWaker],
) -> None:
    r, waker = asleep
    async with aiohttp.ClientSession() as http, http.get(r.url, headers=HOST) as resp:
        assert resp.status == 200
        assert (await resp.text()).startswith("hello from woken")
        wake = resp.headers["Slipway-Wake"]
    assert waker.calls == 1
    assert wake.endswith("ms")
    assert int(wake[:-2]) > 0
    line = r.sink.only()
    assert f"wake={wake}" in line
    assert r.metric("slipway_router_wake_duration_seconds_count", app="hello") == 1


async def test_fifty_concurrent_requests_wake_the_app_exactly_once(
    asleep: tuple[RunningRouter, ProcessWaker],
) -> None:
    r, waker = asleep
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one() -> int:
            async with http.get(r.url, headers=HOST) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one() for _ in range(50)))
    assert statuses == [200] * 50
    assert waker.calls == 1
    assert r.metric("slipway_router_held_requests", app="hello") == 0


@pytest.mark.parametrize("asleep", [{"mode": "never", "boot_timeout": 0.5}], indirect=True)
async def test_an_app_that_never_becomes_ready_is_h20(
    asleep: tuple[RunningRouter, ProcessWaker],
) -> None:
    r, _ = asleep
    async with aiohttp.ClientSession() as http, http.get(r.url, headers=HOST) as resp:
        assert resp.status == 503
        assert resp.headers["Slipway-Error"] == "H20"
    assert "code=H20" in r.sink.only()


@pytest.mark.parametrize("asleep", [{"mode": "crash"}], indirect=True)
async def test_an_app_that_crashes_while_booting_is_h10(
    asleep: tuple[RunningRouter, ProcessWaker],
) -> None:
    r, _ = asleep
    async with aiohttp.ClientSession() as http, http.get(r.url, headers=HOST) as resp:
        assert resp.status == 503
        assert resp.headers["Slipway-Error"] == "H10"
        assert "exited with code 1" in await resp.text()


@pytest.mark.parametrize("asleep", [{"mode": "raise"}], indirect=True)
async def test_a_wake_that_cannot_be_asked_is_h10(
    asleep: tuple[RunningRouter, ProcessWaker],
) -> None:
    r, _ = asleep
    async with aiohttp.ClientSession() as http, http.get(r.url, headers=HOST) as resp:
        assert resp.status == 503
        assert resp.headers["Slipway-Error"] == "H10"
        assert "runtime unreachable" in await resp.text()


@pytest.mark.parametrize(
    "asleep", [{"mode": "never", "max_held": 3, "boot_timeout": 1.0}], indirect=True
)
async def test_requests_past_the_hold_limit_are_h11_at_once(
    asleep: tuple[RunningRouter, ProcessWaker],
) -> None:
    r, _ = asleep
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one() -> str:
            async with http.get(r.url, headers=HOST) as resp:
                return resp.headers["Slipway-Error"]

        codes = await asyncio.gather(*(one() for _ in range(5)))
    assert sorted(codes) == ["H11", "H11", "H20", "H20", "H20"]


async def test_a_request_racing_a_scale_down_is_held_and_rewakes(
    asleep: tuple[RunningRouter, ProcessWaker],
) -> None:
    """The table still lists an endpoint whose process just stopped: no request is lost."""
    r, waker = asleep
    gone = start_app("gone")
    gone.proc.terminate()
    gone.proc.wait(5)
    waker.publish("hello", endpoints=(gone.endpoint,))
    async with aiohttp.ClientSession() as http, http.get(r.url, headers=HOST) as resp:
        assert resp.status == 200
        assert (await resp.text()).startswith("hello from woken")
    assert waker.calls == 1
