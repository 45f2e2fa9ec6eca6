"""The connected repository and its review-app board: every open pull request's app with
its status, URL, last build and, when its plan failed, why; destroy or rebuild from here.

The repository is connected where the control plane is configured (SLIPWAY_GITHUB_*,
SLIPWAY_REVIEW_*: one pipeline per control plane), or else by an admin from this page's
form (control/dashboard/connect.py); this page shows what to paste into
GitHub's webhook form (the URL, the content type, the events, and to admins the secret,
on request). Destroy runs the same plan a closed pull request runs (``pr-predestroy``
first, then the app goes), through the delivery runner, so the board's row says how it
went. Rebuild builds the commit the last plan deployed, from the source of the app's
last build, and releases it, as a redelivery would, without GitHub.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import web

from control.dashboard.app_page import app_path
from control.dashboard.connect import connect_page
from control.dashboard.html import ROOT, Html, ago, form, h, join, page
from control.dashboard.web import DASHBOARD, ReviewBoard, flash_of, see_other, session_of
from control.errors import NotFound
from control.models import Build
from control.review.appjson import EMPTY, ReviewConfig
from control.review.plan import destroy_plan
from control.review.records import ReviewState
from control.store.schema import review_apps

#: Rows on the board: a pipeline with more open pull requests than this is rare.
SHOWN = 200


@dataclass(frozen=True, slots=True)
class Row:
    app: str
    number: int | None
    state: str
    reason: str
    commit: str | None
    updated_at: float
    build: Build | None


def _board(request: web.Request) -> ReviewBoard:
    board = request.app[DASHBOARD].review
    if board is None:
        raise NotFound(
            "no repository is connected: set SLIPWAY_GITHUB_WEBHOOK_SECRET, "
            "SLIPWAY_REVIEW_PIPELINE, SLIPWAY_REVIEW_DOMAIN and SLIPWAY_REVIEW_STAGING_APP "
            "where the control plane runs",
            id="review_not_configured",
        )
    return board


async def open_rows(request: web.Request, board: ReviewBoard) -> list[Row]:
    """The pipeline's apps not destroyed that the user may see, with their last build."""
    control = request.app[DASHBOARD].control
    principal = session_of(request).user.principal()
    pattern = re.compile(rf"^{re.escape(board.pipeline.name)}-pr-(\d+)$")
    query = (
        sa.select(review_apps)
        .where(review_apps.c.state != ReviewState.DESTROYED.value)
        .order_by(review_apps.c.updated_at.desc())
        .limit(SHOWN)
    )
    rows: list[Row] = []
    async with control.store.tx(write=False) as tx:
        for r in (await tx.conn.execute(query)).all():
            if not principal.may_act_on(r.app):
                continue
            match = pattern.match(r.app)
            build = None
            try:
                found = await tx.list_builds(await tx.get_app(r.app), limit=1)
                build = found[-1] if found else None
            except NotFound:
                pass  # a plan that failed before the app was made
            rows.append(Row(r.app, int(match.group(1)) if match else None, r.state, r.reason,
                            r.commit, r.updated_at, build))  # fmt: skip
    return rows


def _row(row: Row, board: ReviewBoard, csrf: str, states: dict[str, str], now: float) -> Html:
    host = board.pipeline.review_host(row.number) if row.number is not None else None
    build = (
        h('<a href="{}">{}</a> {} · {}', app_path(row.app, f"/builds/{row.build.id}"),
          row.build.id, row.build.status, ago(row.build.created_at, now))
        if row.build is not None
        else "—"
    )  # fmt: skip
    actions = Html("")
    if row.state != ReviewState.PENDING.value and row.number is not None:
        actions = join(
            [
                form(f"{ROOT}/review/{row.app}/rebuild", csrf, Html(""), label="Rebuild",
                     cls="inline") if row.build is not None else Html(""),
                h("<details><summary>Destroy…</summary>{}</details>", form(
                    f"{ROOT}/review/{row.app}/destroy", csrf,
                    h("<p>Destroy {}, its add-ons and data? Its pr-predestroy runs first.</p>",
                      row.app), label=f"Destroy {row.app}", cls="danger")),
            ]
        )  # fmt: skip
    return h(
        '<tr data-app="{}" data-state="{}"><th scope="row">{}</th><td><a href="{}">{}</a>'
        '</td><td class="state">{} · {}</td><td>{}</td><td><code>{}</code></td><td>{}</td>'
        '<td class="reason">{}</td><td>{}</td></tr>',
        row.app,
        row.state,
        f"#{row.number}" if row.number is not None else "staging",
        app_path(row.app),
        row.app,
        row.state,
        states.get(row.app, "stopped"),
        h('<a href="http://{}/">{}</a>', host, host) if host else "—",
        (row.commit or "")[:12],
        build,
        row.reason if row.state == ReviewState.FAILED.value else "",
        actions,
    )


