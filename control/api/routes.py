"""The one table of routes: handlers, who may call them, and their OpenAPI description.

``register`` adds every route to an aiohttp application wrapped in the auth
check its scope names; ``openapi`` renders the same table as OpenAPI 3.1.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiohttp import web

from control.api import schemas, wire
from control.api.paging import Page, int_cursor, parse_range, range_pattern
from control.auth import Principal
from control.building import Builds
from control.errors import BadRequest, ReleaseFailed, Unauthorized, Unprocessable
from control.rules import is_local_source, validate_app_name
from control.service import Control

CONTROL: web.AppKey[Control] = web.AppKey("control", Control)
BUILDS: web.AppKey[Builds] = web.AppKey("builds", Builds)
#: Bodies taken as an uploaded source tarball by POST /apps/{app}/builds.
TARBALL_TYPES = frozenset({"application/gzip", "application/x-gzip", "application/x-tar"})
#: Read size when streaming an upload to disk.
UPLOAD_CHUNK = 64 * 1024


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

    async def body(self) -> dict[str, Any]:
        if not self.request.body_exists:
            raise BadRequest("this endpoint needs a JSON object body", id="bad_request")
        try:
            data = json.loads(await self.request.read())
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the body is not valid JSON", id="bad_request") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object", id="bad_request")
        unknown = [] if self.schema is None else schemas.unknown_fields(self.schema, data)
        if unknown:
            raise Unprocessable(f"unknown fields: {', '.join(unknown)}", id="unknown_fields")
        return data

    def page(self, field: str) -> Page:
        return parse_range(self.request.headers.get("Range"), field=field)


Handler = Callable[[Call], Awaitable[web.Response]]


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
    token = call.principal.token
    found = await call.control.list_apps(
        after=page.after, limit=page.limit + 1, only=None if token.admin else token.app
    )
    return paged(page, found, key=lambda a: a.name, render=wire.app)


async def create_app(call: Call) -> web.Response:
    body = await call.body()
    app = await call.control.create_app(body.get("name"), actor=call.principal.actor)
    return reply(wire.app(app), 201)


async def show_app(call: Call) -> web.Response:
    return reply(wire.app(await call.control.get_app(call.app)))


async def update_app(call: Call) -> web.Response:
    body = await call.body()
    app = await call.control.rename_app(call.app, body.get("name"), actor=call.principal.actor)
    return reply(wire.app(app))


async def delete_app(call: Call) -> web.Response:
    app = await call.control.delete_app(call.app, actor=call.principal.actor)
    return reply(wire.app(app))


async def get_config(call: Call) -> web.Response:
    return reply(await call.control.config(call.app))


async def patch_config(call: Call) -> web.Response:
    config, release = await call.control.update_config(
        call.app, await call.body(), actor=call.principal.actor
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
    body = await call.body()
    if "release" in body:
        release = await call.control.rollback(call.app, body["release"], actor=call.principal.actor)
    else:
        release = await call.control.deploy(
            call.app,
            artifact=body.get("artifact"),
            procfile=body.get("procfile"),
            description=body.get("description"),
            actor=call.principal.actor,
        )
    return reply(wire.release(release, current=release.version), 201)


async def show_release(call: Call) -> web.Response:
    raw = call.request.match_info["version"].lstrip("v")
    if not raw.isdigit():
        raise BadRequest(f"{raw!r} is not a release version (v3 or 3)", id="bad_request")
    app = await call.control.get_app(call.app)
    release = await call.control.get_release(call.app, int(raw))
    return reply(wire.release(release, current=app.current_release))


async def list_formation(call: Call) -> web.Response:
    return reply([wire.formation(f) for f in await call.control.formation(call.app)])


async def batch_formation(call: Call) -> web.Response:
    body = await call.body()
    result = await call.control.update_formation(
        call.app, body.get("updates"), actor=call.principal.actor
    )
    return reply([wire.formation(f) for f in result])


async def update_formation(call: Call) -> web.Response:
    body = await call.body()
    process = call.request.match_info["type"]
    result = await call.control.update_formation(
        call.app, [{**body, "type": process}], actor=call.principal.actor
    )
    return reply(next(wire.formation(f) for f in result if f.type == process))


async def list_dynos(call: Call) -> web.Response:
    return reply([wire.dyno(d) for d in await call.control.dynos(call.app)])


async def restart_all(call: Call) -> web.Response:
    await call.control.restart(call.app, None, actor=call.principal.actor)
    return reply({}, 202)


async def restart_type(call: Call) -> web.Response:
    process = call.request.match_info["type"]
    await call.control.restart(call.app, process, actor=call.principal.actor)
    return reply({}, 202)


async def list_domains(call: Call) -> web.Response:
    default = f"{call.app}.{call.control.app_domain}" if call.control.app_domain else None
    found = await call.control.list_domains(call.app)
    return reply([wire.domain(d, default=d.hostname == default) for d in found])


async def add_domain(call: Call) -> web.Response:
    body = await call.body()
    found = await call.control.add_domain(
        call.app, body.get("hostname"), actor=call.principal.actor
    )
    return reply(wire.domain(found, default=False), 201)


async def remove_domain(call: Call) -> web.Response:
    hostname = call.request.match_info["hostname"]
    await call.control.remove_domain(call.app, hostname, actor=call.principal.actor)
    return reply({}, 200)


async def list_addons(call: Call) -> web.Response:
    return reply([wire.addon(a) for a in await call.control.list_addons(call.app)])


async def create_addon(call: Call) -> web.Response:
    body = await call.body()
    attachment = body.get("attachment")
    name = attachment.get("name") if isinstance(attachment, dict) else None
    addon, release = await call.control.create_addon(
        call.app, plan=body.get("plan"), attachment=name, actor=call.principal.actor
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


def _builds(call: Call) -> Builds:
    return call.request.app[BUILDS]


async def create_build(call: Call) -> web.Response:
    builds = _builds(call)
    await call.control.get_app(call.app)  # 404 before anything is read or refused
    if call.request.content_type in TARBALL_TYPES:
        # Streamed to disk: a source tarball may be far past the JSON body limit.
        chunks = call.request.content.iter_chunked(UPLOAD_CHUNK)
        build = await builds.upload(call.app, chunks, actor=call.principal.actor)
    else:
        body = await call.body()
        blob = body.get("source_blob")
        url = blob.get("url") if isinstance(blob, dict) else None
        if isinstance(url, str) and is_local_source(url):
            # A path reads whatever this machine holds (other apps' sources among it).
            call.principal.require_admin()
        build = await builds.create(call.app, blob, actor=call.principal.actor)
    stream = builds.output_stream_url(call.app, build.id)
    return reply(wire.build(build, output_stream_url=stream), 201)


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
    body = await call.body()
    admin = body.get("admin", False)
    app = body.get("app")
    if not isinstance(admin, bool) or (app is not None and not isinstance(app, str)):
        raise BadRequest("admin must be true/false and app a name", id="bad_request")
    token, secret = await call.control.create_token(
        name=body.get("name"), admin=admin, app=app, actor=call.principal.actor
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
    Route("PATCH", "/apps/{app}", update_app, "Rename an app", Scope.APP, 200,
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
    Route("DELETE", "/apps/{app}/dynos", restart_all, "Restart every process",
          Scope.APP, 202, {"type": "object"}, errors=_APP_ERRORS),
    Route("DELETE", "/apps/{app}/dynos/{type}", restart_type, "Restart one process type",
          Scope.APP, 202, {"type": "object"}, errors=_APP_ERRORS),
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
    Route("DELETE", "/apps/{app}/addons/{addon}", destroy_addon,
          "Destroy an add-on and its data; makes a release", Scope.APP, 200,
          schemas.ref("Addon"), errors=_APP_ERRORS),
    Route("POST", "/apps/{app}/builds", create_build,
          "Build a source (git commit or tarball) and release it; answers at once, pending",
          Scope.APP, 201, schemas.ref("Build"), body=schemas.BUILD_CREATE,
          errors=(400, *_APP_ERRORS, 409, 422)),
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
    body: dict[str, Any] = {"id": getattr(exc, "id", "error"), "message": str(exc)}
    if isinstance(exc, ReleaseFailed):
        body["release"] = {"version": exc.version}
        body["output"] = exc.output
    return body


_STATUS_TEXT = {
    200: "OK", 201: "Created", 202: "Accepted", 400: "Bad request", 401: "No or invalid token",
    403: "The token may not do this", 404: "Not found", 409: "Conflicts with the current state",
    422: "Invalid parameters, or the release failed", 503: "A backing service is unavailable",
}  # fmt: skip


def openapi(*, plans: list[str] | None = None) -> dict[str, Any]:
    """The document; with ``plans``, add-on plans are listed as this server offers them."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS[name]}
            for name in _path_params(route.path)
        ]
        params += [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": _QUERY_SCHEMAS.get(name, {"type": "string"}),
            }
            for name in route.query
        ]
        responses: dict[str, Any] = {
            str(route.status): {
                "description": _STATUS_TEXT[route.status],
                "content": {"application/json": {"schema": route.response or {}}},
            }
        }
        if route.range_field is not None:
            params.append(
                {
                    "name": "Range",
                    "in": "header",
                    "required": False,
                    "description": f"'{route.range_field} ]LAST..; max=N' (Heroku-style)",
                    "schema": {
                        "type": "string",
                        "pattern": range_pattern(route.range_field, documented=True),
                    },
                }
            )
            responses["206"] = {
                "description": "A page; Next-Range says where the next one starts",
                "headers": {"Next-Range": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": route.response or {}}},
            }
        # 400 everywhere: any route refuses query parameters it does not know.
        for status in sorted({400, *route.errors, 503}):
            responses[str(status)] = {
                "description": _STATUS_TEXT[status],
                "content": {"application/json": {"schema": schemas.ref("Error")}},
            }
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "parameters": params,
            "responses": responses,
        }
        if route.body is not None:
            body = route.body
            if route.body is schemas.ADDON_CREATE and plans is not None:
                body = schemas.with_plans(plans)
            content: dict[str, Any] = {"application/json": {"schema": body}}
            if route.handler is create_build:
                content["application/gzip"] = {"schema": {"type": "string", "format": "binary"}}
            operation["requestBody"] = {"required": True, "content": content}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "slipway control plane",
            "version": "1",
            "description": ("Apps, config vars, builds, releases, formation, dynos and add-ons."),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas.COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_QUERY_SCHEMAS: dict[str, schemas.Schema] = {"app": schemas.APP_NAME}

_PATH_SCHEMAS: dict[str, schemas.Schema] = {
    "app": {"type": "string", "minLength": 1},
    "version": {"type": "string", "pattern": "^v?[0-9]+$"},
    "type": {"type": "string", "minLength": 1},
    "addon": {"type": "string", "minLength": 1},
    "hostname": {"type": "string", "minLength": 1},
    "id": {"type": "string", "minLength": 1},
}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
