"""The review-app board in Chromium against ``slipway up`` with review apps: the webhook
to paste into GitHub, a signed pull request's app appearing with its URL and build, a plan
that failed with its reason, destroy from the board, and a closed pull request's app going
(control/dashboard/review_board.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Locator, Page, expect

from control.review.github import sign
from control.settings import BuildServerSettings, ReviewSettings
from control.up import Up
from tests.agent.conftest import ListSink
from tests.builds.apps import commit
from tests.control.conftest import up_settings
from tests.dashboard.conftest import World, screenshot
from tests.helpers import eventually
from tests.review.payloads import pull_request

SECRET = "board-secret-to-paste"
#: Bound on a review app being built and released (a build on a shared CPU).
SETTLE = 90.0
SERVER = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.send_header('Content-Length', '2')\n"
    "        self.end_headers(); self.wfile.write(b'ok')\n"
    "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = up_settings(
        tmp_path,
        builds=BuildServerSettings(root=str(tmp_path / "builds"), timeout=60),
        review=ReviewSettings(
            webhook_secret=SECRET, pipeline="shop", domain="review.test", staging_app="shop-staging"
        ),
    )
    sink = ListSink()
    up = Up(settings, app_sink=sink, router_sink=sink)
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(up, session)
    finally:
        await session.close()
        await up.stop()


async def deliver(world: World, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(SECRET.encode(), body),
    }
    async with world.session.post(
        world.base + "/github/webhooks", data=body, headers=headers
    ) as reply:
        assert reply.status in (200, 202), await reply.text()


async def row_in(page: Page, app: str, state: str | None) -> Locator | None:
    """The board's row of ``app`` in ``state`` after a reload (None for "no row")."""
    await page.reload()
    row = page.locator(f'#board tr[data-app="{app}"]')
    if state is None:
        return row if await row.count() == 0 else None
    return (
        row
        if await page.locator(f'#board tr[data-app="{app}"][data-state="{state}"]').count()
        else None
    )


async def test_a_pull_requests_app_appears_fails_with_a_reason_is_destroyed_and_goes(
    world: World, page: Page, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    sha = commit(repo, {"Procfile": "web: python server.py\n", "requirements.txt": "\n",
                        "server.py": SERVER})  # fmt: skip
    await world.sign_in(page)
    await page.get_by_role("link", name="Review apps").click()
    await expect(page.locator("#webhook-url")).to_have_text(world.base + "/github/webhooks")
    await page.get_by_text("Show the secret").click()
    await expect(page.locator("#repository pre.secret-shown")).to_have_text(SECRET)
    await expect(page.get_by_text("No open pull requests.")).to_be_visible()

    # A signed pull_request opens: its app appears, built and deployed, with its URL.
    await deliver(world, pull_request("opened", 7, head_sha=sha, clone_url=str(repo)))
    row = await eventually(lambda: row_in(page, "shop-pr-7", "deployed"), SETTLE, 0.5)
    await expect(row.get_by_role("link", name="pr-7.review.test")).to_be_visible()
    await expect(row.locator("td").nth(4)).to_contain_text("succeeded")
    await expect(row.locator("code")).to_have_text(sha[:12])
    # A pull request whose commit cannot be fetched: the row says why.
    await deliver(world, pull_request("opened", 8, head_sha="f" * 40, clone_url=str(repo)))
    failed = await eventually(lambda: row_in(page, "shop-pr-8", "failed"), SETTLE, 0.5)
    assert (await failed.locator("td.reason").inner_text()).strip()
    await screenshot(page, "review-board")

    # The last build's page is one click away.
    await row.locator("td").nth(4).get_by_role("link").click()
    await expect(page.locator("#build-status")).to_have_attribute("data-state", "succeeded")
    await page.go_back()
    # Rebuild from the board: a new build of the same commit, on its own page.
    row = await eventually(lambda: row_in(page, "shop-pr-7", "deployed"), SETTLE, 0.5)
    first_build = await row.locator("td").nth(4).get_by_role("link").inner_text()
    await row.get_by_role("button", name="Rebuild").click()
    await expect(page.locator(".flash")).to_contain_text("Rebuilding shop-pr-7")
    await expect(page.locator("#build-status")).not_to_have_attribute("data-state", "failed")
    assert first_build not in page.url
    await expect(page.locator("#live-logs .ll-row", has_text="Released")).to_have_count(
        1, timeout=int(SETTLE * 1000)
    )
    await page.goto(world.dashboard + "/review")

    # Closing the pull request destroys its app: the row goes.
    await deliver(world, pull_request("closed", 7, head_sha=sha, clone_url=str(repo)))
    await eventually(lambda: row_in(page, "shop-pr-7", None), SETTLE, 0.5)
    status, _ = await world.api("GET", "/apps/shop-pr-7")
    assert status == 404

    # Destroy from the board: a third pull request's app, then its Destroy button.
    await deliver(world, pull_request("opened", 9, head_sha=sha, clone_url=str(repo)))
    row = await eventually(lambda: row_in(page, "shop-pr-9", "deployed"), SETTLE, 0.5)
    await row.locator("summary", has_text="Destroy").click()
    await row.get_by_role("button", name="Destroy shop-pr-9").click()
    await expect(page.locator(".flash")).to_contain_text("Destroying shop-pr-9")
    await eventually(lambda: row_in(page, "shop-pr-9", None), SETTLE, 0.5)


async def test_only_open_review_apps_are_destroyed_from_the_board(world: World, page: Page) -> None:
    await world.api("POST", "/apps", {"name": "shop-staging"})
    await world.sign_in(page)
    await page.goto(world.dashboard + "/review")
    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    for app in ("shop-staging", "shop-pr-404", "no-such-app"):
        reply = await page.request.post(
            f"{world.dashboard}/review/{app}/destroy", form={"csrf": csrf}, max_redirects=0
        )
        assert reply.status == 404, app
    status, _ = await world.api("GET", "/apps/shop-staging")
    assert status == 200
