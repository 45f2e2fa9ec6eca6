"""Long because: routes, handlers and OpenAPI rendering stay in step in one table.
The one table of routes: handlers, who may call them, and their OpenAPI description.

``register`` adds every route to an aiohttp application wrapped in the auth
check its scope names; ``openapi`` renders the same table as OpenAPI 3.1
(control/api/openapi.py). Each handler parses its body once
(control/api/parse.py) and hands ``Control`` typed values. A little over 500
lines on purpose: the handlers sit beside the one table that names them.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiohttp import web

from control import names
from control.api import live, parse, runs, schemas, terminal, wire
from control.api.openapi import document
from control.api.paging import Page, int_cursor, parse_range
from control.auth import Principal
from control.building import Builds
from control.detached import DetachedTarget
from control.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ReleaseFailed,
    TooLarge,
    Unauthorized,
    Unprocessable,
)
from control.requests import Rollback
from control.review.records import ReviewRecords
from control.rules import validate_app_name
from control.service import Control
from kit import jsonbody
from kit.redact import mask_text

CONTROL: web.AppKey[Control] = web.AppKey("control", Control)
BUILDS: web.AppKey[Builds] = web.AppKey("builds", Builds)
#: Bodies taken as an uploaded source tarball by POST /apps/{app}/builds.
TARBALL_TYPES = frozenset({"application/gzip", "application/x-gzip", "application/x-tar"})
#: Read size when streaming an upload to disk.
UPLOAD_CHUNK = 64 * 1024
#: A release version in a path: ``v3`` or ``3``; 15 digits stay below 2**53.
RELEASE_VERSION = re.compile(r"v?([0-9]{1,15})")
#: Generated names tried before giving up: with 32 million names, 5 taken in a row is a
#: platform with millions of apps, where a chosen name is better anyway.
NAME_DRAWS = 5
#: Names need no secrecy, only spread: the process's own generator.
_RNG = random.Random()


class Scope(Enum):
    #: Any valid token; the handler narrows further.
    ANY = "any"
    #: An admin token, or a token for the ``{app}`` in the path.
    APP = "app"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Call:
    request: web.Request
    principal: Principal
    control: Control
    #: The route's request schema: fields it does not name are refused.
    schema: schemas.Schema | None = None

    @property
    def app(self) -> str:
        return self.request.match_info["app"]

    @property
    def admin(self) -> bool:
        return self.principal.token.admin

    async def body(self) -> dict[str, Any]:
        if not self.request.body_exists:
            raise BadRequest("this endpoint needs a JSON object body", id="bad_request")
        try:
            data = await jsonbody.read(self.request)
        except jsonbody.BadBody as exc:
            error = TooLarge if exc.status == 413 else BadRequest
            raise error(str(exc)) from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object", id="bad_request")
        unknown = [] if self.schema is None else schemas.unknown_fields(self.schema, data)
        if unknown:
            raise Unprocessable(f"unknown fields: {', '.join(unknown)}", id="unknown_fields")
        return data

    def page(self, field: str) -> Page:
        return parse_range(self.request.headers.get("Range"), field=field)


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    scope: Scope
    status: int
    response: schemas.Schema | None
    body: schemas.Schema | None = None
    errors: tuple[int, ...] = ()
    range_field: str | None = None
    query: tuple[str, ...] = ()
    #: Also takes a source tarball as the body (application/gzip), streamed to disk.
    tarball: bool = False
    #: The main answer's media type (NDJSON for a stream).
    media: str = "application/json"
    #: Other success answers: (status, schema).
    also: tuple[tuple[int, schemas.Schema], ...] = ()


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=json.dumps)


def paged(
    page: Page,
    items: list[Any],
    key: Callable[[Any], object],
    render: Callable[[Any], dict[str, Any]],
) -> web.Response:
    """206 with Next-Range while there may be more, 200 on the last page.

    Handlers fetch ``limit + 1`` rows, so a page exactly as long as ``limit``
    is known to be the last one without a second query.
    """
    more = len(items) > page.limit
    shown = items[: page.limit]
    headers = {"Accept-Ranges": page.field}
    if more:
        headers["Next-Range"] = page.next_range(str(key(shown[-1])))
        headers["Content-Range"] = f"{page.field} {key(shown[0])}..{key(shown[-1])}"
    return reply([render(item) for item in shown], 206 if more else 200, headers)


# -- handlers -------------------------------------------------------------------


async def list_apps(call: Call) -> web.Response:
    page = call.page("name")
    found = await call.control.list_apps(
        after=page.after, limit=page.limit + 1, among=call.principal.only_apps
    )
    return paged(page, found, key=lambda a: a.name, render=wire.app)


async def create_app(call: Call) -> web.Response:
    body = await call.body()
    if "name" in body:
        app = await call.control.create_app(parse.app_name(body), actor=call.principal.actor)
        return reply(wire.app(app), 201)
    # No name: Heroku's ``adjective-noun-1234``, drawn again while taken.
    for _ in range(NAME_DRAWS):
        try:
            app = await call.control.create_app(names.generate(_RNG), actor=call.principal.actor)
        except Conflict as exc:
            if exc.id != "name_taken":
                raise
            continue
        return reply(wire.app(app), 201)
    raise Conflict("no free app name was found; give one (apps:create NAME)", id="name_taken")


async def show_app(call: Call) -> web.Response:
    return reply(wire.app(await call.control.get_app(call.app)))


async def update_app(call: Call) -> web.Response:
    """Heroku's PATCH /apps/{app}: a new ``name``, ``maintenance`` on or off, or both."""
    update = parse.app_update(await call.body())
    name, actor = call.app, call.principal.actor
    app = await call.control.get_app(name)
    if update.maintenance is not None:
        app = await call.control.set_maintenance(name, update.maintenance, actor=actor)
    if update.name is not None:
        app = await call.control.rename_app(name, update.name, actor=actor)
    return reply(wire.app(app))


