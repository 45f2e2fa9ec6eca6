"""live-logs.js and live-charts.js in Chromium, against ``slipway up`` and a real app."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.async_api import Dialog, Page, expect

from control.livelogs import LogsUpstream
from tests.conftest import free_port
from tests.dashboard_live.browser import Demo, chromium, demo_server, texts
from tests.dashboard_live.conftest import World
from tests.dashboard_live.demo import LAST_IDS, UPSTREAM
from tests.helpers import eventually

#: Playwright's own waits, in ms: generous, as 8 test runs share 2 cores.
WAIT = 15_000


@pytest.fixture
async def deployed(world: World, code: Path) -> World:
    await world.deploy(code)
    assert await world.get("/") == 200  # awake, so prints are quick
    return world


@pytest.fixture
async def demo(deployed: World) -> AsyncIterator[Demo]:
    async with demo_server(deployed.up) as running:
        yield running


@pytest.fixture
async def page(demo: Demo) -> AsyncIterator[Page]:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(WAIT)
        yield page


async def open_page(page: Page, demo: Demo, query: str = "") -> None:
    await page.goto(f"{demo.url}/?{query}")
    await expect(page.locator("#logs")).to_have_attribute("data-state", "open")


async def prints(world: World, text: str, n: int = 1) -> None:
    assert await world.get(f"/print?n={n}&text={quote(text)}") == 200


class TestTheLogView:
    async def test_a_line_the_app_prints_appears(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await open_page(page, demo)
        await prints(deployed, "hello from the app")
        row = page.locator(".ll-row", has_text="hello from the app")
        await expect(row).to_have_count(1)
        await expect(row.locator(".ll-who")).to_have_text("app[web.1]")
        # The router's line for that request is in the same view.
        await expect(page.locator(".ll-router", has_text="/print").first).to_be_visible()

    async def test_ten_thousand_lines_keep_the_dom_small(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await open_page(page, demo)
        # In batches the logs service's per-subscriber queue (1,000) holds: a bigger burst
        # is announced as dropped, by design (logs/ring.py).
        for batch in range(1, 21):
            await prints(deployed, "bulk line", n=500)
            await eventually(_counted(page, "bulk line", 500 * batch), 20)
        assert not [t for t in await texts(page) if "dropped" in t]
        rows = await page.locator(".ll-row").count()
        assert 10 < rows < 200, rows
        await expect(page.locator(".ll-row", has_text="bulk line").last).to_be_visible()
        # Scrolled to the top, the first lines are drawn, and still only a screenful.
        await page.locator(".ll-scroller").evaluate("s => { s.scrollTop = 0; }")
        await expect(page.locator(".ll-follow")).not_to_be_checked()
        first = page.locator(".ll-row").filter(has_text="app listening")
        await expect(first).to_have_count(1)
        assert await page.locator(".ll-row").count() < 200
        # The frame after a scroll is quick: only the rows in view were made.
        gap = await page.evaluate(
            """async () => { const s = document.querySelector('.ll-scroller');
            const t0 = performance.now(); s.scrollTop = s.scrollHeight / 2;
            await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
            return performance.now() - t0; }"""
        )
        assert gap < 500, gap
        # Searching marks the matches in the rows drawn only, and stays as quick.
        await page.fill(".ll-search", "bulk")
        await expect(page.locator(".ll-matches")).to_have_text(re.compile(r"^\d+ matches$"))
        counted = int((await page.locator(".ll-matches").inner_text()).split()[0])
        assert counted >= 10_000  # every app line, and the router's for the print requests
        await expect(page.locator(".ll-row mark").first).to_be_visible()
        assert await page.locator(".ll-row mark").count() < 200
        gap = await page.evaluate(
            """async () => { const s = document.querySelector('.ll-scroller');
            const t0 = performance.now(); s.scrollTop = s.scrollHeight / 3;
            await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
            return performance.now() - t0; }"""
        )
        assert gap < 500, gap

    async def test_the_ring_keeps_at_most_its_cap_and_lets_the_oldest_go(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        # App lines only: a router line for the print request may land among the last 300
        # and push one "late" line out of the cap (it made this test flaky).
        await open_page(page, demo, "cap=300&source=app")
        await prints(deployed, "early", n=200)
        await eventually(_counted(page, "early", 200), 20)
        await prints(deployed, "late", n=400)
        await eventually(_counted(page, "late", 300), 20)
        kept = await texts(page)
        assert len(kept) == 300
        assert "early" not in kept
        assert set(kept) == {"late"}
        await expect(page.locator("#logs")).to_have_attribute("data-count", "300")
        await expect(page.locator(".ll-row", has_text="late").last).to_be_visible()

    async def test_a_progress_line_shows_only_its_last_segment(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await open_page(page, demo)
        await prints(deployed, "fetching 10%\rfetching 50%\rfetching 100% done\r")
        row = page.locator(".ll-app", has_text="fetching")
        await expect(row.locator(".ll-text")).to_have_text("fetching 100% done")

    async def test_filters_by_source_process_and_search(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await open_page(page, demo)
        await prints(deployed, "apple pie")
        await prints(deployed, "banana split")
        await expect(page.locator(".ll-row", has_text="banana split")).to_have_count(1)
        await page.select_option(".ll-source", "router")
        await expect(page.locator(".ll-app")).to_have_count(0)
        assert await page.locator(".ll-router").count() >= 2
        await page.select_option(".ll-source", "")
        await page.fill(".ll-process", "web")
        await expect(page.locator(".ll-router")).to_have_count(0)
        await expect(page.locator(".ll-app", has_text="apple pie")).to_have_count(1)
        await page.fill(".ll-process", "")
        await page.fill(".ll-search", "BANANA")
        await expect(page.locator(".ll-row")).to_have_count(2)  # the app's line, the router's
        await expect(page.locator(".ll-row", has_text="apple")).to_have_count(0)

    async def test_a_fixed_source_asks_the_server_and_hides_that_control(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await prints(deployed, "only in the app stream")
        await open_page(page, demo, "source=router")
        await expect(page.locator(".ll-router").first).to_be_visible()
        await expect(page.locator(".ll-source")).to_have_count(0)
        assert not [t for t in await texts(page) if "only in the app stream" in t]


class TestSearchAndAssistiveTech:
    async def test_matches_are_marked_counted_and_enter_goes_to_the_next_one(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await open_page(page, demo, "source=app")  # no router lines: the count is exact
        await prints(deployed, "x Needle y NEEDLE", n=300)
        await eventually(_counted(page, "x Needle y NEEDLE", 300), 20)
        search = page.locator(".ll-search")
        await search.fill("needle")
        matches = page.locator(".ll-matches")
        await expect(matches).to_have_text("600 matches")
        await expect(page.locator(".ll-row")).not_to_have_count(0)
        # Two marks in every row drawn, case kept; only the rows drawn have any.
        drawn = await page.locator(".ll-row").count()
        assert drawn < 100, drawn
        assert await page.locator(".ll-row mark").count() == 2 * drawn
        assert set(await page.locator(".ll-row mark").all_text_contents()) == {"Needle", "NEEDLE"}
        in_sight = await _in_sight(page)
        assert len(in_sight) > 10
        assert all(row["marks"] == 2 for row in in_sight), in_sight
        # From the top, Enter goes to the first match in sight, then on through the line.
        await page.locator(".ll-scroller").evaluate("s => { s.scrollTop = 0; }")
        await expect(page.locator('.ll-row[aria-posinset="1"]')).to_have_count(1)
        await search.press("Enter")
        await expect(matches).to_have_text("1 of 600 matches")
        current = page.locator("mark.ll-current")
        await expect(current).to_have_count(1)
        await expect(current).to_have_text("Needle")
        await search.press("Enter")
        await expect(matches).to_have_text("2 of 600 matches")
        await expect(current).to_have_text("NEEDLE")
        # Scrolled to the end by hand: the next match's row is not drawn; Enter brings it.
        await page.locator(".ll-scroller").evaluate("s => { s.scrollTop = s.scrollHeight; }")
        await expect(page.locator('.ll-row[aria-posinset="2"]')).to_have_count(0)
        await search.press("Enter")
        await expect(matches).to_have_text("3 of 600 matches")
        await expect(page.locator(".ll-follow")).not_to_be_checked()  # it stays put
        row = page.locator(".ll-row", has=current)
        await expect(row).to_have_attribute("aria-posinset", "2")
        await expect(current).to_be_in_viewport()
        assert await _visible_in_scroller(page, "mark.ll-current")
        # Shift+Enter goes back, and past the first match wraps to the last (not drawn).
        await search.press("Shift+Enter")
        await search.press("Shift+Enter")
        await expect(matches).to_have_text("1 of 600 matches")
        await search.press("Shift+Enter")
        await expect(matches).to_have_text("600 of 600 matches")
        await expect(row).to_have_attribute("aria-posinset", "300")
        await expect(row).to_have_attribute("aria-setsize", "300")
        await expect(current).to_be_in_viewport()
        assert await _visible_in_scroller(page, "mark.ll-current")
        # Another search starts over.
        await search.fill("y need")
        await expect(matches).to_have_text("300 matches")
        await expect(current).to_have_count(0)

    async def test_hostile_lines_render_as_text_marked_or_not(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        dialogs: list[str] = []

        async def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            await dialog.dismiss()  # else the page would block on it, and the test hang

        page.on("dialog", on_dialog)
        hostile = [
            '<img src=x onerror="window.pwned=1;alert(1)">',
            "</mark><script>window.pwned=2;alert(2)</script><mark>",
            "<b onmouseover=alert(3)>bold</b>&lt;&amp;",
        ]
        await open_page(page, demo, "source=app")
        for line in hostile:
            await prints(deployed, line)
        await eventually(_counted(page, hostile[-1], 1), 20)
        texts_shown = page.locator(".ll-app .ll-text")
        await expect(texts_shown).to_have_text(["app listening", *hostile])
        # Marked: "<" occurs 1 + 4 + 2 times; the marks split the tags' own characters.
        await page.fill(".ll-search", "<")
        await expect(page.locator(".ll-matches")).to_have_text("7 matches")
        await expect(page.locator(".ll-text mark")).to_have_count(7)
        assert set(await page.locator(".ll-text mark").all_text_contents()) == {"<"}
        await expect(texts_shown).to_have_text(hostile)
        await page.fill(".ll-search", "mark>")
        await expect(page.locator(".ll-text mark")).to_have_count(2)
        await page.locator(".ll-search").press("Enter")
        await expect(page.locator("mark.ll-current")).to_have_text("mark>")
        await expect(texts_shown).to_have_text([hostile[1]])
        await page.locator(".ll-row").first.hover()
        await asyncio.sleep(0.5)  # an onerror would have fired by now (src=x fails at once)
        for tag in ("img", "script", "b", "mark mark"):
            assert await page.locator(f"#logs {tag}").count() == 0, tag
        assert await page.evaluate("window.pwned") is None
        assert dialogs == []

    async def test_rows_carry_their_true_position_and_keep_visual_order_in_the_dom(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await open_page(page, demo, "source=app")
        await prints(deployed, "some line", n=400)
        await eventually(_counted(page, "some line", 400), 20)
        scroller = page.locator(".ll-scroller")
        await expect(scroller).to_have_attribute("role", "log")
        await expect(scroller).to_have_attribute("aria-live", "off")
        await expect(page.locator(".ll-rows")).to_have_attribute("role", "list")
        await expect(page.locator(".ll-row").last).to_have_attribute("aria-posinset", "401")
        await _assert_rows_in_order(page, setsize=401)
        # Scrolling up draws rows above the ones in the DOM: they go before them.
        for top in (4000, 3700, 3300, 2000, 1990):
            await scroller.evaluate(
                """(s, top) => new Promise(r => { s.scrollTop = top;
                requestAnimationFrame(() => requestAnimationFrame(r)); })""",
                top,
            )
            await _assert_rows_in_order(page, setsize=401)
        # And a search narrows the set the positions count in.
        await page.fill(".ll-search", "listening")
        await expect(page.locator(".ll-row")).to_have_count(1)
        await expect(page.locator(".ll-row")).to_have_attribute("aria-setsize", "1")
        await expect(page.locator(".ll-row")).to_have_attribute("aria-posinset", "1")


class TestResume:
    async def test_a_cut_connection_resumes_without_gaps_or_duplicates(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await open_page(page, demo)
        await prints(deployed, "before the cut", n=50)
        await expect(page.locator(".ll-row", has_text="before the cut").last).to_be_visible()
        cut = await page.evaluate("fetch('/cut', {method: 'POST'}).then(r => r.json())")
        assert cut["cut"] == 1
        await prints(deployed, "after the cut", n=50)
        await eventually(_counted(page, "after the cut", 50), 20)
        kept = await texts(page)
        assert kept.count("before the cut") == 50
        assert kept.count("after the cut") == 50
        resumed_from = [i for i in demo.app[LAST_IDS] if i is not None]
        assert resumed_from, demo.app[LAST_IDS]  # the reconnect named the last line it had

    async def test_when_the_relay_fails_the_view_retries_and_resumes_from_its_last_line(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await open_page(page, demo)
        await prints(deployed, "before the outage")
        await expect(page.locator(".ll-row", has_text="before the outage")).to_have_count(1)
        # The logs service "goes away": the relay answers 502, EventSource gives up.
        demo.app[UPSTREAM]["logs"] = LogsUpstream(f"http://127.0.0.1:{free_port()}", "x")
        await page.evaluate("fetch('/cut', {method: 'POST'})")
        await expect(page.locator("#logs")).to_have_attribute("data-state", "reconnecting")
        await expect(page.locator(".ll-status")).to_contain_text("retrying in")
        await prints(deployed, "during the outage", n=5)
        del demo.app[UPSTREAM]["logs"]  # back
        await expect(page.locator("#logs")).to_have_attribute("data-state", "open", timeout=20_000)
        await eventually(_counted(page, "during the outage", 5), 20)
        assert (await texts(page)).count("before the outage") == 1

    async def test_coming_back_from_the_background_reopens_the_stream(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        await open_page(page, demo)
        await prints(deployed, "while visible")
        await expect(page.locator(".ll-row", has_text="while visible")).to_have_count(1)
        await _visibility(page, hidden=True)
        await prints(deployed, "while hidden", n=3)
        await asyncio.sleep(1.2)
        await _visibility(page, hidden=False)
        await expect(page.locator("#logs")).to_have_attribute("data-last-resync", "visible")
        await expect(page.locator("#logs")).to_have_attribute("data-state", "open")
        await eventually(_counted(page, "while hidden", 3), 20)
        assert (await texts(page)).count("while visible") == 1
        assert demo.app[LAST_IDS][-1] is not None


class TestTheCharts:
    async def test_charts_draw_the_traffic_and_the_events(
        self, deployed: World, demo: Demo, page: Page
    ) -> None:
        for path in ("/", "/status/404", "/close"):
            await deployed.get(path)
        await open_page(page, demo)
        charts = page.locator("#charts")
        await expect(charts).to_have_attribute("data-state", "ok")
        await expect(charts.locator("svg.lc-chart")).to_have_count(4)
        await expect(charts.locator("svg title").first).to_have_text(
            "Requests per minute by status class"
        )
        await expect(charts.locator('rect[data-series="4xx"]')).to_have_count(1)
        await expect(charts.locator('rect[data-series="H13"]')).to_have_count(1)
        await expect(
            charts.locator('[data-panel="latency"] [data-series="p99"]')
        ).not_to_have_count(0)
        # One deploy and one wake, on every chart's time axis.
        await expect(charts.locator(".lc-event-deploy")).to_have_count(4)
        await expect(charts.locator(".lc-event-wake")).to_have_count(4)
        # The table fallback holds the same numbers.
        cells = await charts.locator("tbody tr td:nth-child(2)").all_text_contents()
        assert sum(map(int, cells)) == 2  # "/" twice: the fixture's wake and this test's
        # Live: more traffic shows at the next refresh (data-refresh=2 s on this page).
        before = await charts.get_attribute("data-updated")
        await expect(charts.locator('rect[data-series="3xx"]')).to_have_count(0)
        await deployed.get("/status/302")
        await expect(charts.locator('rect[data-series="3xx"]')).to_have_count(1)
        assert await charts.get_attribute("data-updated") != before


def _counted(page: Page, text: str, n: int) -> Callable[[], Awaitable[bool]]:
    """A check for ``eventually``: the view keeps at least ``n`` lines reading ``text``."""

    async def check() -> bool:
        return (await texts(page)).count(text) >= n

    return check


async def _visibility(page: Page, *, hidden: bool) -> None:
    await page.evaluate(
        """hidden => {
        Object.defineProperty(document, 'hidden', {value: hidden, configurable: true});
        Object.defineProperty(document, 'visibilityState',
            {value: hidden ? 'hidden' : 'visible', configurable: true});
        document.dispatchEvent(new Event('visibilitychange')); }""",
        hidden,
    )


async def _in_sight(page: Page) -> list[dict[str, int]]:
    """The rows at least partly inside the scroller's box, with their marks."""
    found: list[dict[str, int]] = await page.evaluate(
        """() => { const box = document.querySelector('.ll-scroller').getBoundingClientRect();
        return [...document.querySelectorAll('.ll-row')].filter(r => {
            const b = r.getBoundingClientRect(); return b.bottom > box.top && b.top < box.bottom;
        }).map(r => ({pos: Number(r.getAttribute('aria-posinset')),
                      marks: r.querySelectorAll('mark').length})); }"""
    )
    return found


