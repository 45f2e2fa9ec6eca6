"""The app's logs reach a signed-in user through the dashboard, same-origin, with resume;
another team's app's logs do not (control/dashboard/live_views.py over control/livelogs.py;
the relay's own cases, filters, 400s and 502s, are in tests/dashboard_live/test_livelogs.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from playwright.async_api import Page

from tests.dashboard.conftest import World
from tests.dashboard.test_access import COLLAB_PASSWORD, two_teams
from tests.dashboard.test_browser import deploy


async def test_the_apps_lines_stream_to_the_page_and_resume_after_an_id(
    world: World, page: Page, tmp_path: Path
) -> None:
    await world.api("POST", "/apps", {"name": "hello"})
    await deploy(world, tmp_path)
    async with world.session.get(world.router + "/", headers={"Host": "hello.localhost"}) as r:
        assert r.status == 200
    await world.sign_in(page)
    # tail=0: the history, then the end (the page follows with the default, tail=1).
    url = world.dashboard + "/apps/hello/logs/stream?lines=100&tail=0"

    async def events() -> list[dict[str, object]]:
        reply = await page.request.get(url)
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        found = []
        for block in (await reply.text()).split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "data" in fields:
                found.append({"id": int(fields["id"]), **json.loads(fields["data"])})
        return found

    seen: list[dict[str, object]] = []
    deadline = asyncio.get_running_loop().time() + 20.0
    while not any("hello is listening" in str(e) for e in seen):
        assert asyncio.get_running_loop().time() < deadline, seen
        await asyncio.sleep(0.2)
        seen = await events()
    # From an id on: only what came after it (the SSE resume the page's EventSource uses).
    last = int(str(seen[-2]["id"]))
    reply = await page.request.get(url, headers={"Last-Event-ID": str(last)})
    ids = [int(line[4:]) for line in (await reply.text()).splitlines() if line.startswith("id: ")]
    assert ids
    assert min(ids) > last


async def test_another_teams_logs_are_a_404(world: World, page: Page) -> None:
    await two_teams(world)
    await world.sign_in(page, "collab", COLLAB_PASSWORD)
    reply = await page.request.get(world.dashboard + "/apps/team-b/logs/stream")
    assert reply.status == 404
    # A token in the query is not passed on: the user's access decides, not the token's.
    reply = await page.request.get(world.dashboard + "/apps/team-b/logs/stream?token=anything")
    assert reply.status == 404


async def test_without_a_session_the_stream_sends_to_sign_in(world: World) -> None:
    await world.api("POST", "/apps", {"name": "hello"})
    async with world.session.get(
        world.dashboard + "/apps/hello/logs/stream", allow_redirects=False
    ) as reply:
        assert reply.status == 303
        assert reply.headers["Location"].startswith("/dashboard/login?next=")