async def delete_app(call: Call) -> web.Response:
    app = await call.control.delete_app(call.app, actor=call.principal.actor)
    return reply(wire.app(app))


async def get_config(call: Call) -> web.Response:
    return reply(await call.control.config(call.app))


async def patch_config(call: Call) -> web.Response:
    changes = parse.config_changes(await call.body())
    config, release = await call.control.update_config(
        call.app, changes, actor=call.principal.actor
    )
    return reply(config, headers={"Release-Version": str(release.version)})


async def list_releases(call: Call) -> web.Response:
    page = call.page("version")
    app = await call.control.get_app(call.app)
    found = await call.control.list_releases(call.app, after=int_cursor(page), limit=page.limit + 1)
    return paged(
        page,
        found,
        key=lambda r: r.version,
        render=lambda r: wire.release(r, current=app.current_release),
    )


async def create_release(call: Call) -> web.Response:
    request = parse.release(await call.body())
    if isinstance(request, Rollback):
        release = await call.control.rollback(call.app, request.version, actor=call.principal.actor)
    else:
        release = await call.control.deploy(
            call.app, request, actor=call.principal.actor, tenant=not call.admin
        )
    return reply(wire.release(release, current=release.version), 201)


async def show_release(call: Call) -> web.Response:
    raw = call.request.match_info["version"]
    # ASCII digits only (str.isdigit takes '²'), and few enough for any integer column.
    match = RELEASE_VERSION.fullmatch(raw)
    if match is None:
        raise BadRequest(f"{raw[:40]!r} is not a release version (v3 or 3)", id="bad_request")
    app = await call.control.get_app(call.app)
    release = await call.control.get_release(call.app, int(match[1]))
    return reply(wire.release(release, current=app.current_release))


async def show_review(call: Call) -> web.Response:
    await call.control.get_app(call.app)
    status = await ReviewRecords(call.control.store).status(call.app)
    if status is None:
        raise NotFound(
            f"{call.app} has no review-app status: no GitHub delivery has deployed it",
            id="review_not_found",
        )
    return reply(wire.review_status(status))


async def list_formation(call: Call) -> web.Response:
    return reply([wire.formation(f) for f in await call.control.formation(call.app)])


async def batch_formation(call: Call) -> web.Response:
    changes = parse.formation_batch(await call.body())
    result = await call.control.update_formation(
        call.app, changes, actor=call.principal.actor, admin=call.admin
    )
    return reply([wire.formation(f) for f in result])


async def update_formation(call: Call) -> web.Response:
    process = call.request.match_info["type"]
    change = parse.formation_one(process, await call.body())
    result = await call.control.update_formation(
        call.app, [change], actor=call.principal.actor, admin=call.admin
    )
    return reply(next(wire.formation(f) for f in result if f.type == process))


async def list_dynos(call: Call) -> web.Response:
    return reply([wire.dyno(d) for d in await call.control.dynos(call.app)])


