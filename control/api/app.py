"""The API's aiohttp application: error rendering, request metrics, the routes, ops endpoints."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from control.api.live import REQUESTS
from control.api.routes import BUILDS, CONTROL, error_body, register
from control.api.runs import RUNNING, Running
from control.api.terminal import LIMITS as TERMINAL_LIMITS
from control.api.terminal import SESSIONS as TERMINAL_SESSIONS
from control.api.terminal import Limits as TerminalLimits
from control.api.terminal import close_all as close_terminals
from control.backups import api as backups_api
from control.backups.service import Backups
from control.building import Builds
from control.builds.model import LogSink, NoSink
from control.errors import AddonError, ApiError, StoreError, TargetUnavailable
from control.rollup.source import RequestSource
from control.service import Control
from kit.ops import ReadyCheck, add_ops_routes

log = logging.getLogger(__name__)

Next = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: aiohttp's own refusals, in the API's error shape.
_HTTP_IDS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _error(status: int, body: dict[str, object]) -> web.Response:
    return web.json_response(body, status=status)


@web.middleware
async def errors(request: web.Request, handler: Next) -> web.StreamResponse:
    """Every failure becomes ``{id, message}`` with its status; no traceback reaches a client."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, error_body(exc))
    except AddonError as exc:
        log.error("add-on server failed", extra={"error": str(exc), "path": request.path})
        return _error(503, {"id": "addon_service_unavailable", "message": str(exc)})
    except TargetUnavailable as exc:
        log.error("agent unavailable", extra={"error": str(exc), "path": request.path})
        return _error(503, {"id": "agent_unavailable", "message": str(exc)})
    except StoreError as exc:
        log.error("state store failed", extra={"error": str(exc), "path": request.path})
        return _error(503, {"id": "store_unavailable", "message": str(exc)})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        ident = _HTTP_IDS.get(exc.status, "error")
        response = _error(exc.status, {"id": ident, "message": exc.reason})
        if "Allow" in exc.headers:
            # RFC 9110: a 405 says which methods the resource has.
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        # A bug: logged with its traceback here, a constant message to the client.
        log.exception("unexpected error", extra={"method": request.method, "path": request.path})
        return _error(
            500, {"id": "internal_error", "message": "internal error; see the server log"}
        )


def _metrics(registry: CollectorRegistry) -> Callable[..., Awaitable[web.StreamResponse]]:
    requests = Counter(
        "slipway_control_requests",
        "API requests by route and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    seconds = Histogram(
        "slipway_control_request_duration_seconds",
        "API request latency by route.",
        ["method", "route"],
        registry=registry,
    )

    @web.middleware
    async def count(request: web.Request, handler: Next) -> web.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        # The route template, never the raw path: app names would explode the labels.
        route = resource.canonical if resource is not None else "unmatched"
        response = await handler(request)
        requests.labels(request.method, route, str(response.status)).inc()
        seconds.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    return count


_NO_SINK = NoSink()


async def _stop_runs(app: web.Application) -> None:
    """Detached one-off runs end with the API (their processes are killed, not orphaned)."""
    await app[RUNNING].stop()


def build_app(
    control: Control,
    *,
    registry: CollectorRegistry,
    ready: ReadyCheck,
    builds: Builds | None = None,
    sink: LogSink | None = None,
    requests: RequestSource | None = None,
    backups: Backups | None = None,
    terminals: TerminalLimits | None = None,
) -> web.Application:
    """``sink``: where detached one-off runs' output goes (the apps' log stream);
    ``requests``: what the request charts read (control/api/live.py); None: no charts."""
    app = web.Application(middlewares=[_metrics(registry), errors], client_max_size=1024**2)
    app[CONTROL] = control
    # Without a builder, builds are still listed (made before, or by another replica);
    # creating one is refused.
    app[BUILDS] = builds or Builds(control, builder=None, sink=_NO_SINK)
    app[RUNNING] = Running(sink or _NO_SINK)
    app[TERMINAL_LIMITS] = terminals or TerminalLimits()
    app[TERMINAL_SESSIONS] = set()
    app.on_shutdown.append(close_terminals)
    app.on_cleanup.append(_stop_runs)
    if requests is not None:
        app[REQUESTS] = requests
    add_ops_routes(app, registry=registry, ready=ready)
    register(app)
    # pg:backups (control/backups/api.py); without a bucket its routes answer 503.
    if backups is not None:
        app[backups_api.BACKUPS] = backups
    backups_api.register(app)
    return app
