"""Releases end to end through ``slipway up`` itself: control plane, agent, router, real processes.

The app is a real HTTP server process that answers with the config var it
was started with and its pid, so each test sees which release runs and
whether a process was restarted. Every request goes through the router at
``hello.localhost``, so apps released by the control plane sleep and wake
like any other.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from control.up import Up
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, up_settings
from tests.helpers import eventually

APP = textwrap.dedent(
    """
    import http.server, os

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"{os.environ.get('GREETING', 'unset')} {os.getpid()}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    print("hello is listening", flush=True)
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
    """
)
RELEASE = textwrap.dedent(
    """
    import os, sys
    print("release phase for", os.environ.get("GREETING", "unset"))
    sys.exit(1 if os.environ.get("BREAK_RELEASE") == "yes" else 0)
    """
)
HOST = "hello.localhost"
#: Bound on waiting for a process to come up with a new release (real processes, shared CPU).
SETTLE = 20.0


class World:
    def __init__(self, up: Up, session: aiohttp.ClientSession, sink: ListSink) -> None:
        self.up = up
        self.session = session
        self.sink = sink
        assert up.control is not None
        assert up.logs is not None
        self.base = f"http://127.0.0.1:{up.control.port}"
        self.logs = f"http://127.0.0.1:{up.logs.http_port}"
        self.router = f"http://127.0.0.1:{up.router.port}"

    async def call(
        self, method: str, path: str, body: object = None, token: str = ADMIN_TOKEN
    ) -> tuple[int, object]:
        async with self.session.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, await response.json()

    async def app_says(self) -> tuple[str, int]:
        """What the app answers through the router now (greeting, pid); wakes it if asleep."""
        async with self.session.get(self.router + "/", headers={"Host": HOST}) as response:
            text = await response.text()
            assert response.status == 200, (response.status, text)
        greeting, pid = text.split()
        return greeting, int(pid)

    async def app_becomes(self, greeting: str) -> int:
        """Wait until the app answers ``greeting`` (a restart onto a new release); its pid."""
        deadline = asyncio.get_running_loop().time() + SETTLE
        while True:
            said, pid = await self.app_says()
            if said == greeting:
                return pid
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the app still says {said!r}, not {greeting!r}")
            await asyncio.sleep(0.05)

    async def dynos(self) -> list[tuple[str, str, int]]:
        status, dynos = await self.call("GET", "/apps/hello/dynos")
        assert status == 200
        assert isinstance(dynos, list)
        return [(d["name"], d["state"], d["release"]["version"]) for d in dynos]

    async def until_dynos(self, wanted: list[tuple[str, str, int]]) -> None:
        found: list[tuple[str, str, int]] = []

        async def settled() -> bool:
            found[:] = await self.dynos()
            return found == wanted

        try:
            await eventually(settled, SETTLE, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(found) from exc


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """``slipway up`` with no apps file: every app comes from the control plane."""
    sink = ListSink()
    up = Up(up_settings(tmp_path), app_sink=sink, router_sink=sink)
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(up, session, sink)
        assert not up.failed.is_set()
    finally:
        await session.close()
        await up.stop()


@pytest.fixture
def code(tmp_path: Path) -> Path:
    directory = tmp_path / "hello"
    directory.mkdir()
    (directory / "app.py").write_text(APP)
    (directory / "release.py").write_text(RELEASE)
    return directory


async def deploy(world: World, code: Path) -> tuple[int, object]:
    procfile = {"web": "exec python3 app.py", "release": "python3 release.py"}
    return await world.call(
        "POST", "/apps/hello/releases", {"artifact": str(code), "procfile": procfile}
    )


class TestReleasesReachTheProcesses:
    async def test_a_config_change_restarts_the_app_with_it_and_rollback_brings_back_the_old(
        self, world: World, code: Path
    ) -> None:
        await world.call("POST", "/apps", {"name": "hello"})
        assert (await deploy(world, code))[0] == 201  # v2
        await world.until_dynos([("web", "asleep", 2)])  # released, not started until asked
        assert (await world.app_says())[0] == "unset"  # the request woke it
        assert (await world.call("PATCH", "/apps/hello/config-vars", {"GREETING": "hi"}))[0] == 200
        await world.app_becomes("hi")  # v3
        await world.call("PATCH", "/apps/hello/config-vars", {"GREETING": "bye"})  # v4
        await world.app_becomes("bye")
        status, release = await world.call("POST", "/apps/hello/releases", {"release": 3})
        assert status == 201
        assert isinstance(release, dict)
        assert (release["version"], release["description"]) == (5, "Rollback to v3")
        await world.app_becomes("hi")
        await world.until_dynos([("web.1", "up", 5)])

    async def test_a_failing_release_command_leaves_the_previous_release_running(
        self, world: World, code: Path
    ) -> None:
        await world.call("POST", "/apps", {"name": "hello"})
        await deploy(world, code)
        await world.call("PATCH", "/apps/hello/config-vars", {"GREETING": "stable"})
        pid = await world.app_becomes("stable")
        status, error = await world.call(
            "PATCH", "/apps/hello/config-vars", {"GREETING": "broken", "BREAK_RELEASE": "yes"}
        )
        assert status == 422
        assert isinstance(error, dict)
        assert error["id"] == "release_failed"
        assert "release phase for broken" in error["output"]
        assert await world.app_says() == ("stable", pid)
        _, app = await world.call("GET", "/apps/hello")
        assert isinstance(app, dict)
        assert app["current_release"] == 3

    async def test_restart_starts_a_new_process_on_the_same_release(
        self, world: World, code: Path
    ) -> None:
        await world.call("POST", "/apps", {"name": "hello"})
        await deploy(world, code)
        _, first = await world.app_says()
        assert (await world.call("DELETE", "/apps/hello/dynos/web"))[0] == 202
        _, second = await world.app_says()  # held while it restarts, not failed
        assert second != first

    async def test_scaling_up_and_to_zero(self, world: World, code: Path) -> None:
        await world.call("POST", "/apps", {"name": "hello"})
        await deploy(world, code)
        await world.app_says()
        await world.call("PATCH", "/apps/hello/formation/web", {"quantity": 2})
        await world.until_dynos([("web.1", "up", 2), ("web.2", "up", 2)])
        await world.call("PATCH", "/apps/hello/formation/web", {"quantity": 0})
        await world.until_dynos([])
        async with world.session.get(world.router + "/", headers={"Host": HOST}) as response:
            assert response.status == 404  # no web process: nothing to route to

    async def test_an_idle_released_app_sleeps_and_the_next_request_wakes_it(
        self, world: World, code: Path
    ) -> None:
        await world.call("POST", "/apps", {"name": "hello"})
        await deploy(world, code)
        status, _ = await world.call("PATCH", "/apps/hello/formation/web", {"idle_after": 1})
        assert status == 200
        _, pid = await world.app_says()
        await world.until_dynos([("web", "asleep", 2)])
        _, woken = await world.app_says()
        assert woken != pid
        assert world.up.agent.status("hello")["state"] == "awake"


class TestDomainsAndTokens:
    async def test_a_custom_domain_routes_to_the_app_and_removing_it_stops_that(
        self, world: World, code: Path
    ) -> None:
        await world.call("POST", "/apps", {"name": "hello"})
        await deploy(world, code)
        status, domain = await world.call(
            "POST", "/apps/hello/domains", {"hostname": "Pr-7.Example.COM"}
        )
        assert status == 201
        assert isinstance(domain, dict)
        assert (domain["hostname"], domain["kind"]) == ("pr-7.example.com", "custom")
        _, listed = await world.call("GET", "/apps/hello/domains")
        assert isinstance(listed, list)
        assert [(d["hostname"], d["kind"]) for d in listed] == [
            ("hello.localhost", "default"),
            ("pr-7.example.com", "custom"),
        ]
        headers = {"Host": "pr-7.example.com"}
        async with world.session.get(world.router + "/", headers=headers) as response:
            assert response.status == 200
        status, error = await world.call("POST", "/apps", {"name": "other"})
        status, error = await world.call(
            "POST", "/apps/other/domains", {"hostname": "pr-7.example.com"}
        )
        assert (status, error) == (
            409,
            {"id": "domain_taken", "message": "pr-7.example.com is already a domain of hello"},
        )
        status, error = await world.call("POST", "/apps/other/domains", {"hostname": "nodots"})
        assert status == 422
        status, _ = await world.call("DELETE", "/apps/hello/domains/pr-7.example.com")
        assert status == 200

        async def unrouted() -> bool:
            async with world.session.get(world.router + "/", headers=headers) as response:
                return response.status == 404

        await eventually(unrouted, what="the removed domain answering 404")
        status, _ = await world.call("DELETE", "/apps/hello/domains/pr-7.example.com")
        assert status == 404

    async def test_the_logs_service_takes_the_control_planes_tokens(
        self, world: World, code: Path
    ) -> None:
        await world.call("POST", "/apps", {"name": "hello"})
        await world.call("POST", "/apps", {"name": "other"})
        await deploy(world, code)
        await world.app_says()
        _, mine = await world.call("POST", "/tokens", {"name": "ci", "app": "hello"})
        assert isinstance(mine, dict)
        url = world.logs + "/apps/{}/logs?format=text&lines=50"
        token = {"Authorization": f"Bearer {mine['token']}"}

        async def listening() -> str | None:
            async with world.session.get(url.format("hello"), headers=token) as response:
                assert response.status == 200
                text = await response.text()
            return text if "hello is listening" in text else None

        text = await eventually(listening, what="hello's first line in its stream")
        assert "app[web.1]: hello is listening" in text
        async with world.session.get(url.format("other"), headers=token) as response:
            assert response.status == 403
        bad = {"Authorization": "Bearer slw_not_a_token"}
        async with world.session.get(url.format("hello"), headers=bad) as response:
            assert response.status == 403


class TestRestartingSlipway:
    async def test_a_new_slipway_up_brings_back_the_current_release(
        self, tmp_path: Path, code: Path
    ) -> None:
        for round_ in ("first", "second"):
            sink = ListSink()
            up = Up(up_settings(tmp_path), app_sink=sink, router_sink=sink)
            await up.start()
            try:
                async with aiohttp.ClientSession() as session:
                    world = World(up, session, sink)
                    if round_ == "first":
                        await world.call("POST", "/apps", {"name": "hello"})
                        await deploy(world, code)
                        await world.call("PATCH", "/apps/hello/config-vars", {"GREETING": "kept"})
                    await world.app_becomes("kept")
            finally:
                await up.stop()


SLOW_RELEASE = textwrap.dedent(
    """
    import os, sys, time
    print("migrating 1 of 2", flush=True)
    # Waits for the test to have seen the first line: proof it was published as printed.
    deadline = time.monotonic() + 15
    while not os.path.exists("go") and time.monotonic() < deadline:
        time.sleep(0.02)
    print("migrating 2 of 2", flush=True)
    sys.exit(4 if os.environ.get("BREAK_RELEASE") == "yes" else 0)
    """
)


class TestTheReleasePhasesLines:
    async def logs_text(self, world: World, query: str) -> str:
        url = f"{world.logs}/apps/hello/logs?format=text&lines=100&{query}"
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with world.session.get(url, headers=auth) as response:
            assert response.status == 200
            return await response.text()

    async def test_they_join_the_apps_log_stream_as_they_are_printed(
        self, world: World, code: Path
    ) -> None:
        (code / "release.py").write_text(SLOW_RELEASE)
        await world.call("POST", "/apps", {"name": "hello"})
        deploying = asyncio.create_task(deploy(world, code))

        async def first_line_shown() -> bool:
            return "migrating 1 of 2" in await self.logs_text(world, "source=release")

        await eventually(first_line_shown, SETTLE, interval=0.05)
        assert not deploying.done()  # the release phase still runs: it waits for "go"
        (code / "go").touch()
        status, release = await deploying
        assert status == 201, release
        text = await self.logs_text(world, "source=release")
        lines = [line.split(" ", 1)[1] for line in text.splitlines()]
        assert lines == [
            "slipway[release.1]: migrating 1 of 2",
            "slipway[release.1]: migrating 2 of 2",
        ]

    async def test_a_failed_one_ends_with_its_exit_code(self, world: World, code: Path) -> None:
        (code / "release.py").write_text(SLOW_RELEASE)
        (code / "go").touch()
        await world.call("POST", "/apps", {"name": "hello"})
        await world.call("PATCH", "/apps/hello/config-vars", {"BREAK_RELEASE": "yes"})
        status, _ = await deploy(world, code)
        assert status == 422
        text = await self.logs_text(world, "source=release")
        assert text.splitlines()[-1].endswith("slipway[release.1]: command exited with code 4")
