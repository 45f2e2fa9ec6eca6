"""Releases end to end: the API, the release phase and real app processes under LocalRuntime.

The app is a real HTTP server process that answers with the config var it
was started with and its pid, so each test can see which release runs and
whether a process was restarted.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from agent.local import LocalRuntime
from agent.settings import LocalSettings
from control.kit.tasks import TaskSet
from control.runtime_target import RuntimeTarget
from control.server import EmbeddedControl
from control.service import Control
from control.settings import ControlSettings
from control.store.db import Store
from tests.control.conftest import ADMIN_TOKEN

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
#: Bound on waiting for a process to come up with a new release (real processes, shared CPU).
SETTLE = 20.0


class QuietSink:
    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        pass


class World:
    def __init__(self, base: str, session: aiohttp.ClientSession, target: RuntimeTarget) -> None:
        self.base = base
        self.session = session
        self.target = target

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        async with self.session.request(
            method,
            self.base + path,
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response:
            return response.status, await response.json()

    async def app_says(self) -> tuple[str, int]:
        """What the app's web process answers now (greeting, pid); waits until one answers."""
        deadline = asyncio.get_running_loop().time() + SETTLE
        while True:
            status = self.target.status("hello", "web")
            ready = status.ready if status is not None else ()
            if ready:
                port = ready[0].port
                try:
                    async with self.session.get(f"http://127.0.0.1:{port}/") as response:
                        greeting, pid = (await response.text()).split()
                        return greeting, int(pid)
                except aiohttp.ClientError:
                    pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the app did not answer within {SETTLE}s: {status}")
            await asyncio.sleep(0.05)

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


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The control plane embedded over a LocalRuntime, as ``slipway up`` wires it."""
    runtime = LocalRuntime(settings=LocalSettings(stop_grace=2.0), sink=QuietSink())
    settings = ControlSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path}/state.db",
        port=0,
        bootstrap_admin_token=ADMIN_TOKEN,
        release_timeout=20,
    )
    embedded = EmbeddedControl(settings, runtime=runtime, registry=CollectorRegistry())
    tasks = TaskSet()
    await embedded.start(tasks)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(f"http://127.0.0.1:{embedded.server.port}", session, embedded.target)
        assert not tasks.failed.is_set()
    finally:
        await session.close()
        await embedded.stop()
        await runtime.close()
        await tasks.stop()


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
        assert (await world.app_says())[0] == "unset"
        assert (await world.call("PATCH", "/apps/hello/config-vars", {"GREETING": "hi"}))[0] == 200
        await world.app_becomes("hi")  # v3
        await world.call("PATCH", "/apps/hello/config-vars", {"GREETING": "bye"})  # v4
        await world.app_becomes("bye")
        status, release = await world.call("POST", "/apps/hello/releases", {"release": 3})
        assert status == 201
        assert isinstance(release, dict)
        assert (release["version"], release["description"]) == (5, "Rollback to v3")
        await world.app_becomes("hi")
        status, dynos = await world.call("GET", "/apps/hello/dynos")
        assert isinstance(dynos, list)
        assert [(d["name"], d["state"], d["release"]["version"]) for d in dynos] == [
            ("web.1", "up", 5)
        ]

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
        deadline = asyncio.get_running_loop().time() + SETTLE
        while (await world.app_says())[1] == first:
            assert asyncio.get_running_loop().time() < deadline, "the process was not restarted"
            await asyncio.sleep(0.05)

    async def test_scaling_to_zero_and_back(self, world: World, code: Path) -> None:
        await world.call("POST", "/apps", {"name": "hello"})
        await deploy(world, code)
        await world.app_says()
        await world.call("PATCH", "/apps/hello/formation/web", {"quantity": 2})
        deadline = asyncio.get_running_loop().time() + SETTLE
        while True:
            _, dynos = await world.call("GET", "/apps/hello/dynos")
            assert isinstance(dynos, list)
            if [d["state"] for d in dynos] == ["up", "up"]:
                break
            assert asyncio.get_running_loop().time() < deadline, dynos
            await asyncio.sleep(0.05)
        await world.call("PATCH", "/apps/hello/formation/web", {"quantity": 0})
        deadline = asyncio.get_running_loop().time() + SETTLE
        while (await world.call("GET", "/apps/hello/dynos"))[1] != []:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)


class TestRestartingTheControlPlane:
    async def test_a_new_control_plane_brings_back_the_current_release(
        self, tmp_path: Path, code: Path
    ) -> None:
        db = f"sqlite+aiosqlite:///{tmp_path}/state.db"
        for round_ in ("first", "second"):
            runtime = LocalRuntime(settings=LocalSettings(stop_grace=2.0), sink=QuietSink())
            target = RuntimeTarget(runtime=runtime, release_timeout=20)
            store = Store.open(db)
            control = Control(store=store, target=target)
            tasks = TaskSet()
            tasks.start("release-target", target.run())
            try:
                await control.start(bootstrap_admin_token=ADMIN_TOKEN)
                if round_ == "first":
                    await control.create_app("hello", actor="me")
                    await control.deploy(
                        "hello",
                        artifact=str(code),
                        procfile={"web": "exec python3 app.py"},
                        description=None,
                        actor="me",
                    )
                    await control.update_config("hello", {"GREETING": "kept"}, actor="me")
                world = World("", aiohttp.ClientSession(), target)
                try:
                    await world.app_becomes("kept")
                finally:
                    await world.session.close()
            finally:
                await runtime.close()
                await tasks.stop()
                await store.close()