async def show_autoscale(call: Call) -> web.Response:
    return reply(await call.control.autoscale(call.app))


async def restart_all(call: Call) -> web.Response:
    await call.control.restart(call.app, None, actor=call.principal.actor)
    return reply({}, 202)


async def restart_type(call: Call) -> web.Response:
    process = call.request.match_info["type"]
    await call.control.restart(call.app, process, actor=call.principal.actor)
    return reply({}, 202)


async def create_dyno(call: Call) -> web.StreamResponse:
    """Heroku's ``run``: a one-off process on the current release (control/api/runs.py)."""
    request = parse.run(await call.body())
    await runs.check_code(call.control, call.app)
    if not call.admin and isinstance(call.control.target, DetachedTarget):
        raise Forbidden(
            "one-off runs with an app token need an agent (serve control --agent-url, or "
            "slipway up): without one this control plane would run them unconfined beside its "
            "own secrets; use an admin token",
            id="run_unconfined",
        )
    who = {"app": call.app, "actor": call.principal.actor, "command": request.command}
    if request.attach:
        return await runs.attached(call.request, call.control, **who)
    started = runs.detached(call.request.app[runs.RUNNING], call.control, **who)
    return reply(started, 202)


async def attach_dyno(call: Call) -> web.StreamResponse:
    """``slipway run`` at a terminal: a one-off on a pty over a WebSocket (api/terminal.py)."""
    return await terminal.attach(
        call.request, call.control, app=call.app, actor=call.principal.actor
    )


async def list_plans(call: Call) -> web.Response:
    return reply(runs.plans(call.control, call.request.match_info["service"]))


async def list_domains(call: Call) -> web.Response:
    default = f"{call.app}.{call.control.app_domain}" if call.control.app_domain else None
    found = await call.control.list_domains(call.app)
    return reply([wire.domain(d, default=d.hostname == default) for d in found])


async def add_domain(call: Call) -> web.Response:
    hostname = parse.hostname(await call.body())
    found = await call.control.add_domain(
        call.app, hostname, actor=call.principal.actor, tenant=not call.admin
    )
    return reply(wire.domain(found, default=False), 201)


async def remove_domain(call: Call) -> web.Response:
    hostname = call.request.match_info["hostname"]
    await call.control.remove_domain(call.app, hostname, actor=call.principal.actor)
    return reply({}, 200)


async def list_addons(call: Call) -> web.Response:
    return reply([wire.addon(a) for a in await call.control.list_addons(call.app)])


async def create_addon(call: Call) -> web.Response:
    request = parse.addon(await call.body())
    addon, release = await call.control.create_addon(
        call.app, plan=request.plan, attachment=request.attachment, actor=call.principal.actor
    )
    payload = wire.addon(addon)
    payload["release"] = {"version": release.version, "status": release.status.value}
    return reply(payload, 201)


async def destroy_addon(call: Call) -> web.Response:
    addon, release = await call.control.destroy_addon(
        call.app, call.request.match_info["addon"], actor=call.principal.actor
    )
    payload = wire.addon(addon)
    payload["release"] = {"version": release.version, "status": release.status.value}
    return reply(payload)


async def resize_addon(call: Call) -> web.Response:
    plan = parse.addon_plan(await call.body())
    addon, release, message = await call.control.resize_addon(
        call.app, call.request.match_info["addon"], plan=plan, actor=call.principal.actor
    )
    payload = wire.addon(addon)
    if release is not None:  # only when the URL changed with the plan
        payload["release"] = {"version": release.version, "status": release.status.value}
    if message:  # e.g. a dedicated Redis restarted on its new plan, its keys gone
        payload["message"] = message
    return reply(payload)


def _builds(call: Call) -> Builds:
    return call.request.app[BUILDS]


async def create_build(call: Call) -> web.Response:
    builds = _builds(call)
    await call.control.get_app(call.app)  # 404 before anything is read or refused
    if call.request.content_type in TARBALL_TYPES:
        # Streamed to disk: a source tarball may be far past the JSON body limit.
        cap, variable = call.control.limits.upload(admin=call.admin)
        too_large = TooLarge(
            f"the upload is larger than {cap} bytes, the most for this token "
            f"(an operator raises it with {variable})"
        )
        if call.request.content_length is not None and call.request.content_length > cap:
            raise too_large  # before a byte is read or a builder asked
        chunks = capped(call.request, cap, too_large)
        build = await builds.upload(call.app, chunks, actor=call.principal.actor)
    else:
        body = await call.body()
        build = await builds.create(
            call.app,
            body.get("source_blob"),
            actor=call.principal.actor,
            tenant=not call.principal.token.admin,
        )
    stream = builds.output_stream_url(call.app, build.id)
    return reply(wire.build(build, output_stream_url=stream), 201)


