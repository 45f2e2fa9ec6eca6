"""The app page's live parts for a signed-in user: its logs, its chart data, a build's page.

Each handler checks the session may see the app first (``visible_app``: 404 alike for
another team's app and for none), then calls the same code the bearer-token API does:
``control.livelogs.relay`` for the logs (the browser never holds a token; the relay uses
the control plane's own, passes only the stream parameters and ``Last-Event-ID``, and
answers 502 when the logs service is down or refuses), ``requests_payload`` /
``events_payload`` of control/api/live.py for the charts, and the app page's own
``read_health`` and ``render`` for the add-on health cells (live-health.js).
"""

from __future__ import annotations

import time

from aiohttp import web

from control.api.live import events_payload, requests_payload
from control.dashboard.addon_health import UNKNOWN, read_health
from control.dashboard.addon_health import render as render_health
from control.dashboard.app_page import app_path, visible_app
from control.dashboard.embeds import logs_embed
from control.dashboard.html import ROOT, Html, ago, h, page
from control.dashboard.web import DASHBOARD, flash_of, session_of
from control.errors import NotFound
from control.livelogs import install, relay
from control.models import App, Build
from control.rollup.source import RequestSource


async def logs_stream(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    app = await visible_app(request)
    if dash.logs is None:
        raise web.HTTPServiceUnavailable(
            reason="no logs service is configured here: set SLIPWAY_LOGS_URL"
        )
    return await relay(request, app=app.name, upstream=dash.logs)


def _source(request: web.Request) -> RequestSource:
    source = request.app[DASHBOARD].requests
    if source is None:
        raise NotFound(
            "request charts are not configured here: under `slipway up` they come from the "
            "routers; on Kubernetes set SLIPWAY_PROMETHEUS_URL",
            id="charts_unavailable",
        )
    return source


async def chart_points(request: web.Request) -> web.StreamResponse:
    app = await visible_app(request)
    payload = await requests_payload(_source(request), app.name, request.query, now=time.time())
    return web.json_response(payload, headers={"Cache-Control": "no-store"})


async def chart_events(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    app = await visible_app(request)
    payload = await events_payload(
        dash.control, dash.requests, app.name, request.query, now=time.time()
    )
    return web.json_response(payload, headers={"Cache-Control": "no-store"})


async def addon_health(request: web.Request) -> web.StreamResponse:
    """The app's add-on health cells, as the page renders them (``read_health``, then
    ``render``), by add-on name: what live-health.js puts in place while the tab is visible."""
    dash = request.app[DASHBOARD]
    app = await visible_app(request)
    addons = await dash.control.list_addons(app.name)
    health = await read_health(dash.addon_health, app.name, addons)
    cells = {
        a.name: {
            "state": found.state if (found := health.get(a.name)) else UNKNOWN,
            "html": str(render_health(found)),
        }
        for a in addons
    }
    return web.json_response({"addons": cells}, headers={"Cache-Control": "no-store"})


def _build_id(app: App, request: web.Request) -> str:
    build_id = request.match_info["build"]
    if not build_id.isalnum() or len(build_id) > 64:
        raise NotFound(f"{app.name} has no build {build_id!r}", id="build_not_found")
    return build_id


async def _read_build(request: web.Request) -> tuple[App, Build]:
    control = request.app[DASHBOARD].control
    app = await visible_app(request)
    build_id = _build_id(app, request)
    async with control.store.tx(write=False) as tx:
        return app, await tx.get_build(app, build_id)


def _release(app: App, build: Build) -> Html:
    if build.release is None:
        return Html("—")
    return h(
        '<a href="{}">v{}</a> ({})',
        app_path(app.name, "#releases"),
        build.release,
        build.release_status or "",
    )


def _finished(build: Build) -> Html:
    return ago(build.finished_at) if build.finished_at is not None else Html("still running")


async def build_page(request: web.Request) -> web.StreamResponse:
    """One build: what it built, how it went, and its output, streamed while it runs; its
    status, end and release follow it live (live-build.js reads ``build_state``)."""
    session = session_of(request)
    app, build = await _read_build(request)
    body = h(
        '<nav class="crumbs" aria-label="breadcrumb"><a href="{}/">Apps</a> / '
        '<a href="{}">{}</a> / build {}</nav>'
        '<h1>Build {} <span class="state" id="build-status" data-state="{}">{}</span></h1>'
        '<dl class="build" id="build-facts" data-live-build data-state-url="{}">'
        "<dt>Source</dt><dd><code>{}</code> {}</dd><dt>Commit</dt>"
        "<dd><code>{}</code></dd><dt>Started</dt><dd>{} by {}</dd><dt>Finished</dt>"
        '<dd id="build-finished">{}</dd>'
        '<dt>Release</dt><dd id="build-release">{}</dd></dl>'
        '<section id="output"><h2>Output</h2>{}</section>',
        ROOT,
        app_path(app.name, "#activity"),
        app.name,
        build.id,
        build.id,
        build.status,
        build.status,
        app_path(app.name, f"/builds/{build.id}/state"),
        build.source_url,
        h("<code>{}</code> at {}", build.source_ref, build.source_version)
        if build.source_ref
        else build.source_version or "",
        build.commit or "—",
        ago(build.created_at),
        build.actor,
        _finished(build),
        _release(app, build),
        logs_embed(
            app_path(app.name, "/logs/stream"),
            f"Output of build {build.id}",
            attrs={"source": "build", "process": f"build.{build.id}", "controls": "search"},
        ),
    )
    return page(
        f"build {build.id}",
        body,
        user=session.user.name,
        csrf=session.csrf,
        flash=flash_of(request),
        modules=("live-logs", "live-build"),
    )


async def build_state(request: web.Request) -> web.StreamResponse:
    """A build's status and the page's cells for its end and release, rendered as the
    page renders them: what live-build.js puts in place until the build is done."""
    app, build = await _read_build(request)
    payload = {
        "status": build.status,
        "finished_html": str(_finished(build)),
        "release_html": str(_release(app, build)),
    }
    return web.json_response(payload, headers={"Cache-Control": "no-store"})


def register(app: web.Application) -> None:
    install(app)
    app.router.add_get("/apps/{app}/logs/stream", logs_stream)
    app.router.add_get("/apps/{app}/metrics/requests", chart_points)
    app.router.add_get("/apps/{app}/events", chart_events)
    app.router.add_get("/apps/{app}/addon-health", addon_health)
    app.router.add_get("/apps/{app}/builds/{build}", build_page)
    app.router.add_get("/apps/{app}/builds/{build}/state", build_state)
