"""The agent's HTTP API, for routers in other processes or pods.

GET  /v1/routes?after=VERSION   the route table; with ``after``, a long poll that answers as
                                soon as the version differs (204 when nothing changed in time)
POST /v1/activity               a router's report: {router, version, apps: {app: activity}}
POST /v1/apps/{app}/wake        wake an app (the router's Waker); 202 once under way
GET  /v1/apps                   each app's state, for people
PUT  /v1/apps/{app}             define or redefine an app (``agent/definition.py``'s JSON)
GET  /v1/apps/{app}             one app's state and process instances
DELETE /v1/apps/{app}           stop and forget an app
POST /v1/apps/{app}/restart     restart its processes (``{"process": "web"}`` for one type)
POST /v1/apps/{app}/run         run a one-off process of a release (the release phase):
                                {"definition": {...}, "command": "...", "timeout": 600}
                                -> 200 {"ok": bool, "output": "tail"}; answers when it ends
GET  /healthz /readyz /metrics
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from agent.activity import parse_post
from agent.agent import Agent
from agent.definition import parse_definition
from agent.errors import ConfigError, UnknownApp
from agent.forward import Leadership, forwarding
from agent.once import DEFAULT_RUN_TIMEOUT
from control.kit.ops import ReadyCheck, add_ops_routes

AGENT = web.AppKey("agent", Agent)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NEED_TOKEN = "send the agent's token: Authorization: Bearer $SLIPWAY_AGENT_TOKEN"
SESSION = web.AppKey("forward-session", aiohttp.ClientSession)


def api_app(
    agent: Agent,
    *,
    registry: CollectorRegistry,
    leadership: Leadership | None = None,
    ready: ReadyCheck | None = None,
) -> web.Application:
    """The API; with ``leadership`` (several replicas), a follower forwards ``/v1/`` to the leader.

    ``ready`` replaces the default readiness (the agent started, no task failed).
    """
    middlewares: list[Middleware] = [bearer_token(agent.settings.token)]
    if leadership is not None:
        settings = agent.settings
        middlewares.append(
            forwarding(
                leadership,
                session=lambda: app[SESSION],
                timeout=settings.forward_timeout,
                feed_timeout=settings.feed_timeout,
            )
        )
    app = web.Application(middlewares=middlewares)
    app[AGENT] = agent
    if leadership is not None:
        app.cleanup_ctx.append(_session)

    def started() -> str | None:
        if agent.failed.is_set():
            return "a background task failed"
        return None if agent.started else "starting"

    add_ops_routes(app, registry=registry, ready=ready or started)
    app.router.add_get("/v1/routes", routes)
    app.router.add_post("/v1/activity", activity)
    app.router.add_post("/v1/apps/{app}/wake", wake)
    app.router.add_get("/v1/apps", apps)
    app.router.add_put("/v1/apps/{app}", define)
    app.router.add_get("/v1/apps/{app}", show)
    app.router.add_delete("/v1/apps/{app}", forget)
    app.router.add_post("/v1/apps/{app}/restart", restart)
    app.router.add_post("/v1/apps/{app}/run", run_once)
    return app


async def _session(app: web.Application) -> AsyncIterator[None]:
    # No pool limit: every router's long poll through a follower holds one connection.
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app[SESSION].close()


async def routes(request: web.Request) -> web.StreamResponse:
    agent = request.app[AGENT]
    after = request.query.get("after")
    if after is None:
        return web.json_response(agent.table)
    try:
        version = int(after)
        wait = float(request.query.get("wait", agent.settings.feed_timeout))
    except ValueError:
        raise _bad("after must be a version number and wait a number of seconds") from None
    wait = max(0.0, min(wait, agent.settings.feed_timeout))
    table = await agent.changed(version, wait)
    if table is None:
        return web.Response(status=204)
    return web.json_response(table)


async def activity(request: web.Request) -> web.Response:
    try:
        post = parse_post(await request.json())
    except json.JSONDecodeError:
        raise _bad("the body must be JSON") from None
    except ValueError as exc:
        raise _bad(str(exc)) from None
    request.app[AGENT].report(post)
    return web.Response(status=204)


async def wake(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    name = request.match_info["app"]
    try:
        await agent.wake(name)
    except UnknownApp as exc:
        raise _not_found(exc) from None
    return web.json_response({"app": name, "state": agent.states()[name]["state"]}, status=202)


async def apps(request: web.Request) -> web.Response:
    return web.json_response(request.app[AGENT].states())


async def define(request: web.Request) -> web.Response:
    name = request.match_info["app"]
    try:
        config = parse_definition(name, await request.json())
        await request.app[AGENT].define(config)
    except json.JSONDecodeError:
        raise _bad("the body must be JSON") from None
    except ConfigError as exc:
        raise web.HTTPUnprocessableEntity(
            text=json.dumps({"error": str(exc)}), content_type="application/json"
        ) from None
    return web.json_response(request.app[AGENT].status(name))


async def show(request: web.Request) -> web.Response:
    try:
        return web.json_response(request.app[AGENT].status(request.match_info["app"]))
    except UnknownApp as exc:
        raise _not_found(exc) from None


async def forget(request: web.Request) -> web.Response:
    try:
        await request.app[AGENT].forget(request.match_info["app"])
    except UnknownApp as exc:
        raise _not_found(exc) from None
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    process: str | None = None
    if request.can_read_body:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise _bad("the body must be JSON") from None
        process = body.get("process") if isinstance(body, dict) else None
        if process is not None and not isinstance(process, str):
            raise _bad("process must be a process type name")
    try:
        await request.app[AGENT].restart(request.match_info["app"], process)
    except UnknownApp as exc:
        raise _not_found(exc) from None
    return web.Response(status=202)


async def run_once(request: web.Request) -> web.Response:
    """The definition is the release to run (the new one, not yet the app's current one)."""
    name = request.match_info["app"]
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise _bad("the body must be JSON") from None
    if not isinstance(body, dict) or set(body) - {"definition", "command", "timeout"}:
        raise _unprocessable("the body must be {definition, command, timeout}")
    command, timeout = body.get("command"), body.get("timeout", DEFAULT_RUN_TIMEOUT)
    if not isinstance(command, str):
        raise _unprocessable("command must be a string")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        raise _unprocessable("timeout must be a number of seconds")
    try:
        config = parse_definition(name, body.get("definition"))
        result = await request.app[AGENT].run_once(config, command, timeout=float(timeout))
    except ConfigError as exc:
        raise _unprocessable(str(exc)) from None
    return web.json_response({"ok": result.ok, "output": result.output})


def _unprocessable(message: str) -> web.HTTPUnprocessableEntity:
    return web.HTTPUnprocessableEntity(
        text=json.dumps({"error": message}), content_type="application/json"
    )


def _not_found(exc: UnknownApp) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"error": str(exc)}), content_type="application/json")


def bearer_token(token: str | None) -> Middleware:
    """``/v1/`` needs ``Authorization: Bearer TOKEN`` when the agent has one; ops stay open.

    The API defines and runs apps (a command, an image), so it is never open by
    accident: every entry point sets a token, and an agent without one says so at start.
    """
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None and request.path.startswith("/v1/"):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise web.HTTPUnauthorized(
                    text=json.dumps({"error": NEED_TOKEN}),
                    content_type="application/json",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    return check


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")