async def capped(request: web.Request, cap: int, too_large: TooLarge) -> AsyncIterator[bytes]:
    """The request body in chunks, refused once past ``cap`` bytes.

    Counted on what arrives, not only on Content-Length: a chunked upload has
    none. The upload's partial file is removed when this raises.
    """
    seen = 0
    async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
        seen += len(chunk)
        if seen > cap:
            raise too_large
        yield chunk


async def list_builds(call: Call) -> web.Response:
    builds = _builds(call)
    return reply(
        [
            wire.build(b, output_stream_url=builds.output_stream_url(call.app, b.id))
            for b in await builds.list(call.app)
        ]
    )


async def show_build(call: Call) -> web.Response:
    builds = _builds(call)
    build = await builds.get(call.app, call.request.match_info["id"])
    return reply(wire.build(build, output_stream_url=builds.output_stream_url(call.app, build.id)))


async def app_audit(call: Call) -> web.Response:
    page = call.page("id")
    found = await call.control.audit(app=call.app, after=int_cursor(page), limit=page.limit + 1)
    return paged(page, found, key=lambda e: e.id, render=wire.audit)


async def all_audit(call: Call) -> web.Response:
    page = call.page("id")
    found = await call.control.audit(app=None, after=int_cursor(page), limit=page.limit + 1)
    return paged(page, found, key=lambda e: e.id, render=wire.audit)


async def create_token(call: Call) -> web.Response:
    request = parse.token(await call.body())
    token, secret = await call.control.create_token(
        name=request.name, admin=request.admin, app=request.app, actor=call.principal.actor
    )
    return reply({**wire.token(token), "token": secret}, 201)


async def delete_token(call: Call) -> web.Response:
    await call.control.delete_token(call.request.match_info["id"], actor=call.principal.actor)
    return reply({})


async def verify_token(call: Call) -> web.Response:
    app = call.request.query.get("app")
    if app is not None:
        validate_app_name(app)  # a name no app can have is a bad question, even for an admin
        call.principal.require_app(app)
    return reply({"token": wire.token(call.principal.token), "app": app})


async def openapi_document(call: Call) -> web.Response:
    return reply(openapi(plans=call.control.plan_names()))


# -- the table --------------------------------------------------------------------

