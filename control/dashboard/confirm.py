"""Changes that make a release, shown before they are made: config vars and rollbacks.

A config change is posted once to see its diff (names added, changed,
removed; values masked until revealed) and once more, with ``confirm``, to
release it. A rollback's page shows what the target release changes against
the current one: code (artifact), Procfile and config.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping

from aiohttp import web

from control.dashboard.app_page import app_path, visible_app
from control.dashboard.html import ROOT, Html, csrf_field, form, h, join, page
from control.dashboard.web import DASHBOARD, see_other, session_of
from control.errors import BadRequest
from control.rules import validate_config_changes, validate_version

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_env(block: str) -> dict[str, str]:
    """A ``.env`` block: ``KEY=value`` lines, ``export`` allowed, quotes as a shell reads
    them, ``#`` comments and blank lines skipped; any other line is refused by number."""
    found: dict[str, str] = {}
    for number, line in enumerate(block.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise BadRequest(f"line {number} of the .env block is not KEY=value", id="bad_env")
        key, raw = match.groups()
        if raw[:1] in ("'", '"'):
            try:
                parts = shlex.split(raw, comments=False)
            except ValueError as exc:
                raise BadRequest(f"line {number}: {exc}", id="bad_env") from exc
            value = parts[0] if parts else ""
        else:
            value = raw.split(" #", 1)[0].rstrip()
        found[key] = value
    if not found:
        raise BadRequest("the .env block holds no KEY=value line", id="bad_env")
    return found


def config_diff(
    before: Mapping[str, str], after: Mapping[str, str]
) -> list[tuple[str, str, str | None, str | None]]:
    """(kind, key, old, new) for each key that differs; kind is added, changed or removed."""
    rows: list[tuple[str, str, str | None, str | None]] = []
    for key in sorted({*before, *after}):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        kind = "added" if old is None else "removed" if new is None else "changed"
        rows.append((kind, key, old, new))
    return rows


def _masked(value: str | None) -> Html:
    if value is None:
        return Html("—")
    return h('<span class="masked" data-value="{}" tabindex="0">••••••</span>', value)


def _diff_table(rows: list[tuple[str, str, str | None, str | None]]) -> Html:
    if not rows:
        return Html('<p class="empty">No change.</p>')
    return h(
        '<table class="diff"><thead><tr><th scope="col">Change</th><th scope="col">Name</th>'
        '<th scope="col">Before</th><th scope="col">After</th></tr></thead><tbody>{}</tbody>'
        '</table><button type="button" class="reveal-all">Reveal values</button>',
        join(
            h(
                '<tr class="{}"><td>{}</td><th scope="row">{}</th><td>{}</td><td>{}</td></tr>',
                kind,
                kind,
                key,
                _masked(old),
                _masked(new),
            )
            for kind, key, old, new in rows
        ),
    )


def _changes_from(form_data: Mapping[str, object]) -> dict[str, str | None]:
    if isinstance(raw := form_data.get("changes"), str) and raw:
        try:
            changes = json.loads(raw)
        except ValueError as exc:
            raise BadRequest("the confirmed changes are not JSON", id="bad_request") from exc
    elif isinstance(env := form_data.get("env"), str) and env.strip():
        changes = parse_env(env)
    elif isinstance(unset := form_data.get("unset"), str) and unset:
        changes = {unset: None}
    elif isinstance(key := form_data.get("key"), str) and key:
        value = form_data.get("value", "")
        changes = {key: value if isinstance(value, str) else ""}
    else:
        raise BadRequest("give a name and value, a name to remove, or a .env block")
    return validate_config_changes(changes)


async def post_config(request: web.Request) -> web.StreamResponse:
    control = request.app[DASHBOARD].control
    session = session_of(request)
    app = await visible_app(request)
    form_data = await request.post()
    changes = _changes_from(form_data)
    before = await control.config(app.name)
    if form_data.get("confirm") == "yes":
        _, release = await control.update_config(
            app.name, changes, actor=session.user.principal().actor
        )
        message = f"Config changed: release v{release.version}"
        raise see_other(request, app_path(app.name, "#releases"), message)
    after = {k: v for k, v in {**before, **changes}.items() if v is not None}
    rows = config_diff(before, after)
    confirm = h(
        '<form method="post" action="{}">{}<input type="hidden" name="changes" value="{}">'
        '<input type="hidden" name="confirm" value="yes">'
        '<button type="submit"{}>Release these changes</button> <a href="{}">Cancel</a></form>',
        app_path(app.name, "/config"),
        csrf_field(session.csrf),
        json.dumps(changes),
        Html(" disabled") if not rows else "",
        app_path(app.name, "#config"),
    )
    body = h(
        '<nav class="crumbs"><a href="{}">{}</a></nav><h1>Review config changes</h1>'
        "<p>Releasing makes a new release of {} with this config; the app restarts with it.</p>"
        "{}{}",
        app_path(app.name),
        app.name,
        app.name,
        _diff_table(rows),
        confirm,
    )
    return page("Review config changes", body, user=session.user.name, csrf=session.csrf)


async def rollback_page(request: web.Request) -> web.StreamResponse:
    control = request.app[DASHBOARD].control
    session = session_of(request)
    app = await visible_app(request)
    version = _version(request)
    target = await control.get_release(app.name, version)
    current = (
        await control.get_release(app.name, app.current_release)
        if app.current_release is not None
        else None
    )
    code = (
        h("<p>Code: <code>{}</code> → <code>{}</code></p>", current.artifact, target.artifact)
        if current is not None and current.artifact != target.artifact
        else Html("<p>Code: unchanged.</p>")
    )
    procfile = config_diff(current.procfile if current else {}, target.procfile)
    procs = (
        join(h("<li>{} {}: {} → {}</li>", k, n, o or "—", v or "—") for k, n, o, v in procfile)
        if procfile
        else Html("<li>unchanged</li>")
    )
    body = h(
        '<nav class="crumbs"><a href="{}">{}</a></nav><h1>Roll back {} to v{}?</h1>'
        "<p>A new release is made from v{}'s code, Procfile and config (v{} is current); "
        "add-ons stay as they are now.</p>{}<h2>Procfile</h2><ul>{}</ul><h2>Config vars</h2>{}{}",
        app_path(app.name),
        app.name,
        app.name,
        version,
        version,
        app.current_release,
        code,
        procs,
        _diff_table(config_diff(current.config if current else {}, target.config)),
        form(
            app_path(app.name, f"/releases/{version}/rollback"),
            session.csrf,
            Html(""),
            label=f"Roll back to v{version}",
            cls="confirm",
        ),
    )
    return page(f"Roll back to v{version}", body, user=session.user.name, csrf=session.csrf)


def _version(request: web.Request) -> int:
    try:
        return validate_version(int(request.match_info["version"]))
    except ValueError as exc:
        raise BadRequest("a release version is a positive number") from exc


async def post_rollback(request: web.Request) -> web.StreamResponse:
    control = request.app[DASHBOARD].control
    session = session_of(request)
    app = await visible_app(request)
    release = await control.rollback(
        app.name, _version(request), actor=session.user.principal().actor
    )
    message = f"Rolled back: release v{release.version}"
    raise see_other(request, app_path(app.name, "#releases"), message)


def register(app: web.Application) -> None:
    app.router.add_post("/apps/{app}/config", post_config)
    app.router.add_get("/apps/{app}/releases/{version}/rollback", rollback_page)
    app.router.add_post("/apps/{app}/releases/{version}/rollback", post_rollback)


__all__ = ["ROOT", "config_diff", "parse_env", "register"]
