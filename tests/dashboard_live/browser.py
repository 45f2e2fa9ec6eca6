"""Chromium through Playwright, and the demo page beside a running ``slipway up``."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from control.up import Up
from tests.dashboard_live.demo import demo_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Playwright's expect() gives up after 5 s by default: too little for real processes and a
#: real browser on a loaded 2-core machine. tests/dashboard/conftest.py sets the same, but
#: only when that directory is collected too.
expect.set_options(timeout=20_000)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Demo:
    url: str
    app: web.Application


@contextlib.asynccontextmanager
async def demo_server(up: Up) -> AsyncIterator[Demo]:
    app = demo_app(up)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()  # the kernel's pick: no race
        port = runner.addresses[0][1]
        yield Demo(f"http://127.0.0.1:{port}", app)
    finally:
        await runner.cleanup()


async def texts(page: Page) -> list[str]:
    """Every line the log view keeps (not only the rows in the DOM), oldest first."""
    found: list[str] = await page.evaluate(
        """() => { const l = document.querySelector('#logs').liveLogs; const out = [];
        for (let i = l.ring.first; i < l.ring.next; i++) out.push(l.ring.get(i).text);
        return out; }"""
    )
    return found
