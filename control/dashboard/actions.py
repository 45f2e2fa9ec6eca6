"""The dashboard's other changes, each one call of ``Control`` as the signed-in user.

No business rule lives here: names, plans, domains and scale limits are
checked by the services behind ``Control``, as for the API, and their
refusals come back as the same 4xx (rendered as a page).
"""

from __future__ import annotations

from aiohttp import web

from control.dashboard.app_page import app_path, visible_app
from control.dashboard.html import ROOT, Html, h, page
from control.dashboard.web import DASHBOARD, see_other, session_of
from control.errors import BadRequest, Forbidden
from control.rules import formation_change, validate_app_name, validate_hostname
from kit.durations import parse_duration


def _text(form: object, field: str) -> str:
    assert hasattr(form, "get")
    value = form.get(field, "")
    return value.strip() if isinstance(value, str) else ""


def _done(request: web.Request, app: str, message: str, anchor: str) -> web.HTTPSeeOther:
    return see_other(request, app_path(app, f"#{anchor}"), message)


async def create_app(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    if not session.user.admin:
        raise Forbidden("only an admin creates apps", id="forbidden")
    name = validate_app_name(_text(await request.post(), "name"))
    await request.app[DASHBOARD].control.create_app(name, actor=session.user.principal().actor)
    raise _done(
        request, name, f"Created {name}: deploy it with `slipway deploy -a {name}`", "releases"
    )


async def scale(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    principal = session.user.principal()
    app = await visible_app(request)
    form = await request.post()
    update: dict[str, object] = {"never_sleep": form.get("never_sleep") == "yes"}
    for field in ("quantity", "idle_after"):
        if text := _text(form, field):
            try:
                update[field] = float(text) if field == "idle_after" else int(text)
            except ValueError:
                if field != "idle_after":
                    raise BadRequest(f"{field} is a whole number, not {text!r}") from None
                try:
                    update[field] = parse_duration(text)  # "10m" as well as 600
                except ValueError as exc:
                    raise BadRequest(f"idle time: {exc}") from None
    change = formation_change(_text(form, "type"), update)  # the API's checks, the same
    await request.app[DASHBOARD].control.update_formation(
        app.name, [change], actor=principal.actor, admin=principal.token.admin
    )
    raise _done(request, app.name, f"Formation of {change.type} updated", "formation")


async def restart(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    app = await visible_app(request)
    await request.app[DASHBOARD].control.restart(
        app.name, None, actor=session.user.principal().actor
    )
    raise _done(request, app.name, "Restarting every process", "formation")


async def create_addon(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    app = await visible_app(request)
    form = await request.post()
    plan = _text(form, "plan")
    if not plan:
        raise BadRequest("choose a plan")
    addon, release = await request.app[DASHBOARD].control.create_addon(
        app.name,
        plan=plan,
        attachment=_text(form, "attachment") or None,
        actor=session.user.principal().actor,
    )
    raise _done(request, app.name, f"Created {addon.name}: release v{release.version}", "addons")


async def destroy_addon(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    app = await visible_app(request)
    addon, release = await request.app[DASHBOARD].control.destroy_addon(
        app.name, request.match_info["addon"], actor=session.user.principal().actor
    )
    raise _done(request, app.name, f"Destroyed {addon.name}: release v{release.version}", "addons")


async def add_domain(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    principal = session.user.principal()
    app = await visible_app(request)
    hostname = validate_hostname(_text(await request.post(), "hostname").lower())
    await request.app[DASHBOARD].control.add_domain(
        app.name, hostname, actor=principal.actor, tenant=not principal.token.admin
    )
    raise _done(request, app.name, f"Added {hostname}: create its DNS record below", "domains")


async def remove_domain(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    app = await visible_app(request)
    hostname = request.match_info["hostname"]
    await request.app[DASHBOARD].control.remove_domain(
        app.name, hostname, actor=session.user.principal().actor
    )
    raise _done(request, app.name, f"Removed {hostname}", "domains")


async def create_user(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    if not session.user.admin:
        raise Forbidden("only an admin manages users", id="forbidden")
    form = await request.post()
    apps = [a.strip() for a in _text(form, "apps").split(",") if a.strip()]
    admin = form.get("admin") == "yes"
    user = await request.app[DASHBOARD].users.create_user(
        _text(form, "name"),
        str(form.get("password", "")),
        admin=admin,
        apps_=[] if admin else apps,
        actor=session.user.principal().actor,
    )
    raise see_other(request, f"{ROOT}/users", f"Added {user.name}")


async def set_user_apps(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    if not session.user.admin:
        raise Forbidden("only an admin manages users", id="forbidden")
    name = request.match_info["user"]
    apps = [a.strip() for a in _text(await request.post(), "apps").split(",") if a.strip()]
    dash = request.app[DASHBOARD]
    await dash.users.set_apps(name, apps, actor=session.user.principal().actor)
    dash.control.tokens.forget_all()  # their tokens' reach changed: look again
    raise see_other(request, f"{ROOT}/users", f"Apps of {name} set")


async def delete_user(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    if not session.user.admin:
        raise Forbidden("only an admin manages users", id="forbidden")
    name = request.match_info["user"]
    if name == session.user.name:
        raise BadRequest("you cannot remove yourself; another admin can", id="self_delete")
    dash = request.app[DASHBOARD]
    await dash.users.delete_user(name, actor=session.user.principal().actor)
    dash.control.tokens.forget_all()  # their tokens are gone: no cached one may linger
    raise see_other(request, f"{ROOT}/users", f"Removed {name}")


def register(app: web.Application) -> None:
    app.router.add_post("/apps", create_app)
    app.router.add_post("/apps/{app}/formation", scale)
    app.router.add_post("/apps/{app}/restart", restart)
    app.router.add_post("/apps/{app}/addons", create_addon)
    app.router.add_post("/apps/{app}/addons/{addon}/destroy", destroy_addon)
    app.router.add_post("/apps/{app}/domains", add_domain)
    app.router.add_post("/apps/{app}/domains/{hostname}/remove", remove_domain)
    app.router.add_post("/users", create_user)
    app.router.add_post("/users/{user}/apps", set_user_apps)
    app.router.add_post("/users/{user}/remove", delete_user)


__all__ = ["Html", "h", "page", "register"]
