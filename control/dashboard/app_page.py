"""One app's page: state, deploying a branch, activity, releases (rollback), config vars,
formation, add-ons, domains, and the places the live logs and charts (live-*.js) mount into."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from control.dashboard.activity import merge, platform_events, render
from control.dashboard.addon_health import read_health
from control.dashboard.addon_health import render as render_health
from control.dashboard.deploying import deploy_section, known_source
from control.dashboard.embeds import charts_embed, logs_embed
from control.dashboard.html import ROOT, Html, ago, esc, form, h, join, page
from control.dashboard.reads import activity, recent_releases
from control.dashboard.web import DASHBOARD, flash_of, session_of
from control.errors import NotFound
from control.models import App

#: Activity entries and releases shown; older ones are in `slipway releases` and the audit API.
SHOWN = 30
#: Seconds between live-health.js's reads of the add-ons' health while the tab is visible.
HEALTH_REFRESH = 15


async def visible_app(request: web.Request) -> App:
    """The app named in the path, or 404 when it does not exist or is not the user's:
    a collaborator cannot tell another team's app from no app at all."""
    name = request.match_info["app"]
    if not session_of(request).user.principal().may_act_on(name):
        raise NotFound(f"no app {name!r}", id="not_found")
    return await request.app[DASHBOARD].control.get_app(name)


def app_path(app: str, rest: str = "") -> str:
    return f"{ROOT}/apps/{app}{rest}"


async def app_page(request: web.Request) -> web.StreamResponse:
    return await render_app_page(request, await visible_app(request))