async def _visible_in_scroller(page: Page, selector: str) -> bool:
    inside: bool = await page.evaluate(
        """sel => { const box = document.querySelector('.ll-scroller').getBoundingClientRect();
        const b = document.querySelector(sel).getBoundingClientRect();
        return b.top >= box.top && b.bottom <= box.bottom && b.left >= box.left
            && b.right <= box.right; }""",
        selector,
    )
    return inside


async def _assert_rows_in_order(page: Page, setsize: int) -> None:
    """DOM order is visual order, and positions are consecutive and match the offsets."""
    rows = await page.evaluate(
        """() => [...document.querySelectorAll('.ll-row')].map(r => ({
            role: r.getAttribute('role'), pos: Number(r.getAttribute('aria-posinset')),
            size: Number(r.getAttribute('aria-setsize')), top: r.getBoundingClientRect().top,
            offset: new DOMMatrix(getComputedStyle(r).transform).m42 }))"""
    )
    assert 10 < len(rows) < 100, len(rows)
    assert {r["role"] for r in rows} == {"listitem"}
    assert {r["size"] for r in rows} == {setsize}
    tops = [r["top"] for r in rows]
    assert tops == sorted(tops), tops
    positions = [r["pos"] for r in rows]
    assert positions == list(range(positions[0], positions[0] + len(rows))), positions
    assert all(r["offset"] == (r["pos"] - 1) * 18 for r in rows), rows
