"""The app page's live parts in Chromium against ``slipway up``: a line the app prints shows
in its log view, requests through the router show on its charts and wakes in its activity,
a build's output streams into the build's page while it builds, and another team's charts,
events, logs and builds are a 404 (control/dashboard/live_views.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.agent.conftest import running_up
from tests.builds.apps import commit, python_app
from tests.control.conftest import builder_up_settings
from tests.dashboard.conftest import World, keep_in_docs, screenshot
from tests.dashboard.test_access import COLLAB_PASSWORD, two_teams
from tests.dashboard_live.apps import APP, PROCFILE

HOST = "hello.localhost"


async def deploy_printer(world: World, tmp_path: Path) -> None:
    """The live tests' app (prints on request) as ``hello``."""
    code = tmp_path / "printer"
    code.mkdir()
    (code / "app.py").write_text(APP)
    status, body = await world.api("POST", "/apps", {"name": "hello"})
    assert status == 201, body
    status, body = await world.api(
        "POST", "/apps/hello/releases", {"artifact": str(code), "procfile": PROCFILE}
    )
    assert status == 201, body


async def through_router(world: World, path: str) -> int:
    async with world.session.get(world.router + path, headers={"Host": HOST}) as reply:
        await reply.read()
        return reply.status


async def test_the_app_page_shows_its_logs_charts_and_wakes_live(
    world: World, page: Page, tmp_path: Path
) -> None:
    await deploy_printer(world, tmp_path)
    for path in ("/", "/status/404", "/close"):  # a wake, a 2xx, a 4xx and an H13
        await through_router(world, path)
    await world.sign_in(page)
    await page.goto(world.dashboard + "/apps/hello")

    # The charts: drawn from the rollup the router fed, with the wake on the time axis.
    charts = page.locator("#live-charts")
    await expect(charts).to_have_attribute("data-state", "ok")
    await expect(charts.locator("svg.lc-chart")).to_have_count(4)
    await expect(charts.locator('rect[data-series="4xx"]')).to_have_count(1)
    await expect(charts.locator('rect[data-series="H13"]')).to_have_count(1)
    await expect(charts.locator(".lc-event-wake")).to_have_count(4)
    await expect(charts.locator(".lc-event-deploy")).to_have_count(4)

    # The activity: the wake, with its wake time, among the releases.
    wake = page.locator('#activity li[data-action="app.wake"]')
    await expect(wake).to_have_count(1)
    await expect(wake).to_contain_text("woke in")
    await expect(wake).to_contain_text("by a request")
    await expect(page.locator('#activity li[data-action="release.create"]')).to_have_count(1)

    # The logs: a line the app prints after the page opened appears in the view.
    logs = page.locator("#live-logs")
    await expect(logs).to_have_attribute("data-state", "open")
    assert await through_router(world, "/print?text=printed+after+the+page+opened") == 200
    row = logs.locator(".ll-row", has_text="printed after the page opened")
    await expect(row).to_have_count(1)
    await expect(row.locator(".ll-who")).to_have_text("app[web.1]")
    keep_in_docs(await screenshot(page, "app-live"), "dashboard-app.png")


async def test_another_teams_charts_events_logs_and_builds_are_a_404(
    world: World, page: Page
) -> None:
    await two_teams(world)
    await world.sign_in(page, "collab", COLLAB_PASSWORD)
    own = await page.request.get(world.dashboard + "/apps/team-a/metrics/requests")
    assert own.status == 200
    body = await own.json()
    assert (body["app"], body["source"], body["step"]) == ("team-a", "rollup", 60)
    assert all(sum(p["requests"].values()) == 0 for p in body["points"])
    events = await page.request.get(world.dashboard + "/apps/team-a/events")
    assert events.status == 200
    assert (await events.json())["app"] == "team-a"
    for path in ("metrics/requests", "events", "logs/stream", "builds/abc123"):
        theirs = await page.request.get(f"{world.dashboard}/apps/team-b/{path}")
        assert theirs.status == 404, path
        missing = await page.request.get(f"{world.dashboard}/apps/no-such-app/{path}")
        assert missing.status == 404, path


async def test_bad_chart_queries_are_a_400_that_says_what_is_allowed(
    world: World, page: Page
) -> None:
    await world.api("POST", "/apps", {"name": "hello"})
    await world.sign_in(page)
    base = world.dashboard + "/apps/hello"
    reply = await page.request.get(base + "/metrics/requests?step=7")
    assert reply.status == 400
    assert "step must be one of" in await reply.text()
    reply = await page.request.get(base + "/events?since=yesterday")
    assert reply.status == 400
    assert "since must be unix seconds" in await reply.text()
    reply = await page.request.get(base + "/builds/no-such-build")
    assert reply.status == 404


@pytest.fixture
async def builder_world(tmp_path: Path) -> AsyncIterator[World]:
    """``slipway up`` with a local builder, as it runs by default."""
    async with running_up(builder_up_settings(tmp_path)) as (up, session):
        yield World(up, session)


async def test_a_builds_output_streams_into_its_page_while_it_builds(
    builder_world: World, page: Page, tmp_path: Path
) -> None:
    world = builder_world
    sha = commit(tmp_path / "repo", python_app())  # pip installs a wheel: seconds of output
    await world.api("POST", "/apps", {"name": "built"})
    await world.sign_in(page)
    status, build = await world.api(
        "POST", "/apps/built/builds", {"source_blob": {"url": str(tmp_path / "repo"),
                                                       "version": sha}}
    )  # fmt: skip
    assert status == 201, build
    assert isinstance(build, dict)
    # The activity links the build to its page.
    await page.goto(world.dashboard + "/apps/built")
    await page.locator('#activity li[data-action="build.create"] a').click()
    await page.wait_for_url(f"{world.dashboard}/apps/built/builds/{build['id']}")
    opened_while = await page.locator("#build-status").get_attribute("data-state")
    output = page.locator("#live-logs")
    await expect(output.locator(".ll-row", has_text="Python app detected")).to_have_count(1)
    await expect(output.locator(".ll-row", has_text="Released v2")).to_have_count(1, timeout=60_000)
    # Opened while it ran, so every line arrived on the open stream, without a reload.
    assert opened_while == "pending"
    who = set(await output.locator(".ll-who").all_text_contents())
    assert who == {f"slipway[build.{build['id']}]"}  # this build's lines only
    await screenshot(page, "build")
    await page.reload()
    await expect(page.locator("#build-status")).to_have_attribute("data-state", "succeeded")
