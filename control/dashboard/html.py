"""HTML by hand: escaped fragments and the page layout (no template engine, no CDN).

``Html`` marks text already safe; everything else given to ``h()`` or
``join()`` is escaped, so a value from the store (a config var, an app name,
a release description) never becomes markup.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable

from aiohttp import web

#: The dashboard's root path.
ROOT = "/dashboard"
STATIC = f"{ROOT}/static"


#: Every page: never cached (config values, credentials); scripts, styles and fetches from
#: this origin only; never framed, so no other site can lay a page over a Roll back button.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Html(str):
    """Markup that is already safe to put in a page."""


def esc(value: object) -> Html:
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def h(template: str, *values: object) -> Html:
    """``template`` (trusted markup, ``{}`` placeholders) with each value escaped."""
    return Html(template.format(*(esc(v) for v in values)))


def ago(at: float | None, now: float | None = None) -> Html:
    """A time for people ("3 min ago"), with the exact UTC time in its title."""
    if at is None:
        return Html("—")
    now = time.time() if now is None else now
    seconds = max(0, int(now - at))
    if seconds < 60:
        text = f"{seconds} s ago"
    elif seconds < 3600:
        text = f"{seconds // 60} min ago"
    elif seconds < 86400:
        text = f"{seconds // 3600} h ago"
    else:
        text = f"{seconds // 86400} d ago"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))  # digits only: safe
    return Html(f'<time datetime="{stamp}" title="{stamp}">{text}</time>')


def csrf_field(token: str) -> Html:
    return h('<input type="hidden" name="csrf" value="{}">', token)


def form(action: str, csrf: str, body: Html, *, label: str, cls: str = "") -> Html:
    """A POST form with its CSRF token and one submit button."""
    return h(
        '<form method="post" action="{}" class="{}">{}{}<button type="submit">{}</button></form>',
        action,
        cls,
        csrf_field(csrf),
        body,
        label,
    )


def page(
    title: str,
    body: Html,
    *,
    user: str | None = None,
    csrf: str | None = None,
    flash: str | None = None,
    scripts: Iterable[str] = (),
    modules: Iterable[str] = (),
    status: int = 200,
) -> web.Response:
    """``modules``: live modules the body mounts (``live-logs``: its .js and .css, in the head)."""
    nav = Html("")
    if user is not None and csrf is not None:
        nav = h(
            '<nav aria-label="main"><a href="{}/">Apps</a> <a href="{}/review">Review apps</a> '
            '<a href="{}/users">Users</a>'
            '<span class="who">{}</span>{}</nav>',
            ROOT,
            ROOT,
            ROOT,
            user,
            form(f"{ROOT}/logout", csrf, Html(""), label="Sign out", cls="inline"),
        )
    note = h('<p class="flash" role="status">{}</p>', flash) if flash else Html("")
    tags = join(
        [
            *(h('<script src="{}" defer></script>', s) for s in scripts),
            *(h('<link rel="stylesheet" href="{}/{}.css"><script type="module" src="{}/{}.js">'
                "</script>", STATIC, m, STATIC, m) for m in modules),
        ]
    )  # fmt: skip
    meta = h('<meta name="csrf-token" content="{}">', csrf) if csrf else Html("")
    text = h(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">{}'
        "<title>{} · slipway</title>"
        '<link rel="stylesheet" href="{}/dash.css">'
        '<script src="{}/dash.js" defer></script>{}</head>'
        '<body><header><a class="brand" href="{}/">slipway</a>{}</header>'
        '<main id="main">{}{}</main></body></html>',
        meta,
        title,
        STATIC,
        STATIC,
        tags,
        ROOT,
        nav,
        note,
        body,
    )
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers=SECURITY_HEADERS,
    )
