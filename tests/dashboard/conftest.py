"""``slipway up`` with the dashboard, and Chromium (Debian's, through Playwright) to drive it.

Screenshots go to $SLIPWAY_ARTIFACTS or tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from control.up import Up
from tests.agent.conftest import ListSink
from tests.control.conftest import (  # noqa: F401 (db_url, pg_scratch, pg_url: fixtures)
    ADMIN_TOKEN,
    db_url,
    pg_scratch,
    pg_url,
    up_settings,
)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SLIPWAY_ARTIFACTS") or Path(__file__).parents[1] / "artifacts")
#: Bound on one browser wait (real processes and a real browser on a shared CPU).
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


class World:
    def __init__(self, up: Up, session: aiohttp.ClientSession) -> None:
        assert up.control is not None
        assert up.control.first_admin_password is not None
        self.up = up
        self.control = up.control
        self.session = session
        self.password = up.control.first_admin_password
        self.base = f"http://127.0.0.1:{up.control.port}"
        self.dashboard = self.base + "/dashboard"
        self.router = f"http://127.0.0.1:{up.router.port}"

    async def api(
        self, method: str, path: str, body: object = None, token: str = ADMIN_TOKEN
    ) -> tuple[int, object]:
        async with self.session.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, await response.json()

    async def sign_in(self, page: Page, user: str = "admin", password: str | None = None) -> None:
        await page.goto(self.dashboard + "/login")
        await page.get_by_label("User").fill(user)
        await page.get_by_label("Password").fill(password or self.password)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(self.dashboard + "/")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    sink = ListSink()
    up = Up(up_settings(tmp_path), app_sink=sink, router_sink=sink)
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(up, session)
        assert not up.failed.is_set()
    finally:
        await session.close()
        await up.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/services does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    context.set_default_timeout(WAIT_MS)
    opened = await context.new_page()
    try:
        yield opened
    finally:
        await context.close()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def keep_in_docs(path: Path, name: str) -> None:
    """The one screenshot kept in the repository (docs/), refreshed when asked for
    (SLIPWAY_DOCS_SCREENSHOTS=1), so an ordinary test run leaves the work tree clean."""
    if os.environ.get("SLIPWAY_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(path, Path(__file__).parents[2] / "docs" / name)
