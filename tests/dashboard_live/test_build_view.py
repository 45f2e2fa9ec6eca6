"""live-logs.js as a build's output view: one build's lines, streamed while it runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.agent.conftest import running_up
from tests.builds.apps import commit, python_app
from tests.control.conftest import builder_up_settings
from tests.dashboard_live.browser import chromium, demo_server, texts
from tests.dashboard_live.conftest import World


@pytest.fixture
async def builder_world(tmp_path: Path) -> AsyncIterator[World]:
    """``slipway up`` with a local builder, as it runs by default."""
    async with running_up(builder_up_settings(tmp_path)) as (up, session):
        yield World(up, session)


async def test_a_builds_view_shows_its_lines_and_only_them(
    builder_world: World, tmp_path: Path
) -> None:
    world = builder_world
    repo = tmp_path / "repo"
    sha = commit(repo, python_app(deps=False))
    assert (await world.call("POST", "/apps", {"name": "built"}))[0] == 201
    status, build = await world.call(
        "POST", "/apps/built/builds", {"source_blob": {"url": str(repo), "version": sha}}
    )
    assert status == 201, build
    async with demo_server(world.up) as demo, chromium() as browser:
        page = await browser.new_page()
        page.set_default_timeout(60_000)
        await page.goto(
            f"{demo.url}/?app=built&source=build&process=build.{build['id']}&controls=search"
        )
        view = page.locator("#logs")
        await expect(view.locator(".ll-row", has_text="Python app detected")).to_have_count(1)
        await expect(view.locator(".ll-row", has_text="Released v2")).to_have_count(1)
        await expect(page.locator(".ll-source")).to_have_count(0)  # fixed: no filters shown
        await expect(page.locator(".ll-process")).to_have_count(0)
        kept = await texts(page)
        assert kept.count("-----> Released v2") == 1
        who = await view.locator(".ll-who").all_text_contents()
        assert set(who) == {f"slipway[build.{build['id']}]"}