async def board_page(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    session = session_of(request)
    if dash.review is None:
        return await connect_page(request)  # the form to admins, 404 to others
    board, now = _board(request), time.time()
    rows = await open_rows(request, board)
    states = {name: live.label() for name, live in dash.live.states().items()}
    webhook = f"{request.scheme}://{request.host}/github/webhooks"
    secret = (
        h("<details><summary>Show the secret</summary><pre class=\"secret-shown\">{}</pre>"
          "</details>", board.settings.webhook_secret)
        if session.user.admin
        else Html("(ask an admin)")
    )  # fmt: skip
    body = h(
        '<h1>Review apps</h1><section id="repository"><h2>Repository</h2>'
        "<p>Pipeline <strong>{}</strong>: a push to the default branch deploys "
        '<a href="{}">{}</a>; each pull request gets <code>{}-pr-N</code> at '
        "<code>pr-N.{}</code>.</p><p>In the repository's Settings → Webhooks → Add webhook, "
        'paste:</p><dl><dt>Payload URL</dt><dd><code id="webhook-url">{}</code></dd>'
        "<dt>Content type</dt><dd><code>application/json</code></dd><dt>Secret</dt><dd>{}</dd>"
        "<dt>Events</dt><dd>Pushes and Pull requests</dd></dl></section>"
        '<section id="board"><h2>Open pull requests</h2><table><thead><tr>'
        '<th scope="col">PR</th><th scope="col">App</th><th scope="col">Status</th>'
        '<th scope="col">URL</th><th scope="col">Commit</th><th scope="col">Last build</th>'
        '<th scope="col">Why it failed</th><th scope="col">Actions</th></tr></thead>'
        "<tbody>{}</tbody></table>{}</section>",
        board.pipeline.name,
        app_path(board.pipeline.staging_app),
        board.pipeline.staging_app,
        board.pipeline.name,
        board.pipeline.domain,
        webhook,
        secret,
        join(_row(r, board, session.csrf, states, now) for r in rows),
        Html("") if rows else Html('<p class="empty">No open pull requests.</p>'),
    )
    return page("Review apps", body, user=session.user.name, csrf=session.csrf,
                flash=flash_of(request))  # fmt: skip


async def _open_row(request: web.Request) -> tuple[ReviewBoard, str, ReviewConfig, str | None]:
    """The path's app if it is an open review app the user may change: 404 otherwise."""
    board = _board(request)
    app = request.match_info["app"]
    status = await board.records.status(app)
    if (
        not session_of(request).user.principal().may_act_on(app)
        or status is None
        or status.state is ReviewState.DESTROYED
        or not re.fullmatch(rf"{re.escape(board.pipeline.name)}-pr-\d+", app)
    ):
        raise NotFound(f"no open review app {app!r}", id="not_found")
    config = ReviewConfig(env=EMPTY.env, addons=(), postdeploy=None, predestroy=status.predestroy)
    return board, app, config, status.commit


async def destroy(request: web.Request) -> web.StreamResponse:
    board, app, config, _ = await _open_row(request)
    who = f"user:{session_of(request).user.name}"
    await board.deliveries.apply(destroy_plan(app, config, why=f"destroyed by {who}"))
    raise see_other(request, f"{ROOT}/review", f"Destroying {app}")


async def rebuild(request: web.Request) -> web.StreamResponse:
    board, app, _, commit = await _open_row(request)
    user = session_of(request).user
    async with board.builds.control.store.tx(write=False) as tx:
        found = await tx.list_builds(await tx.get_app(app), limit=1)
    if not found:
        raise NotFound(f"{app} has no build to rebuild from", id="not_found")
    last = found[-1]
    blob = {"url": last.source_url, "version": commit or last.source_version}
    build = await board.builds.create(app, blob, actor=f"user:{user.name}", tenant=not user.admin)
    raise see_other(request, app_path(app, f"/builds/{build.id}"), f"Rebuilding {app}")


def register(app: web.Application) -> None:
    app.router.add_get("/review", board_page)
    app.router.add_post("/review/{app}/destroy", destroy)
    app.router.add_post("/review/{app}/rebuild", rebuild)
