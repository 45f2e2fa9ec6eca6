"""The dashboard's pages with many apps: time to first byte of the apps list and of one
app's page, against the API's own apps list (the peer) on the same store in the same run.

The bench starts ``slipway up`` in this process (state in a temporary directory),
creates and deploys N apps (they sleep until a request, so no process runs),
signs in as the first admin, then times sequential requests over one
keep-alive connection. Printed: p50 and p95 of each, and the ratio of the
list's p95 to the API list's p95 (the goal: the list's p95 under 100 ms).

The live log view's latency (a line printed to visible in Chromium) belongs to
the live-logs module and is not measured here.

Run: .venv/bin/python bench/dashboard.py [--apps 200] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from agent.settings import AgentSettings  # noqa: E402
from control.up import Up  # noqa: E402
from tests.agent.conftest import ListSink  # noqa: E402
from tests.control.conftest import ADMIN_TOKEN, up_settings  # noqa: E402

APP = "import http.server, os\nprint('up')\n"


async def ttfb(session: aiohttp.ClientSession, url: str, n: int, **kw: object) -> list[float]:
    """Seconds to the response's first byte (headers parsed), for ``n`` sequential GETs."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        async with session.get(url, **kw) as response:  # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
            assert response.status in (200, 206), response.status
            await response.read()
    return times


def summary(name: str, times: list[float]) -> float:
    ordered = sorted(times)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[int(len(ordered) * 0.95) - 1] * 1000
    print(f"{name:<28} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
    return p95


async def main(apps: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        code = state / "code"
        code.mkdir()
        (code / "app.py").write_text(APP)
        sink = ListSink()
        settings = up_settings(state)
        # The agent's own default tick, not the tests' 10 ms (200 machines at 100 Hz would
        # be the bench measuring the agent).
        settings = dataclasses.replace(
            settings, agent=dataclasses.replace(settings.agent, tick=AgentSettings.tick)
        )
        up = Up(settings, app_sink=sink, router_sink=sink)
        await up.start()
        assert up.control is not None
        base = f"http://127.0.0.1:{up.control.port}"
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                for i in range(apps):
                    name = f"app-{i:04d}"
                    async with session.post(f"{base}/apps", json={"name": name}, headers=auth):
                        pass
                    release = {"artifact": str(code), "procfile": {"web": "python app.py"}}
                    async with session.post(
                        f"{base}/apps/{name}/releases", json=release, headers=auth
                    ) as reply:
                        assert reply.status == 201, await reply.text()
                async with session.get(f"{base}/dashboard/login") as reply:
                    token = re.search(r'name="csrf" value="([^"]+)"', await reply.text())
                    assert token is not None
                form = {
                    "user": "admin",
                    "password": up.control.first_admin_password or "",
                    "csrf": token.group(1),
                }
                async with session.post(f"{base}/dashboard/login", data=form) as reply:
                    assert reply.status == 200, reply.status
                await ttfb(session, f"{base}/dashboard/", 5)  # warm up
                print(f"{apps} apps, {requests} sequential requests each")
                listed = summary("dashboard apps list", await ttfb(
                    session, f"{base}/dashboard/", requests))  # fmt: skip
                summary("dashboard apps.json (live)", await ttfb(
                    session, f"{base}/dashboard/apps.json", requests))  # fmt: skip
                summary("dashboard app page", await ttfb(
                    session, f"{base}/dashboard/apps/app-0100", requests))  # fmt: skip
                peer = summary("API GET /apps (peer)", await ttfb(
                    session, f"{base}/apps", requests, headers=auth))  # fmt: skip
                print(f"apps list p95 / API list p95: {listed / peer:.2f}")
                print(f"goal p95 < 100 ms: {'met' if listed < 100 else 'NOT met'}")
        finally:
            await up.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.apps, args.requests))