async def render_app_page(
    request: web.Request,
    app: App,
    *,
    branch: str | None = None,
    deploy_error: str | None = None,
    status: int = 200,
) -> web.Response:
    """The page; ``branch`` and ``deploy_error``: a refused "Deploy a branch", shown in its
    section with what was typed (deploy.py), the page answering ``status``."""
    dash = request.app[DASHBOARD]
    control = dash.control
    session = session_of(request)
    name, csrf, now = app.name, session.csrf, time.time()
    live = dash.live.states().get(name, dash.live.missing)
    # Independent reads, together: each is its own read transaction.
    releases, entries, events, config, formation, addons = await asyncio.gather(
        recent_releases(control.store, app.id, limit=SHOWN),
        activity(control.store, name, limit=SHOWN),
        platform_events(dash.requests, name, now=now),
        control.config(name),
        control.formation(name),
        control.list_addons(name),
    )
    health = await read_health(dash.addon_health, name, addons)
    deploy = deploy_section(
        name,
        csrf,
        await known_source(dash, app) if dash.builds is not None else None,
        builder=dash.builds is not None,
        branch=branch,
        error=deploy_error,
    )
    default_host = f"{name}.{control.app_domain}" if control.app_domain else None
    domains = [d for d in await control.list_domains(name) if d.hostname != default_host]

    release_rows = join(
        h(
            '<tr><th scope="row">v{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td></tr>",
            r.version,
            r.status + (" · current" if r.version == app.current_release else ""),
            r.description,
            r.actor,
            ago(r.created_at, now),
            h(
                '<a href="{}">Roll back to v{}…</a>',
                app_path(name, f"/releases/{r.version}/rollback"),
                r.version,
            )
            if r.version != app.current_release and r.status == "succeeded" and r.has_code
            else "",
        )
        for r in releases
    )
    config_rows = join(
        h(
            '<tr><th scope="row">{}</th><td><form method="post" action="{}" class="inline">'
            '<input type="hidden" name="csrf" value="{}">'
            '<input type="hidden" name="key" value="{}">'
            '<label class="sr" for="cv-{}">Value of {}</label>'
            '<input id="cv-{}" name="value" type="password" value="{}" class="secret" '
            'autocomplete="off"><button type="button" class="reveal" aria-controls="cv-{}">'
            'Reveal</button><button type="submit">Save…</button></form></td><td>{}</td></tr>',
            key,
            app_path(name, "/config"),
            csrf,
            key,
            key,
            key,
            key,
            value,
            key,
            form(
                app_path(name, "/config"),
                csrf,
                h('<input type="hidden" name="unset" value="{}">', key),
                label="Remove…",
                cls="inline",
            ),
        )
        for key, value in sorted(config.items())
    )
    config_add = Html(
        '<label for="cv-new-key">Name</label><input id="cv-new-key" name="key" required '
        'pattern="[A-Za-z_][A-Za-z0-9_]*"><label for="cv-new-value">Value</label>'
        '<input id="cv-new-value" name="value">'
    )
    env_block = Html(
        '<label for="cv-env">Paste a .env block</label>'
        '<textarea id="cv-env" name="env" rows="4" placeholder="KEY=value"></textarea>'
    )
    formation_rows = join(
        form(
            app_path(name, "/formation"),
            csrf,
            h(
                '<input type="hidden" name="type" value="{}"><span class="ptype">{}</span>'
                '<label for="q-{}">Quantity</label><input id="q-{}" name="quantity" type="number" '
                'min="0" value="{}"><label for="i-{}">Idle after (s)</label><input id="i-{}" '
                'name="idle_after" type="number" min="1" value="{}"><label><input type="checkbox" '
                'name="never_sleep" value="yes"{}> Never sleep</label>',
                f.type,
                f.type,
                f.type,
                f.type,
                f.quantity,
                f.type,
                f.type,
                int(f.idle_after),
                Html(" checked") if f.never_sleep else "",
            ),
            label="Scale",
            cls="inline formation",
        )
        for f in formation
    )
    addon_rows = join(
        h(
            '<tr><th scope="row">{}</th><td>{}</td><td>{}</td>'
            '<td class="addon-health" data-addon="{}">{}</td><td><a href="{}">Credentials</a>'
            "</td><td><details><summary>Destroy…</summary>{}</details></td></tr>",
            a.name,
            a.plan,
            a.config_var,
            a.name,
            render_health(health.get(a.name)),
            app_path(name, f"/addons/{a.name}/credentials"),
            form(
                app_path(name, f"/addons/{a.name}/destroy"),
                csrf,
                h("<p>Destroy {} and its data? {} goes from the config.</p>", a.name, a.config_var),
                label=f"Destroy {a.name}",
                cls="danger",
            ),
        )
        for a in addons
    )
    plans = join(h('<option value="{}">{}</option>', p, p) for p in control.plan_names())
    addon_create = (
        form(
            app_path(name, "/addons"),
            csrf,
            h(
                '<label for="plan">Plan</label><select id="plan" name="plan">{}</select>'
                '<label for="attach">Attach as</label><input id="attach" name="attachment" '
                'placeholder="DATABASE">',
                plans,
            ),
            label="Create add-on",
            cls="inline",
        )
        if control.plan_names()
        else Html('<p class="empty">No add-on servers are configured.</p>')
    )
    domain_rows = join(
        h(
            '<tr><th scope="row">{}</th><td>{}</td><td>{}</td></tr>',
            d.hostname,
            dns_record(control.app_domain, name, d.hostname),
            form(
                app_path(name, f"/domains/{d.hostname}/remove"),
                csrf,
                Html(""),
                label="Remove",
                cls="inline",
            ),
        )
        for d in domains
    )
    body = h(
        '<nav class="crumbs" aria-label="breadcrumb"><a href="{}/">Apps</a> / {}</nav>'
        '<h1>{} <span id="app-state" class="state" data-state="{}" data-live="{}/apps.json" '
        'data-app="{}"><span class="dot" aria-hidden="true"></span><span class="label">{}</span>'
        "</span></h1><p>{}</p>"
        '<nav class="sections" aria-label="sections"><a href="#deploy">Deploy</a> '
        '<a href="#activity">Activity</a> '
        '<a href="#releases">Releases</a> <a href="#config">Config vars</a> '
        '<a href="#formation">Formation</a> <a href="#addons">Add-ons</a> '
        '<a href="#domains">Domains</a> <a href="#logs">Logs</a> <a href="#charts">Charts</a></nav>'
        "{}"
        '<section id="charts"><h2>Requests</h2>{}</section>'
        '<section id="logs"><h2>Logs</h2>{}</section>'
        '<section id="activity"><h2>Activity</h2><ol class="activity">{}</ol></section>'
        '<section id="releases"><h2>Releases</h2><table><thead><tr><th scope="col">Version</th>'
        '<th scope="col">Status</th><th scope="col">Description</th><th scope="col">By</th>'
        '<th scope="col">When</th><th scope="col">Rollback</th></tr></thead><tbody>{}</tbody>'
        "</table></section>"
        '<section id="config"><h2>Config vars</h2><p class="hint">Every change makes a release; '
        "you see the diff first.</p><table><tbody>{}</tbody></table>{}{}</section>"
        '<section id="formation"><h2>Formation</h2>{}{}</section>'
        '<section id="addons" data-live-health data-health-url="{}" data-refresh="{}">'
        "<h2>Add-ons</h2><table><tbody>{}</tbody></table>{}</section>"
        '<section id="domains"><h2>Domains</h2><p>{}</p><table><tbody>{}</tbody></table>{}'
        "</section>",
        ROOT,
        name,
        name,
        live.state,
        ROOT,
        name,
        live.label(),
        h("Answers at <code>{}</code>", default_host) if default_host else "",
        deploy,
        charts_embed(name),
        logs_embed(app_path(name, "/logs/stream"), f"Logs of {name}"),
        join(render(i, now) for i in merge(entries, events, limit=SHOWN))
        or Html("<li>Nothing yet.</li>"),
        release_rows,
        config_rows,
        form(app_path(name, "/config"), csrf, config_add, label="Add…", cls="inline"),
        form(app_path(name, "/config"), csrf, env_block, label="Review changes…", cls="stack"),
        formation_rows or Html('<p class="empty">No process types: deploy the app first.</p>'),
        form(app_path(name, "/restart"), csrf, Html(""), label="Restart all", cls="inline"),
        app_path(name, "/addon-health"),
        HEALTH_REFRESH,
        addon_rows,
        addon_create,
        h("Add a domain, then create the DNS record shown for it."),
        domain_rows,
        form(
            app_path(name, "/domains"),
            csrf,
            Html(
                '<label for="hostname">Domain</label><input id="hostname" name="hostname" '
                'required placeholder="www.example.com">'
            ),
            label="Add domain",
            cls="inline",
        ),
    )
    return page(
        name,
        body,
        user=session.user.name,
        csrf=csrf,
        flash=flash_of(request),
        modules=("live-charts", "live-logs", "live-health"),
        status=status,
    )


