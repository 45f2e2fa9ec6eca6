"""The agent's HTTP API, for routers in other processes or pods.

GET  /v1/routes?after=VERSION   the route table; with ``after``, a long poll that answers as
                                soon as the version differs (204 when nothing changed in time)
POST /v1/activity               a router's report: {router, version, apps: {app: activity}}
POST /v1/apps/{app}/wake        wake an app (the router's Waker); 202 once under way
GET  /v1/apps                   each app's state, for people
PUT  /v1/apps/{app}             define or redefine an app (``agent/definition.py``'s JSON)
GET  /v1/apps/{app}             one app's state and process instances
GET  /v1/apps/{app}/autoscale   its autoscaling: settings, state, last decisions with reasons
DELETE /v1/apps/{app}           stop and forget an app
POST /v1/apps/{app}/restart     restart its processes (``{"process": "web"}`` for one type)
POST /v1/apps/{app}/run         run a one-off process of a release (the release phase):
                                {"definition": {...}, "command": "...", "timeout": 600,
                                 "dyno": "run.1234"} (dyno: optional, its DYNO; default
                                 release.1)
                                -> 200 {"ok": bool, "output": "tail"}; answers when it ends
GET  /healthz /readyz /metrics
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from agent.activity import parse_post
from agent.agent import Agent
from agent.definition import parse_definition
from agent.errors import ConfigError, RuntimeFailure, UnknownApp
from agent.forward import Leadership, forwarding
from agent.once import DEFAULT_RUN_TIMEOUT
from kit import jsonbody
from kit.oneoff import DYNO_NAME, WATCHER, Watcher
from kit.ops import ReadyCheck, add_ops_routes

AGENT = web.AppKey("agent", Agent)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NEED_TOKEN = "send the agent's token: Authorization: Bearer $SLIPWAY_AGENT_TOKEN"
SESSION = web.AppKey("forward-session", aiohttp.ClientSession)

log = logging.getLogger(__name__)


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
    middlewares.append(runtime_failures)
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
    app.router.add_get("/v1/apps/{app}/autoscale", autoscale)
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
        post = parse_post(await _json(request))
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
    body = await _json(request)
    try:
        config = parse_definition(name, body)
        await request.app[AGENT].define(config)
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


async def autoscale(request: web.Request) -> web.Response:
    try:
        return web.json_response(request.app[AGENT].autoscale(request.match_info["app"]))
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
        body = await _json(request)
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
    body = await _json(request)
    if not isinstance(body, dict) or set(body) - {"definition", "command", "timeout", "dyno"}:
        raise _unprocessable("the body must be {definition, command, timeout[, dyno]}")
    command, timeout = body.get("command"), body.get("timeout", DEFAULT_RUN_TIMEOUT)
    dyno = body.get("dyno")
    if dyno is not None and not (isinstance(dyno, str) and DYNO_NAME.match(dyno)):
        raise _unprocessable("dyno must be a one-off's name: run. and digits (run.1234)")
    if not isinstance(command, str):
        raise _unprocessable("command must be a string")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        raise _unprocessable("timeout must be a number of seconds")
    try:
        config = parse_definition(name, body.get("definition"))
        if dyno is not None:
            # The one way a one-off learns its name (agent/once.py, the Kubernetes Job):
            # this request's task is the run's, so the name reaches no other.
            WATCHER.set(Watcher(on_output=_discard, name=dyno))
        result = await request.app[AGENT].run_once(config, command, timeout=float(timeout))
    except ConfigError as exc:
        raise _unprocessable(str(exc)) from None
    return web.json_response({"ok": result.ok, "output": result.output})


def _discard(_: bytes) -> None:
    """Output is answered at the end, as the tail (the caller is another process)."""


async def _json(request: web.Request) -> Any:
    """The body through the one JSON reader (size, UTF-8, depth, numbers): 400 or 413."""
    try:
        return await jsonbody.read(request)
    except jsonbody.BadBody as exc:
        body = json.dumps({"error": str(exc)})
        if exc.status == 413:
            raise web.HTTPRequestEntityTooLarge(
                max_size=jsonbody.MAX_BYTES,
                actual_size=request.content_length or 0,
                text=body,
                content_type="application/json",
            ) from None
        raise _bad(str(exc)) from None


def _unprocessable(message: str) -> web.HTTPUnprocessableEntity:
    return web.HTTPUnprocessableEntity(
        text=json.dumps({"error": message}), content_type="application/json"
    )


def _not_found(exc: UnknownApp) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"error": str(exc)}), content_type="application/json")


@web.middleware
async def runtime_failures(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What the runtime could not do (an apiserver down, a lost Lease, no free port) is a 503
    that says so: the request was fine, and may be sent again."""
    try:
        return await handler(request)
    except RuntimeFailure as exc:
        log.warning("runtime failure", extra={"path": request.path, "error": str(exc)})
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": f"the runtime could not do it: {exc}"}),
            content_type="application/json",
        ) from None


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
