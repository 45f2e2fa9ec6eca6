"""Through the real router, with real app processes: sleep, wake, and the errors on the way."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import aiohttp

from tests.agent.conftest import StartUp, get, write_app
from tests.helpers import eventually

HOST = "hello.test"


async def test_the_first_request_wakes_a_sleeping_app_and_gets_its_body(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello"))
    assert s.state("hello") == "asleep"
    assert s.up.router.routes.table.apps["hello"].endpoints == ()
    async with aiohttp.ClientSession() as http:
        status, body, headers = await get(http, s.url, HOST)
    assert status == 200
    assert body.startswith("hello from web.1 pid ")
    assert headers["Slipway-Wake"].endswith("ms")
    assert s.state("hello") == "awake"
    assert s.metric("slipway_agent_wakes_total", app="hello") == 1
    assert s.metric("slipway_agent_wake_duration_seconds_count", app="hello") == 1
    assert any("wake=" in line and "status=200" in line for line in s.sink.router_lines)


async def test_fifty_concurrent_requests_to_a_sleeping_app_all_succeed_with_one_wake(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello", env={"BOOT_DELAY": "0.3"}))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        results = await asyncio.gather(*(get(http, s.url, HOST) for _ in range(50)))
    assert [status for status, _, _ in results] == [200] * 50
    assert s.metric("slipway_agent_wakes_total", app="hello") == 1
    assert s.metric("slipway_router_held_requests", app="hello") == 0
    assert len({body for _, body, _ in results}) == 1  # one process served them all


async def test_an_app_that_never_listens_gets_h20_and_goes_back_to_sleep(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello", env={"MODE": "never"}, boot_timeout="0.5s"))
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        status, _, headers = await get(http, s.url, HOST)
    assert status == 503
    assert headers["Slipway-Error"] == "H20"
    # Held for its own 0.5 s boot timeout, not the 60 s default.
    assert 0.4 < time.monotonic() - started < 20
    await eventually(lambda: s.state("hello") == "asleep")
    assert s.metric("slipway_agent_boot_timeouts_total", app="hello") == 1
    assert s.up.agent.machines["hello"].reason == "web did not become ready within 0.5s"


async def test_an_app_that_exits_while_booting_gets_h10_with_the_reason(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello", env={"MODE": "crash"}))
    async with aiohttp.ClientSession() as http:
        status, _, headers = await get(http, s.url, HOST)
    assert status == 503
    assert headers["Slipway-Error"] == "H10"
    assert s.state("hello") == "crashed"
    assert "exited with code 1" in s.up.router.routes.table.apps["hello"].reason
    assert ("hello", "web.1", "boom: cannot connect to the database") in s.sink.lines
    assert s.metric("slipway_agent_crashes_total", app="hello") == 1


async def test_requests_beyond_the_held_bound_get_h11_and_the_rest_are_served(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello", env={"BOOT_DELAY": "1"}, max_held=2))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        results = await asyncio.gather(*(get(http, s.url, HOST) for _ in range(6)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 503, 503, 503, 503]
    assert {h["Slipway-Error"] for status, _, h in results if status == 503} == {"H11"}
    assert s.metric("slipway_agent_wakes_total", app="hello") == 1


async def test_a_crash_loop_shows_as_crashed_restarts_and_recovers_when_fixed(
    slipway: StartUp, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    s = await slipway(
        write_app(tmp_path, "hello", env={"MODE": "crash", "FIXED_IF": str(fixed)}),
        backoff_initial=0.05,
        backoff_max=0.1,
    )
    async with aiohttp.ClientSession() as http:
        status, _, headers = await get(http, s.url, HOST)
        assert (status, headers["Slipway-Error"]) == (503, "H10")

        def restarts() -> int:
            return s.up.agent.machines["hello"].statuses["web"].instances[0].restarts

        await eventually(lambda: restarts() >= 3)
        assert s.state("hello") == "crashed"
        assert s.metric("slipway_agent_app_state", app="hello", state="crashed") == 1
        status, _, headers = await get(http, s.url, HOST)
        assert (status, headers["Slipway-Error"]) == (503, "H10")  # no wait while looping

        fixed.touch()
        await eventually(lambda: s.state("hello") == "awake")
        status, body, _ = await get(http, s.url, HOST)
    assert status == 200
    assert body.startswith("hello from web.1")


async def test_an_idle_app_sleeps_and_its_process_stops(slipway: StartUp, tmp_path: Path) -> None:
    s = await slipway(write_app(tmp_path, "hello", idle_after="0.2s"))
    async with aiohttp.ClientSession() as http:
        status, _, _ = await get(http, s.url, HOST)
    assert status == 200
    port = s.up.router.routes.table.apps["hello"].endpoints[0].port
    await eventually(lambda: s.state("hello") == "asleep")
    assert s.up.router.routes.table.apps["hello"].endpoints == ()
    assert s.metric("slipway_agent_sleeps_total", app="hello") == 1

    async def refused() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return True
        writer.close()
        return False

    deadline = time.monotonic() + 15
    while not await refused():
        assert time.monotonic() < deadline, "the app process still listens after sleeping"
        await asyncio.sleep(0.02)


async def test_an_app_stays_awake_while_a_request_is_in_flight(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello", idle_after="0.5s"))
    async with aiohttp.ClientSession() as http:
        await get(http, s.url, HOST)
        status, _, _ = await get(http, s.url, HOST, "/slow?s=1.5")
        assert status == 200
        assert s.metric("slipway_agent_sleeps_total", app="hello") == 0
    await eventually(lambda: s.state("hello") == "asleep")


async def test_requests_racing_twenty_sleeps_are_all_served(
    slipway: StartUp, tmp_path: Path
) -> None:
    s = await slipway(write_app(tmp_path, "hello", idle_after="0.03s"))
    rng = random.Random(7)
    statuses: list[int] = []
    done = asyncio.Event()

    async def client(http: aiohttp.ClientSession) -> None:
        while not done.is_set():
            status, _, _ = await get(http, s.url, HOST)
            statuses.append(status)
            # Gaps around idle_after and the drain, so requests land before, during and
            # after each sleep (and during the wake that follows).
            await asyncio.sleep(rng.uniform(0.0, 0.4))

    async with aiohttp.ClientSession() as http:
        clients = [asyncio.create_task(client(http)) for _ in range(2)]
        try:
            await eventually(lambda: s.metric("slipway_agent_sleeps_total", app="hello") >= 20, 40)
        finally:
            done.set()
            await asyncio.gather(*clients)
    assert len(statuses) > 40
    assert set(statuses) == {200}, [st for st in statuses if st != 200]
    assert s.metric("slipway_agent_wakes_total", app="hello") >= 20


async def test_workers_sleep_and_wake_with_web_and_always_on_ones_keep_running(
    slipway: StartUp, tmp_path: Path
) -> None:
    toml = write_app(tmp_path, "hello", idle_after="0.3s", always_on=["clock"])
    procfile = tmp_path / "hello" / "Procfile"
    procfile.write_text(
        procfile.read_text() + "worker: echo worker up; sleep 60\nclock: echo tick; sleep 60\n"
    )
    s = await slipway(toml)
    machine = s.up.agent.machines["hello"]

    def running(process: str) -> int:
        status = machine.statuses.get(process)
        return 0 if status is None else sum(i.ready for i in status.instances)

    await eventually(lambda: running("clock") == 1)
    assert running("worker") == 0
    async with aiohttp.ClientSession() as http:
        status, _, _ = await get(http, s.url, HOST)
    assert status == 200
    await eventually(lambda: running("worker") == 1)
    await eventually(lambda: s.state("hello") == "asleep")
    await eventually(lambda: running("worker") == 0 and running("web") == 0)
    assert running("clock") == 1
    assert ("hello", "worker.1", "worker up") in s.sink.lines
