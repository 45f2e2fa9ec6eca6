"""The control plane's relay of the logs SSE stream to a browser (control/livelogs.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from control.livelogs import LogsUpstream, upstream_from_settings
from control.settings import BuildServerSettings, ControlSettings
from kit.sse import Event, Parser
from tests.conftest import free_port
from tests.dashboard_live.browser import Demo, demo_server
from tests.dashboard_live.conftest import World
from tests.dashboard_live.demo import LAST_IDS, UPSTREAM
from tests.helpers import TIMEOUT


@pytest.fixture
async def demo(world: World, code: Path) -> AsyncIterator[Demo]:
    await world.deploy(code)
    assert await world.get("/") == 200
    async with demo_server(world.up) as running:
        yield running


async def events(
    response: aiohttp.ClientResponse, until: str, limit: float = TIMEOUT
) -> list[Event]:
    """SSE events read until one whose data holds ``until`` (an app's line through the
    agent, the logs service and the relay: seconds, on a loaded machine)."""
    parser, out = Parser(), []

    async def read() -> None:
        async for raw in response.content:
            event = parser.feed(raw)
            if event is not None:
                out.append(event)
                if until in event.data:
                    return

    await asyncio.wait_for(read(), limit)
    return out


class TestTheRelay:
    async def test_lines_come_through_with_their_ids_and_resume_from_last_event_id(
        self, world: World, demo: Demo
    ) -> None:
        session = world.session
        async with session.get(f"{demo.url}/logs/hello?lines=100") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            await world.get("/print?text=first")
            got = await events(response, '"text": "first"')
        first = next(e for e in got if '"text": "first"' in e.data)
        assert first.id is not None
        await world.get("/print?text=second")
        headers = {"Last-Event-ID": first.id}
        async with session.get(f"{demo.url}/logs/hello", headers=headers) as response:
            got = await events(response, '"text": "second"')
        texts = [json.loads(e.data)["text"] for e in got if e.event == "message"]
        assert "first" not in texts  # exactly the lines after the id
        assert texts[-1] == "second"
        assert demo.app[LAST_IDS][-1] == first.id

    async def test_only_the_stream_parameters_reach_the_logs_service(
        self, world: World, demo: Demo
    ) -> None:
        # ``since`` would turn the request into an archive read; the relay drops it.
        url = f"{demo.url}/logs/hello?source=app&since=0&format=text"
        async with world.session.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            await world.get("/print?text=filtered")
            got = await events(response, '"text": "filtered"')
        assert {json.loads(e.data)["source"] for e in got if e.event == "message"} == {"app"}

    async def test_a_bad_filter_is_the_browsers_400(self, world: World, demo: Demo) -> None:
        async with world.session.get(f"{demo.url}/logs/hello?source=bogus") as response:
            assert response.status == 400
            assert "source must be one of" in await response.text()

    async def test_a_logs_service_that_is_down_is_a_502_that_says_so(
        self, world: World, demo: Demo
    ) -> None:
        down = LogsUpstream(f"http://127.0.0.1:{free_port()}", "token")
        demo.app[UPSTREAM]["logs"] = down
        async with world.session.get(f"{demo.url}/logs/hello") as response:
            assert response.status == 502
            assert "cannot be reached" in await response.text()

    async def test_a_token_the_logs_service_refuses_is_a_502(
        self, world: World, demo: Demo
    ) -> None:
        assert world.up.logs is not None
        wrong = LogsUpstream(f"http://127.0.0.1:{world.up.logs.http_port}", "slw_wrong")
        demo.app[UPSTREAM]["logs"] = wrong
        async with world.session.get(f"{demo.url}/logs/hello") as response:
            assert response.status == 502
            assert "answered 403" in await response.text()

    async def test_a_shutdown_ends_the_open_streams_at_once(self, world: World, code: Path) -> None:
        """Not at the logs service's next keep-alive (15 s) or the runner's timeout (60 s)."""
        await world.deploy(code)
        assert await world.get("/print?text=kept") == 200
        async with demo_server(world.up) as running:
            response = await world.session.get(f"{running.url}/logs/hello?lines=1")
            assert response.status == 200
            await events(response, "kept")  # streaming: the relay holds its upstream
            # Left open by the client, as a tab in the background leaves it.
            stopping = asyncio.get_running_loop().time()
        # demo_server's runner.cleanup() ran on leaving the block
        took = asyncio.get_running_loop().time() - stopping
        # Well before the logs service's 15 s keep-alive would have ended it.
        assert took < 10, f"shutdown waited {took:.1f}s for an open stream"
        response.close()


class TestTheUpstreamFromSettings:
    def test_needs_both_the_logs_url_and_the_admin_token(self) -> None:
        base = ControlSettings(db_url="sqlite+aiosqlite:///x.db")
        assert upstream_from_settings(base) is None
        with_url = ControlSettings(
            db_url="sqlite+aiosqlite:///x.db",
            builds=BuildServerSettings(root="/nonexistent", logs_url="http://logs:8082/"),
            bootstrap_admin_token="slw_admin",
        )
        assert upstream_from_settings(with_url) == LogsUpstream("http://logs:8082", "slw_admin")