_APP_ERRORS = (401, 403, 404)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/apps", list_apps, "List apps", Scope.ANY, 200,
          schemas.array_of("App"), errors=(400, 401), range_field="name"),
    Route("POST", "/apps", create_app, "Create an app", Scope.ADMIN, 201,
          schemas.ref("App"), body=schemas.APP_CREATE, errors=(400, 401, 403, 409, 422)),
    Route("GET", "/apps/{app}", show_app, "Show an app", Scope.APP, 200,
          schemas.ref("App"), errors=_APP_ERRORS),
    Route("PATCH", "/apps/{app}", update_app,
          "Rename an app, or turn its maintenance mode (H80 from the router) on or off",
          Scope.APP, 200,
          schemas.ref("App"), body=schemas.APP_UPDATE, errors=(400, *_APP_ERRORS, 409, 422)),
    Route("DELETE", "/apps/{app}", delete_app,
          "Delete an app, its processes and its add-ons", Scope.APP, 200,
          schemas.ref("App"), errors=_APP_ERRORS),
    Route("GET", "/apps/{app}/config-vars", get_config,
          "Config vars, add-on URLs included", Scope.APP, 200,
          schemas.ref("ConfigVars"), errors=_APP_ERRORS),
    Route("PATCH", "/apps/{app}/config-vars", patch_config,
          "Set config vars (null unsets one); makes a release", Scope.APP, 200,
          schemas.ref("ConfigVars"), body=schemas.CONFIG_PATCH,
          errors=(400, *_APP_ERRORS, 409, 422)),
    Route("GET", "/apps/{app}/releases", list_releases, "List releases, oldest first",
          Scope.APP, 200, schemas.array_of("Release"), errors=(400, *_APP_ERRORS),
          range_field="version"),
    Route("POST", "/apps/{app}/releases", create_release,
          "Deploy (artifact + procfile) or roll back (release: N)", Scope.APP, 201,
          schemas.ref("Release"), body=schemas.RELEASE_CREATE,
          errors=(400, *_APP_ERRORS, 409, 422)),
    Route("GET", "/apps/{app}/releases/{version}", show_release, "Show a release",
          Scope.APP, 200, schemas.ref("Release"), errors=(400, *_APP_ERRORS)),
    Route("GET", "/apps/{app}/review", show_review,
          "What the app's last review-app plan or staging deploy came to, and why",
          Scope.APP, 200, schemas.ref("ReviewStatus"), errors=_APP_ERRORS),
    Route("GET", "/apps/{app}/formation", list_formation, "Process types and idle policy",
          Scope.APP, 200, schemas.array_of("Formation"), errors=_APP_ERRORS),
    Route("PATCH", "/apps/{app}/formation", batch_formation, "Scale several process types",
          Scope.APP, 200, schemas.array_of("Formation"), body=schemas.FORMATION_BATCH,
          errors=(400, *_APP_ERRORS, 422)),
    Route("PATCH", "/apps/{app}/formation/{type}", update_formation,
          "Scale one process type or change its idle policy", Scope.APP, 200,
          schemas.ref("Formation"), body=schemas.FORMATION_UPDATE,
          errors=(400, *_APP_ERRORS, 422)),
    Route("GET", "/apps/{app}/dynos", list_dynos, "Running processes and their state",
          Scope.APP, 200, schemas.array_of("Dyno"), errors=_APP_ERRORS),
    Route("GET", "/apps/{app}/autoscale", show_autoscale,
          "Web's autoscaling: settings, state and recent decisions with their reasons",
          Scope.APP, 200, schemas.ref("Autoscale"), errors=_APP_ERRORS),
    Route("DELETE", "/apps/{app}/dynos", restart_all, "Restart every process",
          Scope.APP, 202, {"type": "object"}, errors=_APP_ERRORS),
    Route("DELETE", "/apps/{app}/dynos/{type}", restart_type, "Restart one process type",
          Scope.APP, 202, {"type": "object"}, errors=_APP_ERRORS),
    Route("POST", "/apps/{app}/dynos", create_dyno,
          "Run a command once on the current release (`slipway run`): attached, its output "
          "and exit code stream back as NDJSON; detached, 202 and the output goes to the logs",
          Scope.APP, 200, schemas.RUN_EVENT, body=schemas.DYNO_CREATE,
          errors=(400, *_APP_ERRORS, 409, 422), media="application/x-ndjson",
          also=((202, schemas.RUN_STARTED),)),
    Route("GET", "/apps/{app}/dynos/tty", attach_dyno,
          "Run a command once on a terminal (`slipway run bash`): a WebSocket; the first "
          "message names the command and window size, binary frames carry the terminal's "
          "bytes, the last message its exit code. 409 where one-offs are Jobs (Kubernetes)",
          Scope.APP, 101, schemas.RUN_EVENT, errors=(400, *_APP_ERRORS, 409, 422)),
    Route("GET", "/addon-services/{service}/plans", list_plans,
          "A service's plans (Heroku's names accepted), their limits, and the default",
          Scope.ANY, 200, schemas.array_of("Plan"), errors=(401, 404)),
    Route("GET", "/apps/{app}/domains", list_domains,
          "Host names the router sends to the app (APP.{app domain} and custom ones)",
          Scope.APP, 200, schemas.array_of("Domain"), errors=_APP_ERRORS),
    Route("POST", "/apps/{app}/domains", add_domain, "Add a custom domain", Scope.APP, 201,
          schemas.ref("Domain"), body=schemas.DOMAIN_CREATE,
          errors=(400, *_APP_ERRORS, 409, 422)),
    Route("DELETE", "/apps/{app}/domains/{hostname}", remove_domain, "Remove a custom domain",
          Scope.APP, 200, {"type": "object"}, errors=_APP_ERRORS),
    Route("GET", "/apps/{app}/addons", list_addons, "List add-ons", Scope.APP, 200,
          schemas.array_of("Addon"), errors=_APP_ERRORS),
    Route("POST", "/apps/{app}/addons", create_addon,
          "Create an add-on attached as NAME (sets NAME_URL); makes a release", Scope.APP,
          201, schemas.ref("Addon"), body=schemas.ADDON_CREATE,
          errors=(400, *_APP_ERRORS, 409, 422)),
    Route("PATCH", "/apps/{app}/addons/{addon}", resize_addon,
          "Move an add-on to another plan of its service in place, its data kept; a "
          "release only if its URL changes", Scope.APP, 200,
          schemas.ref("Addon"), body=schemas.ADDON_UPDATE,
          errors=(400, *_APP_ERRORS, 422)),
    Route("DELETE", "/apps/{app}/addons/{addon}", destroy_addon,
          "Destroy an add-on and its data; makes a release", Scope.APP, 200,
          schemas.ref("Addon"), errors=_APP_ERRORS),
    Route("POST", "/apps/{app}/builds", create_build,
          "Build a source (git commit or tarball) and release it; answers at once, pending",
          Scope.APP, 201, schemas.ref("Build"), body=schemas.BUILD_CREATE,
          errors=(400, *_APP_ERRORS, 409, 422), tarball=True),
    Route("GET", "/apps/{app}/builds", list_builds, "The newest builds, oldest first",
          Scope.APP, 200, schemas.array_of("Build"), errors=_APP_ERRORS),
    Route("GET", "/apps/{app}/builds/{id}", show_build, "Show a build", Scope.APP, 200,
          schemas.ref("Build"), errors=_APP_ERRORS),
    Route("GET", "/apps/{app}/audit", app_audit, "Audit log of one app", Scope.APP, 200,
          schemas.array_of("AuditEntry"), errors=(400, *_APP_ERRORS), range_field="id"),
    Route("GET", "/audit", all_audit, "Audit log of everything", Scope.ADMIN, 200,
          schemas.array_of("AuditEntry"), errors=(400, 401, 403), range_field="id"),
    Route("POST", "/tokens", create_token, "Mint a token (shown once)", Scope.ADMIN, 201,
          schemas.ref("Token"), body=schemas.TOKEN_CREATE, errors=(400, 401, 403, 404, 422)),
    Route("DELETE", "/tokens/{id}", delete_token, "Revoke a token", Scope.ADMIN, 200,
          {"type": "object"}, errors=(401, 403, 404)),
    Route("GET", "/auth/verify", verify_token,
          "Check the bearer token (and that it may act on ?app=): for the logs service",
          Scope.ANY, 200, schemas.VERIFY, errors=(401, 403, 422), query=("app",)),
    Route("GET", "/apps/{app}/metrics/requests", live.request_metrics,
          "Request charts: per step, count by status class, p50/p95/p99 ms, H-codes, wakes",
          Scope.ANY, 200, {"type": "object"}, errors=(400, 401, 404, 503),
          query=live.METRICS_QUERY),
    Route("GET", "/apps/{app}/events", live.app_events,
          "Deploys, restarts, sleeps, wakes and crashes on a chart's time axis",
          Scope.ANY, 200, {"type": "object"}, errors=(400, 401, 404), query=live.EVENTS_QUERY),
    Route("GET", "/openapi.json", openapi_document, "This document", Scope.ANY, 200,
          {"type": "object"}, errors=(401,)),
)  # fmt: skip


