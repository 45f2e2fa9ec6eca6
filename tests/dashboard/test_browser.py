"""The dashboard in Chromium against ``slipway up`` with a real app: sign in, the apps list,
deploy, sleep and wake through the router, a config change and its release, a rollback."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from playwright.async_api import Page, expect

from tests.control.test_release_e2e import APP, HOST
from tests.dashboard.conftest import World, screenshot


async def deploy(world: World, tmp_path: Path) -> None:
    code = tmp_path / "hello"
    code.mkdir()
    (code / "app.py").write_text(APP)
    status, body = await world.api(
        "POST",
        "/apps/hello/releases",
        {"artifact": str(code), "procfile": {"web": "exec python3 app.py"}},
    )
    assert status == 201, body


async def keep_requesting(world: World) -> None:
    """Requests through the router, as visitors would send them, until cancelled."""
    while True:
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            async with world.session.get(world.router + "/", headers={"Host": HOST}) as reply:
                await reply.read()
        await asyncio.sleep(0.3)


async def test_an_admin_creates_deploys_wakes_configures_and_rolls_back_an_app(
    world: World, page: Page, tmp_path: Path
) -> None:
    await page.goto(world.dashboard + "/")
    await expect(page).to_have_url(world.dashboard + "/login?next=/dashboard/")
    await screenshot(page, "login")
    await world.sign_in(page)
    await expect(page.get_by_role("heading", name="Apps")).to_be_visible()
    await expect(page.get_by_text("No apps yet.")).to_be_visible()

    # Create the app from the list's form; its page opens.
    await page.get_by_label("New app").fill("hello")
    await page.get_by_role("button", name="Create app").click()
    await page.wait_for_url(f"{world.dashboard}/apps/hello#releases")
    await expect(page.locator(".flash")).to_contain_text("Created hello")
    await expect(page.locator("#app-state")).to_have_attribute("data-state", "stopped")

    # Deploy the directory with the API, as `slipway deploy` does; the list shows v2.
    await deploy(world, tmp_path)
    await page.goto(world.dashboard + "/")
    row = page.locator('tr[data-app="hello"]')
    await expect(row.locator("td.release")).to_contain_text("v2")
    # A released app sleeps until its first request.
    await expect(row.locator("td.state")).to_have_attribute("data-state", "asleep")
    await screenshot(page, "apps-asleep")

    # Requests through the router wake it: the list shows it up, without a reload.
    visitors = asyncio.create_task(keep_requesting(world))
    try:
        await expect(row.locator("td.state")).to_have_attribute("data-state", "up")
        await expect(row.locator("td.last-request time")).to_be_visible()
        await expect(row.locator("td.state")).to_contain_text("idle")
        await screenshot(page, "apps")
    finally:
        visitors.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await visitors

    # Idle after 2 s (the formation form): with no more requests it goes back to sleep.
    await page.goto(world.dashboard + "/apps/hello#formation")
    await page.get_by_label("Idle after (s)").fill("2")
    await page.get_by_role("button", name="Scale").click()
    await expect(page.locator(".flash")).to_contain_text("Formation of web updated")
    await expect(page.locator("#app-state")).to_have_attribute("data-state", "asleep")
    await expect(page.locator("#activity")).to_contain_text("formation.update")

    # A config var: the diff first, then the release it makes.
    await page.goto(world.dashboard + "/apps/hello#config")
    await page.get_by_label("Name", exact=True).fill("GREETING")
    await page.get_by_label("Value", exact=True).fill("bonjour")
    await page.get_by_role("button", name="Add…").click()
    await expect(page.get_by_role("heading", name="Review config changes")).to_be_visible()
    diff = page.locator("table.diff tr.added")
    await expect(diff).to_contain_text("GREETING")
    await expect(diff).not_to_contain_text("bonjour")  # masked until revealed
    await page.get_by_role("button", name="Reveal values").click()
    await expect(diff).to_contain_text("bonjour")
    await screenshot(page, "config-diff")
    await page.get_by_role("button", name="Release these changes").click()
    await expect(page.locator(".flash")).to_contain_text("release v3")
    releases = page.locator("#releases tbody")
    await expect(releases.locator("tr").first).to_contain_text("v3")
    await expect(releases.locator("tr").first).to_contain_text("user:admin")
    await expect(page.locator("#activity")).to_contain_text("release.create")
    status, config = await world.api("GET", "/apps/hello/config-vars")
    assert status == 200
    assert config == {"GREETING": "bonjour"}
    await screenshot(page, "app")  # docs/dashboard-app.png, with charts and logs: test_live_views

    # The initial release has no code: nothing to roll back to.
    await expect(page.get_by_role("link", name="Roll back to v1…")).to_have_count(0)
    # Roll back to v2: the confirmation says GREETING goes; then v4 runs without it.
    await page.get_by_role("link", name="Roll back to v2…").click()
    await expect(page.get_by_role("heading", name="Roll back hello to v2?")).to_be_visible()
    await expect(page.locator("table.diff tr.removed")).to_contain_text("GREETING")
    await screenshot(page, "rollback")
    await page.get_by_role("button", name="Roll back to v2").click()
    await expect(page.locator(".flash")).to_contain_text("Rolled back: release v4")
    status, config = await world.api("GET", "/apps/hello/config-vars")
    assert status == 200
    assert config == {}
    status, body = await world.api("GET", "/apps/hello/releases/4")
    assert status == 200
    assert isinstance(body, dict)
    assert body["user"] == {"actor": "user:admin"}


SLOW_APP = (
    "import time\ntime.sleep(4)  # a slow boot: the wake lasts long enough to be seen\n" + APP
)


async def test_the_list_shows_an_app_asleep_then_waking_then_up(
    world: World, page: Page, tmp_path: Path
) -> None:
    code = tmp_path / "slow"
    code.mkdir()
    (code / "app.py").write_text(SLOW_APP)
    await world.api("POST", "/apps", {"name": "hello"})
    status, body = await world.api(
        "POST",
        "/apps/hello/releases",
        {"artifact": str(code), "procfile": {"web": "exec python3 app.py"}},
    )
    assert status == 201, body
    await world.sign_in(page)
    state = page.locator('tr[data-app="hello"] td.state')
    await expect(state).to_have_attribute("data-state", "asleep")

    async def visit() -> int:
        async with world.session.get(world.router + "/", headers={"Host": HOST}) as reply:
            await reply.read()
            return reply.status

    # One visitor: the router holds the request while the app wakes.
    request = asyncio.create_task(visit())
    try:
        await expect(state).to_have_attribute("data-state", "waking")
        await screenshot(page, "apps-waking")
        await expect(state).to_have_attribute("data-state", "up")
        assert await request == 200
    finally:
        request.cancel()