def dns_record(app_domain: str | None, app: str, hostname: str) -> Html:
    """What the user creates at their DNS provider: a CNAME to the app's platform name."""
    if not app_domain:
        return h("CNAME {} → this platform's router (ask the operator for its name)", hostname)
    return h("<code>{} CNAME {}.{}.</code>", hostname, app, app_domain)


async def credentials_page(request: web.Request) -> web.StreamResponse:
    """An add-on's credentials, shown only when asked for (a page of their own, not cached)."""
    session = session_of(request)
    app = await visible_app(request)
    wanted = request.match_info["addon"]
    addons = await request.app[DASHBOARD].control.list_addons(app.name)
    found = next((a for a in addons if a.name == wanted), None)
    if found is None:
        raise NotFound(f"no add-on {wanted!r} on {app.name}", id="not_found")
    body = h(
        '<nav class="crumbs"><a href="{}">{}</a></nav><h1>{} credentials</h1>'
        '<p>{} of {}:</p><pre class="secret-shown">{}</pre>',
        app_path(app.name, "#addons"),
        app.name,
        found.name,
        found.config_var,
        app.name,
        found.url,
    )
    return page(f"{found.name} credentials", body, user=session.user.name, csrf=session.csrf)


def register(app: web.Application) -> None:
    app.router.add_get("/apps/{app}", app_page)
    app.router.add_get("/apps/{app}/addons/{addon}/credentials", credentials_page)


__all__ = ["esc", "register"]