# -- wiring -----------------------------------------------------------------------


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized(
            "send a token: 'Authorization: Bearer <token>' (slipway tokens, SLIPWAY_TOKEN)",
            id="unauthorized",
        )
    return secret.strip()


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        control = request.app[CONTROL]
        principal = await control.authenticate(bearer(request))
        unknown = sorted(set(request.query) - set(route.query))
        if unknown:
            raise BadRequest(
                f"unknown query parameters: {', '.join(map(repr, unknown))}", id="bad_request"
            )
        if route.scope is Scope.ADMIN:
            principal.require_admin()
        elif route.scope is Scope.APP:
            principal.require_app(request.match_info["app"])
        call = Call(request=request, principal=principal, control=control, schema=route.body)
        return await route.handler(call)

    return handle


def register(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _wrap(route))


def error_body(exc: Exception) -> dict[str, Any]:
    # A message may quote a URL it refuses, an output may carry git's error text.
    body: dict[str, Any] = {"id": getattr(exc, "id", "error"), "message": mask_text(str(exc))}
    if isinstance(exc, ReleaseFailed):
        body["release"] = {"version": exc.version}
        body["output"] = mask_text(exc.output)
    return body


def openapi(*, plans: list[str] | None = None) -> dict[str, Any]:
    """The document of ``ROUTES``; with ``plans``, add-on plans as this server offers them."""
    return document(ROUTES, plans=plans)
