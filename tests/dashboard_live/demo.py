"""A test page embedding live-logs.js and live-charts.js, served beside ``slipway up``.

Not the product's dashboard: the smallest page that mounts the two modules the way
the dashboard does (control/dashboard/static), with the same server-side pieces
behind it: ``control.livelogs.relay`` for the SSE stream and the chart payloads of
``control/api/live.py``. It checks no session (the dashboard does); ``/cut`` closes
every relayed stream mid-flight, as a flaky network would.
"""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web

from control import livelogs
from control.api import live
from control.rollup.source import RollupSource
from control.up import Up
from tests.control.conftest import ADMIN_TOKEN

STATIC = Path(__file__).resolve().parents[2] / "control" / "dashboard" / "static"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>live pieces of {app}</title>
<link rel="stylesheet" href="/static/live-logs.css">
<link rel="stylesheet" href="/static/live-charts.css"></head>
<body>
<h1>{app}</h1>
<section id="charts" data-live-charts data-metrics-url="/charts/{app}/requests"
  data-events-url="/charts/{app}/events" data-span="{span}" data-refresh="{refresh}"
  data-label="{app}"></section>
<section id="logs" data-live-logs data-stream-url="/logs/{app}" data-lines="{lines}"
  data-label="Logs of {app}" {extra}></section>
<script type="module" src="/static/live-logs.js"></script>
<script type="module" src="/static/live-charts.js"></script>
</body></html>
"""

UP = web.AppKey("up", Up)
STREAMS: web.AppKey[list[web.Request]] = web.AppKey("streams")
#: The Last-Event-ID (header or query) each stream request came with, None for a first one.
#: ``UPSTREAM["logs"]`` set sends the relay elsewhere (a service down, a wrong token).
UPSTREAM: web.AppKey[dict[str, livelogs.LogsUpstream]] = web.AppKey("upstream")
LAST_IDS: web.AppKey[list[str | None]] = web.AppKey("last_ids")


def demo_app(up: Up) -> web.Application:
    app = web.Application()
    app[UP] = up
    app[STREAMS] = []
    app[LAST_IDS] = []
    app[UPSTREAM] = {}
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/logs/{app}", logs)
    app.router.add_post("/cut", cut)
    app.router.add_get("/charts/{app}/requests", chart_points)
    app.router.add_get("/charts/{app}/events", chart_events)
    livelogs.install(app)
    return app


async def page(request: web.Request) -> web.Response:
    q = request.query
    extra = " ".join(
        f'data-{k}="{q[k]}"' for k in ("source", "process", "cap", "controls") if k in q
    )
    html = PAGE.format(
        app=q.get("app", "hello"), lines=q.get("lines", "1000"), span=q.get("span", "600"),
        refresh=q.get("refresh", "2"), extra=extra,
    )  # fmt: skip
    return web.Response(text=html, content_type="text/html")


async def static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if not name.startswith("live-") or "/" in name:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name)


async def logs(request: web.Request) -> web.StreamResponse:
    up = request.app[UP]
    assert up.logs is not None
    request.app[LAST_IDS].append(
        request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    )
    upstream = request.app[UPSTREAM].get("logs") or livelogs.LogsUpstream(
        f"http://127.0.0.1:{up.logs.http_port}", ADMIN_TOKEN
    )
    request.app[STREAMS].append(request)
    try:
        return await livelogs.relay(request, app=request.match_info["app"], upstream=upstream)
    finally:
        request.app[STREAMS].remove(request)


async def cut(request: web.Request) -> web.Response:
    streams = list(request.app[STREAMS])
    for stream in streams:
        if stream.transport is not None:
            stream.transport.close()
    return web.json_response({"cut": len(streams)})


def _control(request: web.Request) -> Up:
    up = request.app[UP]
    assert up.control is not None
    return up


async def chart_points(request: web.Request) -> web.Response:
    up = _control(request)
    payload = await live.requests_payload(
        RollupSource(up.rollup), request.match_info["app"], request.query, now=time.time()
    )
    return web.json_response(payload)


async def chart_events(request: web.Request) -> web.Response:
    up = _control(request)
    assert up.control is not None
    payload = await live.events_payload(
        up.control.control, RollupSource(up.rollup), request.match_info["app"], request.query,
        now=time.time(),
    )  # fmt: skip
    return web.json_response(payload)
