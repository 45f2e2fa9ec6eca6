"""The apps list (live states, filter, search), its JSON for the live update, and users."""

from __future__ import annotations

import time
from html import escape

from aiohttp import web

from control.dashboard.html import ROOT, Html, ago, csrf_field, esc, form, h, join, page
from control.dashboard.live import Live
from control.dashboard.reads import AppRow, app_rows
from control.dashboard.web import DASHBOARD, flash_of, session_of
from control.errors import Forbidden


def _state_cell(live: Live) -> Html:
    return h(
        '<td class="state" data-state="{}"><span class="dot" aria-hidden="true"></span>'
        '<span class="label">{}</span></td>',
        live.state,
        live.label(),
    )


def _row(row: AppRow, live: Live, now: float) -> str:
    """One app's row: an f-string with each value escaped (the list's hot loop: 200 rows)."""
    name = escape(row.name)
    release = (
        f"v{row.version} · {escape(row.description)} · {ago(row.released_at, now)}"
        if row.version is not None
        else "—"
    )
    return (
        f'<tr data-app="{name}"><th scope="row"><a href="{ROOT}/apps/{name}">{name}</a></th>'
        f'<td class="state" data-state="{escape(live.state)}"><span class="dot" '
        f'aria-hidden="true"></span><span class="label">{escape(live.label())}</span></td>'
        f'<td class="release">{release}</td><td class="last-request">'
        f"{ago(live.last_request, now)}</td><td>{escape(', '.join(row.domains)) or '—'}</td></tr>"
    )


async def apps_list(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    session = session_of(request)
    principal = session.user.principal()
    rows = await app_rows(dash.control.store, among=principal.only_apps)
    query = request.query.get("q", "").strip().lower()
    if query:  # the same filter the page's script applies as one types, for no-script use
        rows = [r for r in rows if query in r.name or any(query in d for d in r.domains)]
    states = dash.live.states()
    now = time.time()
    body_rows = Html("".join(_row(r, states.get(r.name, dash.live.missing), now) for r in rows))
    create = Html("")
    if session.user.admin:
        create = form(
            f"{ROOT}/apps",
            session.csrf,
            Html(
                '<label for="new-app">New app</label>'
                '<input id="new-app" name="name" required pattern="[a-z][a-z0-9-]{1,29}" '
                'placeholder="my-app">'
            ),
            label="Create app",
            cls="inline create-app",
        )
    body = h(
        '<h1>Apps <small id="app-count">{}</small></h1>'
        '<div class="toolbar"><form method="get" role="search" action="{}/">'
        '<label for="filter">Filter</label>'
        '<input id="filter" type="search" name="q" value="{}" placeholder="name or domain" '
        'data-filter="#apps tbody tr"></form>{}</div>'
        '<table id="apps" data-live="{}/apps.json"><thead><tr><th scope="col">App</th>'
        '<th scope="col">State</th><th scope="col">Release</th>'
        '<th scope="col">Last request</th><th scope="col">Domains</th></tr></thead>'
        "<tbody>{}</tbody></table>{}",
        len(rows),
        ROOT,
        query,
        create,
        ROOT,
        body_rows,
        Html("") if rows else Html('<p class="empty">No apps yet.</p>'),
    )
    return page(
        "Apps",
        body,
        user=session.user.name,
        csrf=session.csrf,
        flash=flash_of(request),
    )


async def apps_json(request: web.Request) -> web.StreamResponse:
    """The live part of the list, polled every few seconds: state and last request per app."""
    dash = request.app[DASHBOARD]
    principal = session_of(request).user.principal()
    states = dash.live.states()
    allowed = principal.only_apps
    names = states.keys() if allowed is None else allowed & states.keys()
    now = time.time()
    body = {
        name: {**states[name].wire(), "last_request_html": str(ago(states[name].last_request, now))}
        for name in names
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _apps_form(user: str, apps: frozenset[str], csrf: str) -> Html:
    field = h(
        '<label class="sr" for="apps-{}">Apps of {}</label>'
        '<input id="apps-{}" name="apps" value="{}" placeholder="no app">',
        user,
        user,
        user,
        ", ".join(sorted(apps)),
    )
    return form(f"{ROOT}/users/{user}/apps", csrf, field, label="Set apps", cls="inline")


async def users_page(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    if not session.user.admin:
        raise Forbidden("only an admin manages users", id="forbidden")
    users = await request.app[DASHBOARD].users.list_users()
    rows = join(
        h(
            '<tr data-user="{}"><th scope="row">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>',
            u.name,
            u.name,
            "admin" if u.admin else "collaborator",
            "all" if u.admin else _apps_form(u.name, u.apps, session.csrf),
            ""
            if u.name == session.user.name
            else form(
                f"{ROOT}/users/{u.name}/remove", session.csrf, Html(""), label=f"Remove {u.name}"
            ),
        )
        for u in users
    )
    fields = Html(
        '<label for="u-name">Name</label><input id="u-name" name="name" required>'
        '<label for="u-password">Password</label>'
        '<input id="u-password" name="password" type="password" minlength="12" required '
        'autocomplete="new-password">'
        '<label><input type="checkbox" name="admin" value="yes"> Admin</label>'
        '<label for="u-apps">Apps (collaborator; comma-separated)</label>'
        '<input id="u-apps" name="apps" placeholder="web-shop, api">'
    )
    body = h(
        '<h1>Users</h1><table><thead><tr><th scope="col">User</th><th scope="col">Role</th>'
        '<th scope="col">Apps</th><th scope="col">Remove</th></tr></thead><tbody>{}</tbody></table>'
        "<h2>Add a user</h2>{}",
        rows,
        form(f"{ROOT}/users", session.csrf, fields, label="Add user", cls="stack"),
    )
    return page("Users", body, user=session.user.name, csrf=session.csrf, flash=flash_of(request))


def register(app: web.Application) -> None:
    app.router.add_get("/", apps_list)
    app.router.add_get("/apps.json", apps_json)
    app.router.add_get("/users", users_page)


__all__ = ["csrf_field", "esc", "register"]
