"""The app page's add-on health, kept current without a reload: the ``addon-health``
endpoint (the page's own ``read_health`` and ``render``, under the page's access rules)
against a real control plane and exporter, and live-health.js in Chromium turning a cell
amber when a session is left idle in a transaction.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psycopg
from playwright.async_api import Page, Request, expect

from control.dashboard.addon_health import AMBER, GREEN
from control.dashboard.app_page import HEALTH_REFRESH
from exporters.service import Exporter
from tests.control.server import Server
from tests.dashboard import test_addon_health as base
from tests.dashboard.test_addon_health import PASSWORD, api, health_cell, overall, sign_in
from tests.exporters.conftest import next_round
from tests.helpers import eventually

World = tuple[Server, dict[str, Any], Exporter]

# That file's world: a control server with the add-ons and a collaborator, the real exporter.
exporter_port = base.exporter_port
with_exporter = base.with_exporter
exporter_world = base.exporter_world

#: Bound on the exporter showing news it was asked a round for (its poll timeout is 15 s).
NEWS = 40.0


def health_url(server: Server, app: str = "shop") -> str:
    return f"{server.url}/dashboard/apps/{app}/addon-health"


def states_reader(
    session: aiohttp.ClientSession, server: Server, exporter: Exporter
) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def read() -> dict[str, Any]:
        next_round(exporter)  # this read, or one of the next, shows the news
        async with session.get(health_url(server)) as reply:
            assert reply.status == 200
            assert reply.headers["Cache-Control"] == "no-store"
            body: dict[str, Any] = await reply.json()
            return body["addons"]

    return read


async def test_the_endpoint_gives_the_pages_cells_to_whoever_may_see_the_page(
    exporter_world: World,
) -> None:
    server, addons, exporter = exporter_world
    pg, cache = addons["postgres"]["name"], addons["redis"]["name"]
    api(server, "POST", "/apps", {"name": "other"})  # not the collaborator's
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as anonymous,
        anonymous.get(health_url(server), allow_redirects=False) as reply,
    ):
        assert reply.status in (302, 303)
        assert "/dashboard/login" in reply.headers["Location"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await sign_in(session, server.url)  # collab, on shop only
        for app in ("other", "no-such-app"):
            async with session.get(f"{server.url}/dashboard/apps/{app}") as reply:
                assert reply.status == 404
            async with session.get(health_url(server, app)) as reply:
                assert reply.status == 404  # as the page: another team's app is no app
        read = states_reader(session, server, exporter)

        async def pg_read() -> dict[str, Any] | None:
            found = await read()
            return found if "connections:" in found[pg]["html"] else None

        found = await eventually(pg_read, timeout=NEWS, interval=0.2)
        assert set(found) == {pg, cache}
        assert "idle in transaction: 0" in found[pg]["html"]
        assert overall(found[pg]["html"]) == found[pg]["state"]
        assert found[cache]["state"] == "unknown"
        assert "no health source configured" in found[cache]["html"]
        async with session.get(f"{server.url}/dashboard/apps/shop") as reply:
            page_cell = health_cell(await reply.text(), cache)
        assert page_cell == found[cache]["html"]  # one renderer for the page and the endpoint

        url = api(server, "GET", "/apps/shop/config-vars")["DATABASE_URL"]
        with psycopg.connect(url) as conn:
            conn.execute("SELECT 1")  # a transaction is open, and stays idle

            async def amber() -> bool:
                cell = (await read())[pg]
                return cell["state"] == AMBER and "idle in transaction: 1" in cell["html"]

            await eventually(amber, timeout=NEWS, interval=0.2)
            conn.rollback()


async def test_the_cell_turns_amber_without_a_reload_and_waits_while_the_tab_is_hidden(
    exporter_world: World, page: Page
) -> None:
    server, addons, exporter = exporter_world
    pg = addons["postgres"]["name"]
    url = api(server, "GET", "/apps/shop/config-vars")["DATABASE_URL"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await sign_in(session, server.url)
        read = states_reader(session, server, exporter)

        async def state_is(wanted: str) -> bool:
            cell = (await read())[pg]
            return "connections:" in cell["html"] and cell["state"] == wanted

        # The exporter has read the add-on, green, before the page is opened.
        await eventually(lambda: state_is(GREEN), timeout=NEWS, interval=0.2)

        await page.goto(server.url + "/dashboard/login")
        await page.get_by_label("User").fill("collab")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(server.url + "/dashboard/")
        await page.goto(server.url + "/dashboard/apps/shop#addons")
        section = page.locator("section#addons")
        badge = page.locator(f'td.addon-health[data-addon="{pg}"] span[data-health]')
        await expect(badge).to_have_attribute("data-health", GREEN)
        await expect(section).to_have_attribute("data-live", "on")
        await page.evaluate("window.sameDocument = true")  # gone if the page reloads

        with psycopg.connect(url) as conn:
            conn.execute("SELECT 1")  # a transaction is open, and stays idle
            await eventually(lambda: state_is(AMBER), timeout=NEWS, interval=0.2)
            # The page's own round (every HEALTH_REFRESH s) brings it, no reload.
            await expect(badge).to_have_attribute(
                "data-health", AMBER, timeout=(HEALTH_REFRESH + 15) * 1000
            )
            cell = page.locator(f'td.addon-health[data-addon="{pg}"]')
            await expect(cell).to_contain_text("idle in transaction: 1")
            assert await page.evaluate("window.sameDocument") is True

            # Hidden, the tab stops asking; visible again, it asks at once.
            asked: list[str] = []

            def note(request: Request) -> None:
                if "addon-health" in request.url:
                    asked.append(request.url)

            page.on("request", note)
            await page.evaluate(
                "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
                "Object.defineProperty(document, 'visibilityState', "
                "{value: 'hidden', configurable: true});"
                "document.dispatchEvent(new Event('visibilitychange'))"
            )
            await expect(section).to_have_attribute("data-live", "paused")
            conn.rollback()
        await eventually(lambda: state_is(GREEN), timeout=NEWS, interval=0.2)
        await page.wait_for_timeout(1000)
        await expect(badge).to_have_attribute("data-health", AMBER)  # not asked while hidden
        assert asked == []
        await page.evaluate(
            "delete document.hidden; delete document.visibilityState;"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
        # At once: well within one refresh interval.
        await expect(badge).to_have_attribute(
            "data-health", GREEN, timeout=(HEALTH_REFRESH - 5) * 1000
        )
        await expect(section).to_have_attribute("data-live", "on")
        assert len(asked) == 1
        assert re.search(r"/dashboard/apps/shop/addon-health$", asked[0])
        assert await page.evaluate("window.sameDocument") is True
